package policy_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

func TestDefaultChecklistsParse(t *testing.T) {
	c := policy.DefaultChecklists()
	if len(c.Common) == 0 {
		t.Fatal("no common items")
	}
	again, err := policy.ParseChecklists(bytes.NewReader(policy.DefaultChecklistsYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Common) != len(c.Common) || len(again.Hazards) != len(c.Hazards) {
		t.Error("DefaultChecklistsYAML does not give DefaultChecklists")
	}
}

// Every hazard gets its own items at every level, for townships and villages
// alike: a warning never arrives with only the common items.
func TestChecklistsCoverEveryHazard(t *testing.T) {
	c := policy.DefaultChecklists()
	for _, name := range warning.HazardNames() {
		h := warning.Hazard(name)
		if h == warning.OtherHazard {
			if len(c.Hazards[h]) != 0 {
				t.Errorf("other has items of its own; it should get the common items only")
			}
			continue
		}
		if len(c.Hazards[h]) == 0 {
			t.Errorf("%s has no items", h)
			continue
		}
		for _, it := range c.Hazards[h] {
			if it.Source == "" {
				t.Errorf("%s item %s has no source", h, it.ID)
			}
		}
		for _, l := range warning.Levels {
			for _, scope := range []region.Level{region.Township, region.Village} {
				if !hasOwn(c, h, l, scope) {
					t.Errorf("%s %s: no items of its own for a %s", h, l, scope)
				}
			}
		}
	}
}

func hasOwn(c *policy.Checklists, h warning.Hazard, l warning.Level, scope region.Level) bool {
	for _, it := range c.Hazards[h] {
		if slices.Contains(it.Levels, l) && slices.Contains(it.Scope, scope) {
			return true
		}
	}
	return false
}

// A more severe warning never leaves more time for the same item.
func TestChecklistDueTightensWithLevel(t *testing.T) {
	c := policy.DefaultChecklists()
	all := slices.Clone(c.Common)
	for _, items := range c.Hazards {
		all = append(all, items...)
	}
	for _, it := range all {
		for _, l := range it.Levels {
			if _, ok := it.Due[l]; !ok {
				t.Errorf("%s: no due time for %s", it.ID, l)
			}
		}
		red, okRed := it.Due[warning.Red]
		blue, okBlue := it.Due[warning.Blue]
		if okRed && okBlue && red > blue {
			t.Errorf("%s: red due %v, later than blue %v", it.ID, time.Duration(red), time.Duration(blue))
		}
		for i := 1; i < len(warning.Levels); i++ {
			more, less := warning.Levels[i-1], warning.Levels[i]
			dm, ok1 := it.Due[more]
			dl, ok2 := it.Due[less]
			if ok1 && ok2 && dm > dl {
				t.Errorf("%s: %s due %v, later than %s %v", it.ID, more, time.Duration(dm), less, time.Duration(dl))
			}
		}
	}
}

func TestChecklistForRainstormRedTownship(t *testing.T) {
	items := policy.DefaultChecklists().For(warning.Rainstorm, warning.Red, region.Township)
	var titles []string
	for _, it := range items[:min(4, len(items))] {
		titles = append(titles, it.Title)
	}
	if want := []string{"监测巡查", "值班备勤", "力量集结", "物资储备"}; !slices.Equal(titles, want) {
		t.Fatalf("first items %v, want the four duties %v", titles, want)
	}
	byID := map[string]policy.Item{}
	for _, it := range items {
		byID[it.ID] = it
		if it.Owner != region.TownshipDuty && it.Owner != region.TownshipLeader {
			t.Errorf("%s: owner %s is not a township official", it.ID, it.Owner)
		}
	}
	if d := byID["duty"].Due; d != 0 {
		t.Errorf("duty due %v, want at once", d)
	}
	if d := byID["patrol"].Due; d != 30*time.Minute {
		t.Errorf("patrol due %v, want 30m", d)
	}
	for _, id := range []string{"rain_drain", "rain_stop_all", "rain_geohazard", "rain_rescue", "evacuate_organise"} {
		if _, ok := byID[id]; !ok {
			t.Errorf("no %s in the red rainstorm township checklist", id)
		}
	}
	if it := byID["rain_stop_all"]; !strings.Contains(it.Source, "国家防御指南") {
		t.Errorf("rain_stop_all source %q, want the national guideline", it.Source)
	}
	for _, id := range []string{"rain_drain_prep", "rain_schools", "forces_ready", "relay_households", "door_to_door"} {
		if _, ok := byID[id]; ok {
			t.Errorf("%s is in the red rainstorm township checklist; it is for another level or scope", id)
		}
	}
	// Common items first, then the hazard's.
	last := slices.IndexFunc(items, func(it policy.Item) bool { return strings.HasPrefix(it.ID, "rain_") })
	if slices.ContainsFunc(items[last:], func(it policy.Item) bool { return !strings.HasPrefix(it.ID, "rain_") }) {
		t.Error("common items come after rainstorm items")
	}
}

func TestChecklistForVillage(t *testing.T) {
	c := policy.DefaultChecklists()
	items := c.For(warning.Rainstorm, warning.Red, region.Village)
	i := slices.IndexFunc(items, func(it policy.Item) bool { return it.ID == "door_to_door" })
	if i < 0 {
		t.Fatalf("no door-to-door item in %v", ids(items))
	}
	if it := items[i]; it.Owner != region.GridWorker || it.Due != 30*time.Minute || !strings.Contains(it.Detail, "上门") {
		t.Errorf("door_to_door = %+v", it)
	}
	for _, it := range items {
		if it.Owner.Audience() != warning.VillageOfficials {
			t.Errorf("%s: owner %s is not a village official", it.ID, it.Owner)
		}
	}
	blue := ids(c.For(warning.Rainstorm, warning.Blue, region.Village))
	if !slices.Contains(blue, "relay_households") || slices.Contains(blue, "door_to_door") || slices.Contains(blue, "evacuate") {
		t.Errorf("blue rainstorm village items %v: want relay_households, and no door_to_door or evacuate", blue)
	}
}

func TestChecklistForOtherHazards(t *testing.T) {
	c := policy.DefaultChecklists()
	common := func(h warning.Hazard) []string {
		var out []string
		for _, it := range c.Common {
			if slices.Contains(it.Levels, warning.Red) && slices.Contains(it.Scope, region.Village) &&
				(len(it.OnlyFor) == 0 || slices.Contains(it.OnlyFor, h)) {
				out = append(out, it.ID)
			}
		}
		return out
	}
	if got, want := ids(c.For("tsunami", warning.Red, region.Village)), common("tsunami"); !slices.Equal(got, want) {
		t.Errorf("unknown hazard: %v, want the common items %v", got, want)
	}
	if got := ids(c.For(warning.OtherHazard, warning.Red, region.Village)); !slices.Contains(got, "evacuate") {
		t.Errorf("other: %v, want evacuate among them", got)
	}
	if got := ids(c.For(warning.Frost, warning.Orange, region.Village)); slices.Contains(got, "evacuate") {
		t.Errorf("frost: %v; nobody is moved out for a frost", got)
	}
	if got := c.For(warning.Rainstorm, warning.Red, region.County); len(got) != 0 {
		t.Errorf("county: %v, want none", ids(got))
	}
}

func ids(items []policy.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

const goodItem = `
  - id: a
    title: 甲
    detail: 做甲。
    scope: [township]
    owner: township_duty
    due: 1h
`

func TestParseChecklistsErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", "", "checklists: no items: add common items or hazards"},
		{"unknown key", "common:\n  - id: a\n    titel: 甲\n",
			"decode: yaml: unmarshal errors:\n  line 3: field titel not found in type policy.checklistItemYAML"},
		{"unknown top-level key", "common: []\nhazard: {}\n",
			"decode: yaml: unmarshal errors:\n  line 2: field hazard not found in type policy.checklistsFile"},
		{"missing title and detail", "common:\n  - id: a\n    scope: [village]\n    owner: grid_worker\n    due: 0\n",
			"checklists common item 1 (a): title is required\n" +
				"checklists common item 1 (a): detail is required: one or two sentences of what to do"},
		{"missing id", "common:\n  - title: 甲\n    detail: 做甲。\n    scope: [village]\n    owner: grid_worker\n    due: 0\n",
			"checklists common item 1: id is required"},
		{"bad id", "common:\n  - id: Patrol 1\n    title: 甲\n    detail: 做甲。\n    scope: [village]\n    owner: grid_worker\n    due: 0\n",
			"checklists common item 1 (Patrol 1): id must be a short lower-case ascii slug such as rain_drain"},
		{"duplicate id", "common:" + goodItem + "hazards:\n  rainstorm:" + strings.ReplaceAll(goodItem, "\n  ", "\n    ") + "      source: s\nsources: {s: 某来源}\n",
			`checklists rainstorm item 1 (a): id "a" is already used by checklists common item 1 (a)`},
		{"unknown hazard", "sources: {s: 某来源}\nhazards:\n  tornado:" + strings.ReplaceAll(goodItem, "\n  ", "\n    ") + "      source: s\n",
			`checklists hazards: unknown hazard "tornado": use one of ` + strings.Join(warning.HazardNames(), ", ") + " (or the Chinese name, e.g. 暴雨)"},
		{"same hazard twice", "sources: {s: 某来源}\nhazards:\n  rainstorm: []\n  暴雨:" + strings.ReplaceAll(goodItem, "\n  ", "\n    ") + "      source: s\n",
			"checklists hazards: rainstorm and 暴雨 are the same hazard: merge their items"},
		{"unknown level", "common:" + goodItem + "    levels: [red, purple]\n",
			`checklists common item 1 (a): levels: unknown level "purple": use blue, yellow, orange or red (or Ⅳ, Ⅲ, Ⅱ, Ⅰ)`},
		{"level twice", "common:" + goodItem + "    levels: [red, 红色]\n",
			"checklists common item 1 (a): level red is listed twice"},
		{"unknown role", strings.Replace("common:"+goodItem, "township_duty", "mayor", 1),
			`checklists common item 1 (a): owner: unknown role "mayor": use one of county_leader, county_duty, township_leader, township_duty, village_officer, info_officer, grid_worker, resident`},
		{"role at the wrong level", strings.Replace("common:"+goodItem, "township_duty", "grid_worker", 1),
			"checklists common item 1 (a): owner grid_worker does not work at a township: use township_duty or township_leader"},
		{"one owner for two scopes", strings.Replace("common:"+goodItem, "[township]", "[township, village]", 1),
			"checklists common item 1 (a): owner township_duty does not work at a village: give one owner per scope, e.g. owner: {township: township_duty, village: village_officer}"},
		{"owner map short", strings.Replace(strings.Replace("common:"+goodItem, "[township]", "[township, village]", 1), "township_duty", "{township: township_duty, county: county_duty}", 1),
			"checklists common item 1 (a): owner names a role for county, which is not in scope\n" +
				"checklists common item 1 (a): owner names no role for village"},
		{"missing owner", strings.Replace("common:"+goodItem, "    owner: township_duty\n", "", 1),
			"checklists common item 1 (a): owner is required: the role that does the item, e.g. township_duty"},
		{"unknown scope", strings.Replace("common:"+goodItem, "[township]", "[county]", 1),
			`checklists common item 1 (a): scope "county": use township or village`},
		{"missing scope", strings.Replace("common:"+goodItem, "    scope: [township]\n", "", 1),
			"checklists common item 1 (a): scope is required: [township], [village] or [township, village]"},
		{"negative due", strings.Replace("common:"+goodItem, "1h", "-5m", 1),
			"checklists common item 1 (a): due -5m is negative: use 0 for at once"},
		{"bad due", strings.Replace("common:"+goodItem, "1h", "soon", 1),
			`checklists common item 1 (a): due "soon" is not a duration such as 30m or 2h (0 for at once)`},
		{"missing due", strings.Replace("common:"+goodItem, "    due: 1h\n", "", 1),
			"checklists common item 1 (a): due is required: a duration such as 1h (0 for at once), or one per level such as {red: 30m, blue: 4h}"},
		{"due map misses a level", strings.Replace("common:"+goodItem, "1h", "{red: 30m, orange: 1h}", 1) + "    levels: [red, orange, yellow]\n",
			"checklists common item 1 (a): due gives no time for yellow"},
		{"due map outside levels", strings.Replace("common:"+goodItem, "1h", "{red: 30m, blue: 1h}", 1) + "    levels: [red]\n",
			"checklists common item 1 (a): due gives blue, which is not in levels"},
		{"red later than blue", strings.Replace("common:"+goodItem, "1h", "{red: 2h, orange: 1h, yellow: 1h, blue: 1h30m}", 1),
			"checklists common item 1 (a): due red 2h is later than orange 1h: a more severe level must not allow more time"},
		{"hazard item without source", "hazards:\n  gale:" + strings.ReplaceAll(goodItem, "\n  ", "\n    "),
			"checklists gale item 1 (a): source is required: name one of the keys under sources"},
		{"unknown source", "sources: {national: 国家防御指南, beijing: 北京}\nhazards:\n  gale:" + strings.ReplaceAll(goodItem, "\n  ", "\n    ") + "      source: yunnan\n",
			`checklists gale item 1 (a): unknown source "yunnan": use one of beijing, national`},
		{"empty source text", "sources: {s: ''}\ncommon:" + goodItem,
			"checklists sources.s: text is required: say where items citing s come from"},
		{"only_for on a hazard item", "sources: {s: 某来源}\nhazards:\n  gale:" + strings.ReplaceAll(goodItem, "\n  ", "\n    ") + "      source: s\n      only_for: [gale]\n",
			"checklists gale item 1 (a): only_for is for common items: a hazard's items apply to that hazard only"},
		{"unknown only_for", "common:" + goodItem + "    only_for: [tornado]\n",
			`checklists common item 1 (a): only_for: unknown hazard "tornado": use one of ` + strings.Join(warning.HazardNames(), ", ") + " (or the Chinese name, e.g. 暴雨)"},
		{"every problem at once", "common:\n  - id: a\n    scope: [county]\n    owner: mayor\n    due: -1m\n  - id: a\n    title: 乙\n    detail: 做乙。\n    scope: [village]\n    owner: grid_worker\n    due: 0\n",
			"checklists common item 1 (a): title is required\n" +
				"checklists common item 1 (a): detail is required: one or two sentences of what to do\n" +
				`checklists common item 1 (a): scope "county": use township or village` + "\n" +
				`checklists common item 1 (a): owner: unknown role "mayor": use one of county_leader, county_duty, township_leader, township_duty, village_officer, info_officer, grid_worker, resident` + "\n" +
				"checklists common item 1 (a): due -1m is negative: use 0 for at once\n" +
				`checklists common item 2 (a): id "a" is already used by checklists common item 1 (a)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.ParseChecklists(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("no error, want:\n%s", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestParseChecklistsShapes(t *testing.T) {
	c, err := policy.ParseChecklists(strings.NewReader(`
sources: {s: 某来源}
common:
  - id: both
    title: 甲
    detail: 做甲。
    scope: [township, village]
    owner: {township: township_leader, village: village_officer}
    levels: [红色, Ⅱ级]
    due: {red: 30m, orange: 1h}
hazards:
  暴雨:
    - id: rain
      title: 乙
      detail: 做乙。
      scope: [village]
      owner: info_officer
      due: 0
      source: s
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Common[0]
	if b.Owner[region.Township] != region.TownshipLeader || b.Owner[region.Village] != region.VillageOfficer {
		t.Errorf("owner %v", b.Owner)
	}
	if !slices.Equal(b.Levels, []warning.Level{warning.Red, warning.Orange}) || time.Duration(b.Due[warning.Orange]) != time.Hour {
		t.Errorf("levels %v due %v", b.Levels, b.Due)
	}
	r := c.Hazards[warning.Rainstorm][0]
	if !slices.Equal(r.Levels, warning.Levels) || len(r.Due) != 4 || r.Due[warning.Blue] != 0 || r.Source != "某来源" {
		t.Errorf("rain item %+v: want every level, due at once, source resolved", r)
	}
	got := c.For(warning.Rainstorm, warning.Orange, region.Village)
	if len(got) != 2 || got[0].ID != "both" || got[0].Owner != region.VillageOfficer || got[0].Due != time.Hour || got[1].ID != "rain" {
		t.Errorf("For = %+v", got)
	}
}

func TestLoadChecklists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checklists.yaml")
	if err := os.WriteFile(path, policy.DefaultChecklistsYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.LoadChecklists(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("common: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := policy.LoadChecklists(path)
	if want := "checklists " + path + ": checklists: no items: add common items or hazards"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	if _, err := policy.LoadChecklists(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want a not-exist error", err)
	}
}
