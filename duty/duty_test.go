package duty

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"warngate/internal/redistest"
	"warngate/internal/sheet"
	"warngate/region"
)

const (
	huashan = "530102001000" // 华山街道
	huguo   = "530102002000" // 护国街道
	wuhua   = "530102000000"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBDuty)
	ctx := context.Background()
	prefix := "t" + t.Name()
	if keys, _ := rdb.Keys(ctx, prefix+":*").Result(); len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
	tree := region.Kunming()
	people := `id,name,phone,wechat_openid,wecom_userid,role,division
hs-leader,张伟,15000000003,,,township_leader,530102001000
hs-duty,刘洋,15100000004,,,township_duty,530102001000
hs-duty2,赵敏,15100000005,,,township_duty,530102001000
hs-r1,吴秀英,13300000009,,,resident,530102001000
hg-leader,李明,15000000013,,,township_leader,530102002000
`
	r, err := region.LoadRoster(tree, strings.NewReader(people), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(rdb, Options{Prefix: prefix, Tree: tree, Roster: func(context.Context) (region.Roster, error) { return r, nil }})
}

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, Beijing)
	if err != nil {
		panic(err)
	}
	return t
}

const schedule = `division,start,end,leader_id,leader_name,duty_id,duty_name
530102001000,2026-12-04 08:00,2026-12-04 20:00,hs-leader,张伟,hs-duty,刘洋
530102001000,2026-12-04 20:00,2026-12-05 08:00,hs-leader,张伟,hs-duty2,赵敏
530102001000,2026-12-04 20:00,2026-12-05 08:00,hs-leader,张伟,hs-duty,刘洋
`

func errorsOf(res *Result) string {
	var out []string
	for _, e := range res.Errors {
		out = append(out, e.Error())
	}
	return strings.Join(out, "\n")
}

// A 值班表 is imported with a dry run first; who is on duty follows the
// shifts; an override wins over the schedule for its window; a schedule
// imported again replaces the shifts of its window.
func TestScheduleNowAndOverride(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	res, err := s.Import(ctx, strings.NewReader(schedule), sheet.CSV, ImportOptions{DryRun: true})
	if err != nil || res.ErrorsTotal != 0 || res.Shifts != 2 {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	if _, err := s.Now(ctx, huashan, at("2026-12-04 21:00")); err == nil {
		t.Fatal("a dry run stored shifts")
	}
	if res, err = s.Import(ctx, strings.NewReader(schedule), sheet.CSV, ImportOptions{By: "hs"}); err != nil || res.ErrorsTotal != 0 {
		t.Fatalf("import: %v %+v", err, res)
	}
	leader, duty, sh, ok, err := s.OnDuty(ctx, huashan, at("2026-12-04 23:30"))
	if err != nil || !ok || leader.ID != "hs-leader" || leader.Phone != "15000000003" || len(duty) != 2 || duty[0].ID != "hs-duty2" || !sh.Start.Equal(at("2026-12-04 20:00")) {
		t.Fatalf("tonight: %+v %+v %+v %v %v", leader, duty, sh, ok, err)
	}
	if _, _, _, ok, _ := s.OnDuty(ctx, huashan, at("2026-12-05 08:00")); ok {
		t.Error("on duty after the last shift ended")
	}
	if _, _, _, ok, _ := s.OnDuty(ctx, huguo, at("2026-12-04 23:30")); ok {
		t.Error("on duty in a division without a schedule")
	}

	// A swap for two hours tonight.
	o, errs, err := s.SetOverride(ctx, Override{Division: huashan, Start: at("2026-12-04 22:00"), End: at("2026-12-05 00:00"),
		LeaderID: "hs-leader", DutyIDs: []string{"hs-duty"}, Reason: "换班", By: "hs"}, nil)
	if err != nil || len(errs) != 0 || o.Source != FromOverride {
		t.Fatalf("override: %v %v", err, errs)
	}
	if _, duty, sh, _, _ := s.OnDuty(ctx, huashan, at("2026-12-04 23:30")); len(duty) != 1 || duty[0].ID != "hs-duty" || sh.Source != FromOverride {
		t.Errorf("during the override: %+v %+v", duty, sh)
	}
	if _, duty, _, _, _ := s.OnDuty(ctx, huashan, at("2026-12-05 01:00")); len(duty) != 2 {
		t.Errorf("after the override: %+v", duty)
	}

	// The night shift again, with one officer: it replaces the old night.
	again := "division,start,end,leader_id,duty_id\n530102001000,2026-12-04T20:00:00+08:00,2026-12-05T08:00:00+08:00,hs-leader,hs-duty2\n"
	if res, err = s.Import(ctx, strings.NewReader(again), sheet.CSV, ImportOptions{}); err != nil || res.Replaced != 1 {
		t.Fatalf("again: %v %+v", err, res)
	}
	list, _ := s.Shifts(ctx, huashan, at("2026-12-04 00:00"), at("2026-12-06 00:00"))
	if len(list) != 3 || len(list[1].Duty) != 1 && len(list[2].Duty) != 1 {
		t.Errorf("shifts after the second import: %+v", list)
	}
}

// Every problem of a 值班表 is named by row and column, and nothing is stored.
func TestImportProblems(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	bad := `division,start,end,leader_id,leader_name,duty_id,duty_name
530102001000,2026-12-04 08:00,2026-12-04 20:00,hs-leader,张三,hs-duty,刘洋
530102001000,2026-12-04 19:00,2026-12-05 08:00,hs-leader,张伟,hs-r1,吴秀英
530102002000,2026-12-04 08:00,2026-12-04 07:00,hg-leader,李明,nobody,
530103001000,tonight,2026-12-04 20:00,hs-leader,,hs-duty,
`
	res, err := s.Import(ctx, strings.NewReader(bad), sheet.CSV, ImportOptions{Allowed: func(c string) bool { return region.Kunming().Covers(wuhua, c) }})
	if err != nil {
		t.Fatal(err)
	}
	want := `row 2, column leader_name: hs-leader is 张伟 in the roster, not 张三: correct the id or the name
row 3, column duty_id: hs-r1 (吴秀英) is a resident: name an official
row 4, column end: end 2026-12-04 07:00 is not after start 2026-12-04 08:00: a shift ends after it starts
row 4, column duty_id: "nobody" is not in the roster: import them with the 通讯录 first, or correct the id
row 5, column division: 530103001000 lies outside your division: you may set duty only inside it
row 5, column start: "tonight" is not a time: write 2026-12-04 20:00 (Beijing time) or RFC 3339 such as 2026-12-04T20:00:00+08:00`
	if got := errorsOf(res); got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
	list, _ := s.Shifts(ctx, huashan, at("2026-12-01 00:00"), at("2026-12-31 00:00"))
	if len(list) != 0 {
		t.Errorf("a refused sheet stored %d shifts", len(list))
	}
	overlap := "division,start,end,leader_id,duty_id\n530102001000,2026-12-04 08:00,2026-12-04 20:00,hs-leader,hs-duty\n530102001000,2026-12-04 19:00,2026-12-05 08:00,hs-leader,hs-duty2\n"
	res, _ = s.Import(ctx, strings.NewReader(overlap), sheet.CSV, ImportOptions{})
	if got := errorsOf(res); !strings.HasPrefix(got, "row 3, column start: this shift (2026-12-04 19:00–2026-12-05 08:00) overlaps the shift of row 2") {
		t.Errorf("overlap: %s", got)
	}
	_, errs, _ := s.SetOverride(ctx, Override{Division: "x", LeaderID: "nobody", DutyIDs: []string{"hs-duty", "hs-duty"}}, nil)
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	if strings.Join(fields, ",") != "division,start,end,leader.id,duty[1].id" {
		t.Errorf("override errors: %v", errs)
	}
}

// An .xlsx 值班表 with Chinese headers and times typed into Excel as dates.
func TestImportXLSXWithExcelTimes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	f := excelize.NewFile()
	f.SetSheetName("Sheet1", SheetName)
	rows := [][]any{
		{"区划代码", "开始时间", "结束时间", "带班领导编号", "带班领导", "值班员编号", "值班员"},
		{huashan, time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC), "2026/12/5 8:00", "hs-leader", "张伟", "hs-duty", "刘洋"},
	}
	for i, r := range rows {
		f.SetSheetRow(SheetName, fmt.Sprintf("A%d", i+1), &r)
	}
	var buf bytes.Buffer
	f.WriteTo(&buf)
	res, err := s.Import(ctx, &buf, sheet.XLSX, ImportOptions{})
	if err != nil || res.ErrorsTotal != 0 {
		t.Fatalf("%v %s", err, errorsOf(res))
	}
	sh, err := s.Now(ctx, huashan, at("2026-12-04 20:00"))
	if err != nil || !sh.End.Equal(at("2026-12-05 08:00")) {
		t.Errorf("%+v %v", sh, err)
	}
}

