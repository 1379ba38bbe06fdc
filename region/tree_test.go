package region

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

const (
	kunmingCode = "530100000000"
	wuhua       = "530102000000" // 五华区
	huashan     = "530102001000" // 五华区华山街道
	cuihuxilu   = "530102001001" // 华山街道翠湖西路社区
	guandu      = "530111000000" // 官渡区
)

func TestKunming(t *testing.T) {
	tr := Kunming()
	if tr != Kunming() {
		t.Error("Kunming returned a second tree")
	}
	if got := tr.Len(); got != 1904 {
		t.Errorf("Len = %d, want 1904", got)
	}
	if r := tr.Root(); r.Code != "530000000000" || r.Name != "云南省" || r.Level != Province || r.Parent != nil {
		t.Errorf("Root = %+v, want 云南省 530000000000", r)
	}
	byLevel := map[Level]int{}
	tr.Walk(tr.Root().Code, func(d *Division) bool { byLevel[d.Level]++; return true })
	want := map[Level]int{Province: 1, City: 1, County: 14, Township: 150, Village: 1738}
	for _, l := range levels {
		if byLevel[l] != want[l] {
			t.Errorf("%d divisions at level %s, want %d", byLevel[l], l, want[l])
		}
	}
}

// The per-county figures are those of data/SOURCE.md.
func TestWalkCounties(t *testing.T) {
	tests := []struct {
		code, name          string
		townships, villages int
	}{
		{"530102000000", "五华区", 11, 101},
		{"530103000000", "盘龙区", 12, 105},
		{"530111000000", "官渡区", 13, 133},
		{"530112000000", "西山区", 11, 126},
		{"530113000000", "东川区", 9, 170},
		{"530114000000", "呈贡区", 10, 95},
		{"530115000000", "晋宁区", 8, 137},
		{"530124000000", "富民县", 7, 75},
		{"530125000000", "宜良县", 10, 141},
		{"530126000000", "石林彝族自治县", 7, 96},
		{"530127000000", "嵩明县", 8, 83},
		{"530128000000", "禄劝彝族苗族自治县", 18, 198},
		{"530129000000", "寻甸回族彝族自治县", 17, 176},
		{"530181000000", "安宁市", 9, 102},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []*Division
			tr.Walk(tt.code, func(d *Division) bool { got = append(got, d); return true })
			if len(got) == 0 || got[0].Code != tt.code || got[0].Name != tt.name {
				t.Fatalf("Walk did not start at %s %s", tt.code, tt.name)
			}
			n := map[Level]int{}
			for i, d := range got {
				n[d.Level]++
				// Preorder: each division's parent came before it.
				if i > 0 && !contains(got[:i], d.Parent) {
					t.Errorf("%s %s came before its parent", d.Code, d.Name)
				}
			}
			if n[Township] != tt.townships || n[Village] != tt.villages || n[County] != 1 {
				t.Errorf("Walk found %d townships and %d villages, want %d and %d", n[Township], n[Village], tt.townships, tt.villages)
			}
		})
	}
}

func contains(ds []*Division, d *Division) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func TestWalkStopsAndIgnoresUnknown(t *testing.T) {
	tr := Kunming()
	var got []string
	tr.Walk(wuhua, func(d *Division) bool { got = append(got, d.Code); return len(got) < 3 })
	if want := []string{wuhua, huashan, cuihuxilu}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Walk visited %v, want %v", got, want)
	}
	tr.Walk("530102999999", func(*Division) bool { t.Error("Walk visited an unknown code"); return true })
}

