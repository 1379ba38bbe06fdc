package region

import (
	"strings"
	"testing"
)

// The row checks name the column at fault, so that a sheet's errors point
// at a cell; Chinese names of roles, kinds and categories are read as the
// codes.
func TestRowChecks(t *testing.T) {
	tree := Kunming()
	columns := func(errs []*ColumnError) string {
		var out []string
		for _, e := range errs {
			out = append(out, e.Column)
		}
		return strings.Join(out, ",")
	}
	people := []struct {
		name string
		f    []string
		want string // columns at fault
		role Role
	}{
		{"good", []string{"p1", "李明", "+8613800000001", "", "", "county_leader", wuhua}, "", CountyLeader},
		{"chinese role", []string{"p1", "李明", "13800000001", "", "", "网格员", cuihuxilu}, "", GridWorker},
		{"ascii brackets", []string{"p1", "李明", "13800000001", "", "", "村(社区)干部", cuihuxilu}, "", VillageOfficer},
		{"bad phone", []string{"p1", "李明", "12800000001", "", "", "resident", cuihuxilu}, "phone", Resident},
		{"no contact", []string{"p1", "李明", "", "", "", "resident", cuihuxilu}, "phone", Resident},
		{"everything", []string{"p1", strings.Repeat("名", 65), "1", "", "", "mayor", "530102999999"}, "name,role,division,phone", ""},
	}
	for _, tt := range people {
		t.Run("people/"+tt.name, func(t *testing.T) {
			p, errs := ParsePersonRow(tree, tt.f)
			if got := columns(errs); got != tt.want {
				t.Errorf("columns at fault %q, want %q (%v)", got, tt.want, errs)
			}
			if p.Role != tt.role {
				t.Errorf("role %q, want %q", p.Role, tt.role)
			}
		})
	}
	if p, _ := ParsePersonRow(tree, []string{"p1", " 李\t明\n", "+8613800000001", "", "", "resident", cuihuxilu}); p.Name != "李 明" || p.Phone != "13800000001" {
		t.Errorf("cleaned person %+v", p)
	}

	d, errs := ParseDeviceRow(tree, []string{"d1", "翠湖广播", "应急广播", cuihuxilu, "IP-1"})
	if len(errs) != 0 || d.Kind != Loudspeaker {
		t.Errorf("device %+v %v", d, errs)
	}
	if _, errs := ParseDeviceRow(tree, []string{"d1", "x", "siren", cuihuxilu, ""}); columns(errs) != "kind,platform_id" {
		t.Errorf("bad device: %v", columns(errs))
	}
	h, errs := ParseHouseholdRow(tree, []string{"h1", "钱桂英", "翠湖西路12号", "", "独居老人", cuihuxilu, "g1"})
	if len(errs) != 0 || h.Category != ElderlyAlone {
		t.Errorf("household %+v %v", h, errs)
	}
	if _, errs := ParseHouseholdRow(tree, []string{"h1", "x", "y", "", "poor", huashan, ""}); columns(errs) != "category,division,grid_worker" {
		t.Errorf("bad household: %v", columns(errs))
	}
	for _, id := range []string{"", "a/b", "a b", "a\tb", strings.Repeat("x", 65)} {
		if CheckID("person", id) == nil {
			t.Errorf("CheckID accepted %q", id)
		}
	}
}
