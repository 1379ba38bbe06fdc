package region

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"warngate/warning"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/errors.txt")

func TestRole(t *testing.T) {
	tests := []struct {
		in       string
		chinese  string
		audience warning.Audience
	}{
		{"county_leader", "县级领导", warning.CountyOfficials},
		{"county_duty", "县级值班人员", warning.CountyOfficials},
		{"township_leader", "乡镇分管领导", warning.TownshipOfficials},
		{"township_duty", "乡镇值班人员", warning.TownshipOfficials},
		{"village_officer", "村（社区）干部", warning.VillageOfficials},
		{"info_officer", "信息员", warning.VillageOfficials},
		{"grid_worker", "网格员", warning.VillageOfficials},
		{"resident", "居民", warning.Residents},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRole(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Chinese() != tt.chinese || r.Audience() != tt.audience {
				t.Errorf("got %s %s, want %s %s", r.Chinese(), r.Audience(), tt.chinese, tt.audience)
			}
		})
	}
	_, err := ParseRole("Resident")
	want := `unknown role "Resident": use one of county_leader, county_duty, township_leader, township_duty, village_officer, info_officer, grid_worker, resident`
	if err == nil || err.Error() != want {
		t.Errorf("ParseRole(Resident) error = %v, want %s", err, want)
	}
	if a := Role("mayor").Audience(); a != "" {
		t.Errorf("unknown role has audience %q", a)
	}
}