func TestAncestor(t *testing.T) {
	tests := []struct {
		code  string
		level Level
		want  string // "" for none
	}{
		{cuihuxilu, County, wuhua},
		{cuihuxilu, Township, huashan},
		{cuihuxilu, Village, cuihuxilu},
		{cuihuxilu, City, kunmingCode},
		{cuihuxilu, Province, "530000000000"},
		{wuhua, Township, ""},
		{wuhua, County, wuhua},
		{"530102999999", County, ""},
		{cuihuxilu, "hamlet", ""},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.code+"/"+string(tt.level), func(t *testing.T) {
			d, ok := tr.Ancestor(tt.code, tt.level)
			if tt.want == "" {
				if ok {
					t.Errorf("Ancestor = %s, want none", d.Code)
				}
				return
			}
			if !ok || d.Code != tt.want {
				t.Errorf("Ancestor = %v, %v; want %s", d, ok, tt.want)
			}
		})
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		code string
		want string
	}{
		{cuihuxilu, "云南省 昆明市 五华区 华山街道 翠湖西路社区居民委员会"},
		{wuhua, "云南省 昆明市 五华区"},
		{"530000000000", "云南省"},
		{"530102999999", ""},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			var names []string
			for _, d := range tr.Path(tt.code) {
				names = append(names, d.Name)
			}
			if got := strings.Join(names, " "); got != tt.want {
				t.Errorf("Path = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		area, code string
		want       bool
	}{
		{wuhua, cuihuxilu, true},
		{wuhua, huashan, true},
		{wuhua, wuhua, true},
		{kunmingCode, cuihuxilu, true},
		{huashan, wuhua, false},
		{guandu, cuihuxilu, false},
		{"530102001000", "530102002001", false}, // a village of the next township
		{"530102999999", "530102999999", false},
		{wuhua, "530102999999", false},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.area+"⊇"+tt.code, func(t *testing.T) {
			if got := tr.Covers(tt.area, tt.code); got != tt.want {
				t.Errorf("Covers = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSearch(t *testing.T) {
	tests := []struct {
		q     string
		limit int
		want  []string
	}{
		{"官渡", 0, []string{guandu, "530111006000", "530111006001", "530127103005"}},
		{"官渡", 2, []string{guandu, "530111006000"}},
		{" 翠湖 ", 10, []string{cuihuxilu, "530102001007"}},
		{"530102001", 3, []string{huashan, cuihuxilu, "530102001002"}},
		{"昆明市", 1, []string{kunmingCode}},
		{"", 5, nil},
		{"伦敦", 5, nil},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			var got []string
			for _, d := range tr.Search(tt.q, tt.limit) {
				got = append(got, d.Code)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Search(%q, %d) = %v, want %v", tt.q, tt.limit, got, tt.want)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	tr := Kunming()
	tests := []struct {
		code string
		want int
	}{
		{"530000000000", 0},
		{kunmingCode, 1},
		{wuhua, 2},
		{huashan, 16},
		{cuihuxilu, 166},
		{"530181009210", 1903},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			i, ok := tr.Index(tt.code)
			if !ok || i != tt.want {
				t.Errorf("Index = %d, %v; want %d", i, ok, tt.want)
			}
			if d := tr.ByIndex(i); d == nil || d.Code != tt.code {
				t.Errorf("ByIndex(%d) = %v, want %s", i, d, tt.code)
			}
		})
	}
	for i := range tr.Len() {
		if j, ok := tr.Index(tr.ByIndex(i).Code); !ok || j != i {
			t.Fatalf("Index(ByIndex(%d)) = %d", i, j)
		}
	}
	if _, ok := tr.Index("530102999999"); ok {
		t.Error("Index found an unknown code")
	}
	if tr.ByIndex(-1) != nil || tr.ByIndex(tr.Len()) != nil {
		t.Error("ByIndex out of range is not nil")
	}
}

func TestBoundary(t *testing.T) {
	tests := []struct {
		code string
		ok   bool
	}{
		{kunmingCode, true},
		{wuhua, true},
		{"530181000000", true},
		{huashan, false},
		{"530000000000", false},
		{"../geojson/530102000000", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			b, ok := Boundary(tt.code)
			if ok != tt.ok {
				t.Fatalf("Boundary ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			var f struct {
				Type     string
				Geometry struct{ Type string }
			}
			if err := json.Unmarshal(b, &f); err != nil || f.Type != "Feature" || f.Geometry.Type != "MultiPolygon" {
				t.Errorf("Boundary is not a MultiPolygon feature: %v %+v", err, f)
			}
		})
	}
	b, _ := Boundary(wuhua)
	b[0] = 'x'
	if again, _ := Boundary(wuhua); again[0] != '{' {
		t.Error("changing the returned bytes changed the embedded boundary")
	}
}

func TestLoadTreeAnyOrder(t *testing.T) {
	csv := "\ufeffcode,name,level,parent_code\n" +
		"530102001001,翠湖西路社区,village,530102001000\n" +
		"530102001000,华山街道,township,530102000000\n" +
		"530102000000, 五华区 ,county,\n"
	tr, err := LoadTree(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if r := tr.Root(); r.Code != wuhua || r.Name != "五华区" {
		t.Errorf("Root = %+v, want 五华区", r)
	}
	if !tr.Covers(wuhua, cuihuxilu) {
		t.Error("五华区 does not cover 翠湖西路社区")
	}
	if i, _ := tr.Index(cuihuxilu); i != 0 {
		t.Errorf("Index of the first row = %d, want 0", i)
	}
}

func TestLoadTreeEmbeddedRoundTrip(t *testing.T) {
	// The embedded file must load through the public API as Kunming does.
	if _, err := LoadTree(bytes.NewReader(kunmingCSV)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadTreeErrors(t *testing.T) {
	const head = "code,name,level,parent_code\n"
	const top = head + "530100000000,昆明市,city,\n" // line 2
	tests := []struct {
		name, csv, want string
	}{
		{"empty", "", "regions: empty file: want the header code,name,level,parent_code"},
		{"header", "code,name,level\n", "regions line 1: header is code,name,level: want code,name,level,parent_code"},
		{"no rows", head, "regions: no divisions after the header: add at least the root"},
		{"fields", top + "530102000000,五华区,county\n",
			"regions line 3: 3 fields, want 4 (code,name,level,parent_code)"},
		{"short code", top + "53010200000,五华区,county,530100000000\n",
			`regions line 3: code "53010200000" is not 12 digits: write the 12-digit 统计用区划代码, e.g. 530102000000`},
		{"letters in code", top + "5301020000O0,五华区,county,530100000000\n",
			`regions line 3: code "5301020000O0" is not 12 digits: write the 12-digit 统计用区划代码, e.g. 530102000000`},
		{"duplicate", top + "530102000000,五华区,county,530100000000\n530102000000,五华,county,530100000000\n",
			"regions line 4: duplicate code 530102000000 (first on line 3): remove one of the rows"},
		{"no name", top + "530102000000,,county,530100000000\n",
			"regions line 3: name is empty: give the division's name"},
		{"level", top + "530102000000,五华区,district,530100000000\n",
			`regions line 3: unknown level "district": use one of province, city, county, township, village`},
		{"bad parent", top + "530102000000,五华区,county,5301\n",
			`regions line 3: parent_code "5301" is not 12 digits: write the parent's 12-digit code, e.g. 530100000000`},
		{"unknown parent", top + "530102000000,五华区,county,530200000000\n",
			"regions line 3: unknown parent_code 530200000000: add a row for it or correct the code"},
		{"parent below", top + "530102000000,五华区,county,530102001000\n530102001000,华山街道,township,530102000000\n",
			"regions line 3: parent 530102001000 is a township, which does not lie above a county: correct the level or the parent_code"},
		{"own parent", top + "530102000000,五华区,county,530102000000\n",
			"regions line 3: parent 530102000000 is a county, which does not lie above a county: correct the level or the parent_code"},
		{"two roots", top + "530102000000,五华区,county,\n",
			"regions line 3: parent_code is empty but line 2 is already the root: give this division's parent"},
		{"no root", head + "530102000000,五华区,county,530100000000\n",
			"regions: no root: exactly one row (the division at the top) must have an empty parent_code\n" +
				"regions line 2: unknown parent_code 530100000000: add a row for it or correct the code"},
		{"quote", top + "530102000000,\"五华区,county,530100000000\n",
			`regions: parse error on line 3, column 45: extraneous or missing " in quoted-field`},
		{"every problem at once", top +
			"530102000000,五华区,county,530100000000\n" +
			"530102000000,,town,530102999000\n" +
			"12,华山街道,township,\n",
			"regions line 4: duplicate code 530102000000 (first on line 3): remove one of the rows\n" +
				"regions line 4: name is empty: give the division's name\n" +
				`regions line 4: unknown level "town": use one of province, city, county, township, village` + "\n" +
				"regions line 4: unknown parent_code 530102999000: add a row for it or correct the code\n" +
				`regions line 5: code "12" is not 12 digits: write the 12-digit 统计用区划代码, e.g. 530102000000` + "\n" +
				"regions line 5: parent_code is empty but line 2 is already the root: give this division's parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTree(strings.NewReader(tt.csv))
			if err == nil {
				t.Fatal("LoadTree succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}
