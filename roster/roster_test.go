package roster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/xuri/excelize/v2"

	"warngate/internal/redistest"
	"warngate/internal/sheet"
	"warngate/region"
)

const (
	wuhua     = "530102000000" // 五华区
	huashan   = "530102001000" // 华山街道
	cuihuxilu = "530102001001" // 翠湖西路社区, in 华山街道
	huguo     = "530102002000" // 护国街道
	panlong   = "530103000000" // 盘龙区
)

// newStore empties the package's database and returns a store on it under
// a prefix of the test's own.
func newStore(t *testing.T, base region.Roster) (*Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBRoster)
	prefix := "t" + strings.ReplaceAll(t.Name(), "/", "_")
	keys, _ := rdb.Keys(context.Background(), prefix+":*").Result()
	if len(keys) > 0 {
		rdb.Del(context.Background(), keys...)
	}
	return New(rdb, Options{Prefix: prefix, Tree: region.Kunming(), Base: base}), rdb
}

const people = `id,name,phone,wechat_openid,wecom_userid,role,division
hs-duty,刘洋,15100000004,,,township_duty,530102001000
cx-officer,陈静,18600000005,,chenjing,village_officer,530102001001
cx-grid1,黄磊,19100000007,,,grid_worker,530102001001
cx-r1,吴秀英,13300000009,oAbC123,,resident,530102001001
`