func TestMobile(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
	}{
		{"13800000001", "13800000001"},
		{"19999999999", "19999999999"},
		{"+8613800000001", "13800000001"},
		{"8613800000001", "13800000001"},
		{"+86 13800000001", ""},
		{"12800000001", ""},
		{"1380000000", ""},
		{"138000000012", ""},
		{"1380000000x", ""},
		{"+85213800000", ""},
		{"86138000000", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := mobile(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Errorf("mobile accepted it as %s", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("mobile = %q, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func loadTestRoster(t *testing.T, dir string) (Roster, error) {
	t.Helper()
	return LoadRosterFiles(Kunming(),
		filepath.Join("testdata", dir, "people.csv"),
		filepath.Join("testdata", dir, "devices.csv"),
		filepath.Join("testdata", dir, "households.csv"))
}

func TestLoadRoster(t *testing.T) {
	r, err := loadTestRoster(t, "roster")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("counts", func(t *testing.T) {
		tests := []struct {
			code string
			want Counts
		}{
			{kunmingCode, Counts{Officials: 9, Residents: 2, WeChatFollowers: 2, Loudspeakers: 2, Screens: 1, Households: 2}},
			{wuhua, Counts{Officials: 8, Residents: 2, WeChatFollowers: 2, Loudspeakers: 2, Screens: 1, Households: 2}},
			{huashan, Counts{Officials: 6, Residents: 2, WeChatFollowers: 2, Loudspeakers: 2, Screens: 1, Households: 2}},
			{cuihuxilu, Counts{Officials: 4, Residents: 2, WeChatFollowers: 2, Loudspeakers: 1, Screens: 1, Households: 2}},
			{guandu, Counts{Officials: 1}},
			{"530103000000", Counts{}},
			{"530102999999", Counts{}},
		}
		for _, tt := range tests {
			if got := r.Counts(tt.code); got != tt.want {
				t.Errorf("Counts(%s) = %+v, want %+v", tt.code, got, tt.want)
			}
		}
	})
	t.Run("people", func(t *testing.T) {
		var ids []string
		r.People(cuihuxilu, func(p Person) bool { ids = append(ids, p.ID); return true })
		if want := "cx-officer cx-info cx-grid1 cx-grid2 cx-r1 cx-r2"; strings.Join(ids, " ") != want {
			t.Errorf("People = %v, want %s", ids, want)
		}
		ids = nil
		r.People(cuihuxilu, func(p Person) bool { ids = append(ids, p.ID); return len(ids) < 2 })
		if len(ids) != 2 {
			t.Errorf("People went on after fn returned false: %v", ids)
		}
	})
	t.Run("person", func(t *testing.T) {
		tests := []struct {
			id   string
			want Person
		}{
			{"wh-duty", Person{ID: "wh-duty", Name: "王芳", Phone: "13900000002", WeComUserID: "wangfang", Role: CountyDuty, Division: wuhua}},
			{"hs-leader", Person{ID: "hs-leader", Name: "张伟", Phone: "15000000003", Role: TownshipLeader, Division: huashan}},
			{"cx-r1", Person{ID: "cx-r1", Name: "吴秀英", Phone: "13300000009", WeChatOpenID: "oAbC123", Role: Resident, Division: cuihuxilu}},
			{"cx-r2", Person{ID: "cx-r2", Name: "周建国", WeChatOpenID: "oDeF456", Role: Resident, Division: cuihuxilu}},
		}
		for _, tt := range tests {
			if got, ok := r.Person(tt.id); !ok || got != tt.want {
				t.Errorf("Person(%s) = %+v, %v; want %+v", tt.id, got, ok, tt.want)
			}
		}
		if _, ok := r.Person("nobody"); ok {
			t.Error("Person found an unknown id")
		}
	})
	t.Run("devices and households", func(t *testing.T) {
		var devs []Device
		r.Devices(cuihuxilu, func(d Device) bool { devs = append(devs, d); return true })
		wantDevs := []Device{
			{ID: "ls-cx", Name: "翠湖西路社区广播", Kind: Loudspeaker, Division: cuihuxilu, Platform: "IP-0001"},
			{ID: "sc-cx", Name: "翠湖西路社区显示屏", Kind: Screen, Division: cuihuxilu, Platform: "LED-77"},
		}
		if !reflect.DeepEqual(devs, wantDevs) {
			t.Errorf("Devices = %+v, want %+v", devs, wantDevs)
		}
		var hhs []Household
		r.Households(cuihuxilu, func(h Household) bool { hhs = append(hhs, h); return true })
		wantHHs := []Household{
			{ID: "h1", Head: "钱桂英", Address: "翠湖西路12号,3单元", Category: ElderlyAlone, Division: cuihuxilu, GridWorker: "cx-grid1"},
			{ID: "h2", Head: "孔德明", Address: "翠湖西路15号", Phone: "13500000011", Category: DangerZone, Division: cuihuxilu, GridWorker: "cx-grid2"},
		}
		if !reflect.DeepEqual(hhs, wantHHs) {
			t.Errorf("Households = %+v, want %+v", hhs, wantHHs)
		}
	})
}

func TestLoadRosterNone(t *testing.T) {
	r, err := LoadRosterFiles(Kunming(), filepath.Join("testdata", "roster", "people.csv"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Counts(kunmingCode); c.Officials != 9 || c.Loudspeakers != 0 || c.Households != 0 {
		t.Errorf("Counts = %+v", c)
	}
	r, err = LoadRoster(Kunming(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Counts(kunmingCode); c != (Counts{}) {
		t.Errorf("empty roster Counts = %+v", c)
	}
	if _, err := LoadRosterFiles(Kunming(), filepath.Join("testdata", "missing.csv"), "", ""); err == nil {
		t.Error("LoadRosterFiles opened a missing file")
	}
}

// TestLoadRosterErrors checks that every problem of the bad files is reported
// at once, with the messages in testdata/bad/errors.txt (go test -update
// rewrites it).
func TestLoadRosterErrors(t *testing.T) {
	_, err := loadTestRoster(t, "bad")
	if err == nil {
		t.Fatal("LoadRoster accepted the bad files")
	}
	golden := filepath.Join("testdata", "bad", "errors.txt")
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadRosterHeaders(t *testing.T) {
	tests := []struct {
		name                        string
		people, devices, households string
		want                        string
	}{
		{"people", "id,name,phone,role,division\n", "", "",
			"people line 1: header is id,name,phone,role,division: want id,name,phone,wechat_openid,wecom_userid,role,division"},
		{"devices", "", "id,name,kind,division\n", "",
			"devices line 1: header is id,name,kind,division: want id,name,kind,division,platform_id"},
		{"households empty", "", "", "",
			"households: empty file: want the header id,head,address,phone,category,division,grid_worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := func(s string) *strings.Reader {
				if s == "" {
					return nil
				}
				return strings.NewReader(s)
			}
			p, d := reader(tt.people), reader(tt.devices)
			h := strings.NewReader(tt.households)
			var err error
			switch {
			case p != nil:
				_, err = LoadRoster(Kunming(), p, nil, nil)
			case d != nil:
				_, err = LoadRoster(Kunming(), nil, d, nil)
			default:
				_, err = LoadRoster(Kunming(), nil, nil, h)
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %s", err, tt.want)
			}
		})
	}
}