// OnDutyIn answers for many divisions at once what OnDuty answers for
// each: the override where one covers the time, else the schedule's
// shift, and nothing for a division with no shift.
func TestOnDutyInAnswersEachDivisionAsOnDuty(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if res, err := s.Import(ctx, strings.NewReader(schedule), sheet.CSV, ImportOptions{}); err != nil || res.ErrorsTotal != 0 {
		t.Fatalf("import: %v %s", err, errorsOf(res))
	}
	if _, errs, err := s.SetOverride(ctx, Override{Division: huguo, Start: at("2026-12-04 18:00"), End: at("2026-12-05 06:00"),
		LeaderID: "hg-leader", DutyIDs: []string{"hs-duty"}, By: "test"}, nil); err != nil || len(errs) > 0 {
		t.Fatalf("override: %v %v", err, errs)
	}
	when := at("2026-12-04 21:00")
	all, err := s.OnDutyIn(ctx, []string{huashan, huguo, wuhua}, when)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all[wuhua]; ok || len(all) != 2 {
		t.Fatalf("answers for %d divisions (%v): want 华山街道 and 护国街道 only", len(all), all)
	}
	for _, d := range []string{huashan, huguo} {
		leader, officers, sh, ok, err := s.OnDuty(ctx, d, when)
		got := all[d]
		if err != nil || !ok || got.Leader.ID != leader.ID || len(got.Duty) != len(officers) || got.Shift.Source != sh.Source {
			t.Errorf("%s: OnDutyIn %+v, OnDuty %v %v %+v %v %v", d, got, leader, officers, sh, ok, err)
		}
	}
	if st := all[huguo]; st.Shift.Source != FromOverride || st.Leader.Name != "李明" || st.Duty[0].Phone != "15100000004" {
		t.Errorf("护国街道: %+v, want the override with people from the roster", st)
	}
	if st := all[huashan]; st.Shift.Source != FromSchedule || len(st.Duty) != 2 {
		t.Errorf("华山街道: %+v, want the schedule's night shift of two duty officers", st)
	}
}