func importCSV(t *testing.T, s *Store, body string, ch Change) *Result {
	t.Helper()
	res, err := s.Import(context.Background(), strings.NewReader(body), sheet.CSV, ch)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func errorsOf(res *Result) string {
	var out []string
	for _, e := range res.Errors {
		out = append(out, e.Error())
	}
	return strings.Join(out, "\n")
}

func current(t *testing.T, s *Store) (region.Roster, int64) {
	t.Helper()
	r, n, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r, n
}

// A dry run lists the difference and every problem by row and column, and
// stores nothing; applying with a problem stores nothing either; the fixed
// sheet applies.
func TestImportDryRunAndAllOrNothing(t *testing.T) {
	s, _ := newStore(t, nil)
	bad := strings.Replace(people, "19100000007", "12900000007", 1)     // row 4
	bad = strings.Replace(bad, ",530102001000\n", ",530102999999\n", 1) // row 2
	for _, dry := range []bool{true, false} {
		res := importCSV(t, s, bad, Change{Kind: People, DryRun: dry})
		want := `row 2, column division: unknown division "530102999999": use a 12-digit code from the region tree
row 4, column phone: phone "12900000007" is not an 11-digit mainland mobile number: write 1[3-9] and 9 more digits, optionally after +86`
		if got := errorsOf(res); got != want {
			t.Errorf("dry run %v errors:\n%s\nwant:\n%s", dry, got, want)
		}
		if res.Added != 2 || res.Version != 0 {
			t.Errorf("dry run %v: %+v", dry, res)
		}
		if _, n := current(t, s); n != 0 {
			t.Fatalf("dry run %v stored version %d", dry, n)
		}
	}
	res := importCSV(t, s, people, Change{Kind: People, By: "test"})
	if res.ErrorsTotal != 0 || res.Added != 4 || res.Version != 1 {
		t.Fatalf("apply: %+v", res)
	}
	r, n := current(t, s)
	if p, ok := r.Person("cx-grid1"); n != 1 || !ok || p.Role != region.GridWorker || p.Division != cuihuxilu {
		t.Errorf("version %d: %+v %v", n, p, ok)
	}
	if c := r.Counts(wuhua); c.Officials != 3 || c.Residents != 1 || c.WeChatFollowers != 1 {
		t.Errorf("counts %+v", c)
	}
	if p, ok := r.ByPhone("18600000005"); !ok || p.ID != "cx-officer" {
		t.Errorf("ByPhone %+v", p)
	}
}

// An .xlsx with Chinese headers names the column as its header says, and
// rows as Excel numbers them.
func TestImportXLSXNamesCells(t *testing.T) {
	s, _ := newStore(t, nil)
	f := excelize.NewFile()
	f.SetSheetName("Sheet1", "通讯录")
	rows := [][]any{
		{"序号", "编号", "姓名", "手机号", "角色", "区划代码", "备注"},
		{1, "hs-duty", "刘洋", 15100000004, "乡镇值班人员", 530102001000, ""},
		{2, "cx-grid1", "黄磊", "1910000007", "网格员", "530102001001", "电话待核实"},
	}
	for i, r := range rows {
		f.SetSheetRow("通讯录", fmt.Sprintf("A%d", i+1), &r)
	}
	var buf bytes.Buffer
	f.WriteTo(&buf)
	res, err := s.Import(context.Background(), bytes.NewReader(buf.Bytes()), sheet.XLSX, Change{Kind: People, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 1 || res.Errors[0].Row != 3 || res.Errors[0].Column != "手机号" || res.Errors[0].Field != "phone" {
		t.Fatalf("errors %+v", res.Errors)
	}
	if res.Added != 1 {
		t.Errorf("added %d", res.Added)
	}
}

// A sheet is the complete list of the divisions it names: a person of those
// divisions it leaves out is retired, others are not touched; mode merge
// only adds and changes.
func TestRetireByOmissionAndMerge(t *testing.T) {
	s, _ := newStore(t, nil)
	importCSV(t, s, people+"hg-duty,赵敏,13800000020,,,township_duty,530102002000\n", Change{Kind: People})
	// 翠湖西路 without cx-r1, 华山街道 as before; 护国街道 not named.
	next := strings.Replace(people, "cx-r1,吴秀英,13300000009,oAbC123,,resident,530102001001\n", "", 1)
	next = strings.Replace(next, "刘洋", "刘阳", 1)
	res := importCSV(t, s, next, Change{Kind: People, DryRun: true})
	if res.Retired != 1 || !slices.Equal(res.RetiredIDs, []string{"cx-r1"}) || res.Changed != 1 || res.Unchanged != 2 {
		t.Fatalf("dry run: %+v", res)
	}
	res = importCSV(t, s, next, Change{Kind: People})
	r, _ := current(t, s)
	if _, ok := r.Person("cx-r1"); ok || res.Version != 2 {
		t.Errorf("cx-r1 not retired: %+v", res)
	}
	if _, ok := r.Person("hg-duty"); !ok {
		t.Error("a person of a division the sheet does not name was retired")
	}
	// Merge: one new person, nobody retired.
	res = importCSV(t, s, "id,name,phone,role,division\ncx-r2,周建国,13300000010,resident,530102001001\n", Change{Kind: People, Merge: true})
	r, _ = current(t, s)
	if res.Added != 1 || res.Retired != 0 {
		t.Errorf("merge: %+v", res)
	}
	var ids []string
	r.People(cuihuxilu, func(p region.Person) bool { ids = append(ids, p.ID); return true })
	if strings.Join(ids, " ") != "cx-officer cx-grid1 cx-r2" {
		t.Errorf("翠湖西路 after merge: %v", ids)
	}
	// A scope empties a division whose rows all left the sheet.
	res = importCSV(t, s, "id,name,phone,role,division\nhs-duty,刘阳,15100000004,township_duty,530102001000\n", Change{Kind: People, Scope: huashan, DryRun: true})
	if res.Retired != 3 {
		t.Errorf("scope: %+v", res)
	}
}

// Rows outside the caller's division are refused by row; a grid worker who
// does not exist, or who would be retired with households left, is named.
func TestImportChecksTheWholeRoster(t *testing.T) {
	s, _ := newStore(t, nil)
	importCSV(t, s, people, Change{Kind: People})
	inWuhua := func(code string) bool { return region.Kunming().Covers(wuhua, code) }
	res := importCSV(t, s, "id,name,phone,role,division\npl-1,孙强,13400000010,resident,530103001001\n", Change{Kind: People, Merge: true, Allowed: inWuhua})
	if errorsOf(res) != "row 2, column division: 530103001001 lies outside your division: you may change only the roster of your own" {
		t.Errorf("outside: %s", errorsOf(res))
	}
	hh := "id,head,address,phone,category,division,grid_worker\nh1,钱桂英,翠湖西路12号,,独居老人,530102001001,cx-grid1\nh2,孔德明,翠湖西路15号,,danger_zone,530102001001,cx-officer\nh3,何平,翠湖西路16号,,no_phone,530102001001,nobody\nh1,x,y,,disabled,530102001001,cx-grid1\n"
	res = importCSV(t, s, hh, Change{Kind: Households})
	want := `row 3, column grid_worker: grid_worker "cx-officer" is a village_officer: use the id of a person with role grid_worker
row 4, column grid_worker: grid_worker "nobody" is not in the roster: use the id of a person with role grid_worker
row 5, column id: duplicate id "h1" (first on row 2): give each household its own id`
	if errorsOf(res) != want {
		t.Errorf("households:\n%s\nwant:\n%s", errorsOf(res), want)
	}
	importCSV(t, s, hh[:strings.Index(hh, "h2,")], Change{Kind: Households})
	res, err := s.Retire(context.Background(), "cx-grid1", Change{Kind: People})
	if err != nil || !strings.Contains(errorsOf(res), "cx-grid1 would be retired but is the grid worker of households h1") {
		t.Errorf("retire grid worker: %v %s", err, errorsOf(res))
	}
	res = importCSV(t, s, strings.Replace(people, "grid_worker,530102001001", "info_officer,530102001001", 1), Change{Kind: People})
	if errorsOf(res) != "row 4, column role: cx-grid1 is the grid worker of households h1: give them another grid worker first, or keep the role grid_worker" {
		t.Errorf("role change: %s", errorsOf(res))
	}
}

// An export imports back unchanged, in both header languages.
func TestExportImportRoundTrip(t *testing.T) {
	demo := region.Demo(region.Kunming(), region.DemoOptions{ResidentsPerVillage: 3, HouseholdsPerVillage: 2})
	s, _ := newStore(t, demo)
	ctx := context.Background()
	// The first change writes the demo roster whole.
	res := importCSV(t, s, "id,name,phone,role,division\nnew-1,新人,13900000099,resident,530102001001\n", Change{Kind: People, Merge: true})
	if res.Version != 1 || res.Added != 1 {
		t.Fatalf("%+v", res)
	}
	r, _ := current(t, s)
	if r.Counts(region.Kunming().Root().Code) != demo.Counts(region.Kunming().Root().Code).Add(region.Counts{Residents: 1}) {
		t.Errorf("version 1 is not the demo plus one: %+v", r.Counts(region.Kunming().Root().Code))
	}
	for _, k := range Kinds {
		for _, zh := range []bool{false, true} {
			var buf bytes.Buffer
			if err := s.Export(ctx, &buf, k, wuhua, zh); err != nil {
				t.Fatal(err)
			}
			res, err := s.Import(ctx, &buf, sheet.XLSX, Change{Kind: k})
			if err != nil {
				t.Fatal(err)
			}
			if res.ErrorsTotal != 0 || res.Added+res.Changed+res.Retired != 0 || res.Unchanged == 0 || res.Version != 1 {
				t.Errorf("%s (zh %v) round trip: %+v %s", k, zh, res, errorsOf(res))
			}
		}
	}
}

// An edit makes a new version sharing every other chunk; the old version
// is still served as it was to whoever asks for it (a warning planned with
// it); a second store, another process, follows without a restart.
func TestEditsAreVersions(t *testing.T) {
	s, rdb := newStore(t, nil)
	ctx := context.Background()
	importCSV(t, s, people, Change{Kind: People})
	other := New(rdb, Options{Prefix: s.opt.Prefix, Tree: region.Kunming()})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go other.Watch(wctx, 20*time.Millisecond, time.Hour)

	res, err := s.Put(ctx, []string{"cx-r1", "吴秀英", "13300000019", "", "", "resident", cuihuxilu}, Change{Kind: People})
	if err != nil || res.Changed != 1 || res.Version != 2 {
		t.Fatalf("put: %v %+v", err, res)
	}
	m1, _ := rdb.HGetAll(ctx, s.manifestKey(1)).Result()
	m2, _ := rdb.HGetAll(ctx, s.manifestKey(2)).Result()
	if m1[field(People, huashan)] != m2[field(People, huashan)] || m1[field(People, cuihuxilu)] == m2[field(People, cuihuxilu)] {
		t.Errorf("manifests: %v → %v", m1, m2)
	}
	old, err := s.At(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := old.Person("cx-r1"); p.Phone != "13300000009" {
		t.Errorf("version 1 changed: %+v", p)
	}
	if r, _ := current(t, s); func() string { p, _ := r.Person("cx-r1"); return p.Phone }() != "13300000019" {
		t.Error("version 2 lacks the edit")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, n := other.Latest(); n == 2 {
			if p, _ := r.Person("cx-r1"); p.Phone != "13300000019" {
				t.Errorf("other process: %+v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other store never saw version 2")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The same edit again changes nothing.
	if res, _ := s.Put(ctx, []string{"cx-r1", "吴秀英", "13300000019", "", "", "resident", cuihuxilu}, Change{Kind: People}); res.Version != 2 || res.Unchanged != 1 {
		t.Errorf("same edit: %+v", res)
	}
	// Field errors of an edit name the fields.
	res, _ = s.Put(ctx, []string{"cx-r9", "", "1", "", "", "mayor", "x"}, Change{Kind: People})
	if errorsOf(res) != `role: unknown role "mayor": use one of county_leader, county_duty, township_leader, township_duty, village_officer, info_officer, grid_worker, resident
division: unknown division "x": use a 12-digit code from the region tree
phone: phone "1" is not an 11-digit mainland mobile number: write 1[3-9] and 9 more digits, optionally after +86` {
		t.Errorf("edit errors:\n%s", errorsOf(res))
	}
}

// Versions nobody needs are swept with the chunks only they named; a kept
// version survives.
func TestSweep(t *testing.T) {
	s, rdb := newStore(t, nil)
	ctx := context.Background()
	s.opt.KeepLast = 2
	importCSV(t, s, people, Change{Kind: People})
	if err := s.Keep(ctx, 1, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		s.Put(ctx, []string{"cx-r1", "吴秀英", fmt.Sprintf("1330000001%d", i), "", "", "resident", cuihuxilu}, Change{Kind: People})
	}
	n, err := s.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	versions, _ := rdb.ZRange(ctx, s.versionsKey(), 0, -1).Result()
	if strings.Join(versions, ",") != "1,4,5" {
		t.Errorf("versions kept %v", versions)
	}
	chunks, _ := rdb.ZCard(ctx, s.chunksKey()).Result()
	// 华山街道's chunk, and 翠湖西路's of versions 1, 4 and 5.
	if chunks != 4 || n != 2+2 {
		t.Errorf("%d chunks left, %d keys deleted", chunks, n)
	}
	fresh := New(rdb, Options{Prefix: s.opt.Prefix, Tree: region.Kunming()})
	if _, err := fresh.At(ctx, 2); !errors.Is(err, ErrNoVersion) {
		t.Errorf("swept version: %v", err)
	}
	if r, err := fresh.At(ctx, 1); err != nil || func() string { p, _ := r.Person("cx-r1"); return p.Phone }() != "13300000009" {
		t.Errorf("kept version: %v", err)
	}
}

// A version serves exactly what the CSV loader serves for the same files.
func TestVersionServesWhatFilesServe(t *testing.T) {
	tree := region.Kunming()
	dir := filepath.Join("..", "region", "testdata", "roster")
	loaded, err := region.LoadRosterFiles(tree, filepath.Join(dir, "people.csv"), filepath.Join(dir, "devices.csv"), filepath.Join(dir, "households.csv"))
	if err != nil {
		t.Fatal(err)
	}
	s, rdb := newStore(t, nil)
	ctx := context.Background()
	if ok, err := s.Seed(ctx, loaded, "system", "roster files"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.Seed(ctx, region.Demo(tree, region.DemoOptions{}), "system", "again"); ok {
		t.Error("seeded twice")
	}
	fresh := New(rdb, Options{Prefix: s.opt.Prefix, Tree: tree})
	r, n, err := fresh.Current(ctx)
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	tree.Walk(tree.Root().Code, func(d *region.Division) bool {
		if a, b := dump(loaded, d.Code), dump(r, d.Code); a != b {
			t.Errorf("%s: files %s, version %s", d.Code, a, b)
		}
		if loaded.Counts(d.Code) != r.Counts(d.Code) {
			t.Errorf("%s counts %+v vs %+v", d.Code, loaded.Counts(d.Code), r.Counts(d.Code))
		}
		return true
	})
	for _, id := range []string{"wh-duty", "cx-r2", "cx-grid1", "nobody"} {
		a, ok1 := loaded.Person(id)
		b, ok2 := r.Person(id)
		if a != b || ok1 != ok2 {
			t.Errorf("Person(%s): %+v vs %+v", id, a, b)
		}
	}
	for _, ph := range []string{"13900000002", "13300000009", "10000000000"} {
		a, _ := loaded.ByPhone(ph)
		b, _ := r.ByPhone(ph)
		if a != b {
			t.Errorf("ByPhone(%s): %+v vs %+v", ph, a, b)
		}
	}
	if a, _ := loaded.Household("h2"); !reflect.DeepEqual(a, func() region.Household { h, _ := r.Household("h2"); return h }()) {
		t.Error("Household(h2) differs")
	}
}

func dump(r region.Roster, code string) string {
	var b strings.Builder
	r.People(code, func(p region.Person) bool { fmt.Fprintf(&b, "%+v;", p); return true })
	r.Devices(code, func(d region.Device) bool { fmt.Fprintf(&b, "%+v;", d); return true })
	r.Households(code, func(h region.Household) bool { fmt.Fprintf(&b, "%+v;", h); return true })
	return b.String()
}

// Sheets that are not a plain table are refused clearly, and store nothing.
func TestHostileSheets(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	garbage := make([]byte, 10<<20)
	rand.Read(garbage)
	for _, f := range []sheet.Format{sheet.XLSX, sheet.CSV} {
		_, err := s.Import(ctx, bytes.NewReader(garbage), f, Change{Kind: People})
		var ref *sheet.Refusal
		if !errors.As(err, &ref) {
			t.Errorf("10 MB of garbage as %s: %v", f, err)
		}
	}
	book := excelize.NewFile()
	for i, r := range [][]any{
		{"id", "name", "phone", "role", "division"},
		{"a", "甲", "13800000001", "resident", cuihuxilu},
		{"b", "乙", "13800000002", "resident", cuihuxilu},
		{"c", "丙", "13800000003", "resident", cuihuxilu},
		{"id", "name", "phone", "role", "division"},
		{"d", "丁", "13800000004", "resident", cuihuxilu},
	} {
		book.SetSheetRow("Sheet1", fmt.Sprintf("A%d", i+1), &r)
	}
	book.SetCellFormula("Sheet1", "C3", `="138"&"00000002"`)
	book.MergeCell("Sheet1", "E4", "E6")
	var buf bytes.Buffer
	book.WriteTo(&buf)
	res, err := s.Import(ctx, &buf, sheet.XLSX, Change{Kind: People})
	if err != nil {
		t.Fatal(err)
	}
	got := errorsOf(res)
	for _, want := range []string{
		"row 3, column phone: cell C3 holds a formula",
		"row 4, column division: cells E4:E6 are merged",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if _, n := current(t, s); n != 0 || res.Version != 0 {
		t.Error("a refused sheet stored a version")
	}
}

// Before anything is imported, a store without a base roster serves an
// empty one.
func TestEmptyBase(t *testing.T) {
	s, _ := newStore(t, nil)
	r, n := current(t, s)
	var people int
	r.People(cuihuxilu, func(region.Person) bool { people++; return true })
	if n != 0 || people != 0 || r.Counts(wuhua) != (region.Counts{}) {
		t.Errorf("version %d, %d people, %+v", n, people, r.Counts(wuhua))
	}
	if _, ok := r.Person("x"); ok {
		t.Error("found a person in an empty roster")
	}
	live := s.Live()
	live.Devices(cuihuxilu, func(region.Device) bool { t.Error("a device in an empty roster"); return false })
}
