package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"warngate/duty"
	"warngate/internal/redistest"
	"warngate/internal/sheet"
	"warngate/region"
	"warngate/roster"
)

var updateSamples = flag.Bool("update-samples", false, "rewrite the sample sheets in deploy/samples")

// The sample sheets bureaus start from, as they keep them: Chinese headers,
// Chinese role, kind and category names, one worksheet named as theirs are.
var samples = []struct {
	file, sheet string
	rows        [][]string
}{
	{"people.xlsx", "通讯录", [][]string{
		{"编号", "姓名", "手机号", "企业微信账号", "微信openid", "角色", "区划代码"},
		{"wh-leader", "李明", "13800000001", "liming", "", "县级领导", "530102000000"},
		{"wh-duty", "王芳", "13900000002", "wangfang", "", "县级值班人员", "530102000000"},
		{"hs-leader", "张伟", "15000000003", "zhangwei", "", "乡镇分管领导", "530102001000"},
		{"hs-duty", "刘洋", "15100000004", "liuyang", "", "乡镇值班人员", "530102001000"},
		{"hs-duty2", "赵敏", "15100000014", "zhaomin", "", "乡镇值班人员", "530102001000"},
		{"cx-officer", "陈静", "18600000005", "chenjing", "", "村（社区）干部", "530102001001"},
		{"cx-info", "杨勇", "18600000006", "", "", "信息员", "530102001001"},
		{"cx-grid1", "黄磊", "19100000007", "", "", "网格员", "530102001001"},
		{"cx-grid2", "周敏", "19100000008", "", "", "网格员", "530102001001"},
		{"cx-r1", "吴秀英", "13300000009", "", "oAbC1234567890abcdefghijklmn", "居民", "530102001001"},
	}},
	{"devices.xlsx", "设备台账", [][]string{
		{"编号", "名称", "类型", "区划代码", "平台编号"},
		{"ls-cx", "翠湖西路社区广播", "应急广播", "530102001001", "IP-0001"},
		{"sc-cx", "翠湖西路社区显示屏", "户外显示屏", "530102001001", "LED-77"},
	}},
	{"households.xlsx", "重点人员名单", [][]string{
		{"编号", "户主", "地址", "联系电话", "类别", "区划代码", "网格员编号"},
		{"h1", "钱桂英", "翠湖西路12号3单元", "", "独居老人", "530102001001", "cx-grid1"},
		{"h2", "孔德明", "翠湖西路15号", "13500000011", "危险区域住户", "530102001001", "cx-grid2"},
		{"h3", "何平", "翠湖西路16号", "", "无手机人员", "530102001001", "cx-grid1"},
	}},
	{"duty.xlsx", duty.SheetName, dutyRows()},
}

// dutyRows is 华山街道's 值班表 for the first days of December 2026: a day
// and a night shift, one row per shift and duty officer.
func dutyRows() [][]string {
	rows := [][]string{{"区划代码", "开始时间", "结束时间", "带班领导编号", "带班领导", "值班员编号", "值班员"}}
	for d := 1; d <= 3; d++ {
		day := fmt.Sprintf("2026-12-%02d", d)
		next := fmt.Sprintf("2026-12-%02d", d+1)
		rows = append(rows,
			[]string{"530102001000", day + " 08:00", day + " 20:00", "hs-leader", "张伟", "hs-duty", "刘洋"},
			[]string{"530102001000", day + " 20:00", next + " 08:00", "hs-leader", "张伟", "hs-duty2", "赵敏"},
			[]string{"530102001000", day + " 20:00", next + " 08:00", "hs-leader", "张伟", "cx-officer", "陈静"})
	}
	return rows
}

// The shipped samples import without a problem, in order, and say who is on
// duty; go test -run TestSamples -update-samples writes them.
func TestSamples(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "samples")
	if *updateSamples {
		for _, s := range samples {
			f := excelize.NewFile()
			f.SetSheetName("Sheet1", s.sheet)
			text, _ := f.NewStyle(&excelize.Style{NumFmt: 49})
			for i, r := range s.rows {
				for j, v := range r {
					cell, _ := excelize.CoordinatesToCellName(j+1, i+1)
					f.SetCellStr(s.sheet, cell, v)
					f.SetCellStyle(s.sheet, cell, cell, text)
				}
			}
			f.SetColWidth(s.sheet, "A", "G", 16)
			if err := f.SaveAs(filepath.Join(dir, s.file)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBCommand)
	prefix := "samples"
	if keys, _ := rdb.Keys(ctx, prefix+":*").Result(); len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
	tree := region.Kunming()
	store := roster.New(rdb, roster.Options{Prefix: prefix, Tree: tree})
	duties := duty.New(rdb, duty.Options{Prefix: prefix, Tree: tree, Roster: func(ctx context.Context) (region.Roster, error) {
		r, _, err := store.Current(ctx)
		return r, err
	}})
	for _, s := range samples {
		b, err := os.ReadFile(filepath.Join(dir, s.file))
		if err != nil {
			t.Fatal(err)
		}
		if s.file == "duty.xlsx" {
			res, err := duties.Import(ctx, bytes.NewReader(b), sheet.XLSX, duty.ImportOptions{})
			if err != nil || res.ErrorsTotal > 0 || res.Shifts != 6 {
				t.Fatalf("%s: %v %+v", s.file, err, res)
			}
			continue
		}
		k, _ := roster.ParseKind(strings.TrimSuffix(s.file, ".xlsx"))
		res, err := store.Import(ctx, bytes.NewReader(b), sheet.XLSX, roster.Change{Kind: k})
		if err != nil || res.ErrorsTotal > 0 || res.Added != len(s.rows)-1 {
			t.Fatalf("%s: %v %+v", s.file, err, res)
		}
	}
	_, officers, _, ok, err := duties.OnDuty(ctx, "530102001000", mustBeijing(t, "2026-12-02 23:00"))
	if err != nil || !ok || len(officers) != 2 || officers[0].Phone != "15100000014" {
		t.Errorf("on duty in the sample: %+v %v %v", officers, ok, err)
	}
}

func mustBeijing(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := duty.ParseTime(s, false)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
