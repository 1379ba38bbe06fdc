package cap

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"regexp"
	"slices"
	"strings"
	"sync"

	"warngate/warning"
)

// Hazards are named in CAP by an event text (暴雨蓝色预警信号, "high
// temperature") and sometimes by event codes. The tables below map them; what
// is not found is warning.OtherHazard.

// zhHazards maps Chinese event names to hazards. Beyond the names package
// warning knows, it holds the names of China's warning products (CMA signals
// and the QWeather event list in data/) that belong to one of warngate's
// hazards. Names are also matched inside longer text, the longest first.
var zhHazards = map[string]warning.Hazard{
	"台风": warning.Typhoon, "热带气旋": warning.Typhoon, "颱風": warning.Typhoon,
	"暴雨": warning.Rainstorm, "强降雨": warning.Rainstorm, "强降水": warning.Rainstorm,
	"暴雪": warning.Snowstorm, "大雪": warning.Snowstorm, "雪灾": warning.Snowstorm,
	"寒潮": warning.ColdWave, "强降温": warning.ColdWave,
	"大风": warning.Gale, "雷雨大风": warning.Gale, "雷暴大风": warning.Gale, "雷雨强风": warning.Gale,
	"沙尘暴": warning.Sandstorm, "沙尘": warning.Sandstorm,
	"高温": warning.Heat, "热浪": warning.Heat,
	"干旱": warning.Drought,
	"雷电": warning.Lightning, "雷暴": warning.Lightning,
	"冰雹": warning.Hail,
	"霜冻": warning.Frost,
	"大雾": warning.Fog, "浓雾": warning.Fog,
	"霾":    warning.Haze,
	"道路结冰": warning.RoadIcing, "道路冰雪": warning.RoadIcing,
	"地质灾害": warning.GeoHazard, "滑坡": warning.GeoHazard, "泥石流": warning.GeoHazard,
	"崩塌": warning.GeoHazard, "地面塌陷": warning.GeoHazard, "地裂缝": warning.GeoHazard,
	"森林火险": warning.ForestFire, "森林火灾": warning.ForestFire, "草原火险": warning.ForestFire,
	"森林（草原）火险": warning.ForestFire, "森林（草原）火灾": warning.ForestFire,
	"山洪": warning.FlashFlood, "中小河流洪水和山洪": warning.FlashFlood,
	"洪水": warning.Flood, "洪涝": warning.Flood, "内涝": warning.Flood,
	"地震": warning.Earthquake,
}

// enHazards maps English event names, lower case and stripped of "warning",
// colours and levels, to hazards: CMA's English names and common synonyms.
var enHazards = map[string]warning.Hazard{
	"typhoon": warning.Typhoon, "tropical cyclone": warning.Typhoon,
	"rainstorm": warning.Rainstorm, "heavy rain": warning.Rainstorm, "heavy rainfall": warning.Rainstorm, "torrential rain": warning.Rainstorm,
	"snowstorm": warning.Snowstorm, "snow storm": warning.Snowstorm, "blizzard": warning.Snowstorm, "heavy snow": warning.Snowstorm,
	"cold wave": warning.ColdWave,
	"gale":      warning.Gale, "strong wind": warning.Gale, "high wind": warning.Gale, "thunder gust": warning.Gale,
	"sandstorm": warning.Sandstorm, "sand storm": warning.Sandstorm, "dust storm": warning.Sandstorm,
	"heat": warning.Heat, "high temperature": warning.Heat, "heat wave": warning.Heat, "extreme heat": warning.Heat,
	"drought":   warning.Drought,
	"lightning": warning.Lightning, "thunder": warning.Lightning, "thunderstorm": warning.Lightning,
	"hail":  warning.Hail,
	"frost": warning.Frost,
	"fog":   warning.Fog, "heavy fog": warning.Fog, "dense fog": warning.Fog,
	"haze":       warning.Haze,
	"road icing": warning.RoadIcing, "road ice": warning.RoadIcing,
	"geological hazard": warning.GeoHazard, "landslide": warning.GeoHazard, "debris flow": warning.GeoHazard,
	"forest fire": warning.ForestFire, "wildfire": warning.ForestFire, "forest fire danger": warning.ForestFire,
	"flash flood": warning.FlashFlood,
	"flood":       warning.Flood, "flooding": warning.Flood,
	"earthquake": warning.Earthquake,
}

// hazardEnglish is the English event name Encode writes for en-* infos.
var hazardEnglish = map[warning.Hazard]string{
	warning.Typhoon: "Typhoon", warning.Rainstorm: "Rainstorm", warning.Snowstorm: "Snowstorm",
	warning.ColdWave: "Cold wave", warning.Gale: "Gale", warning.Sandstorm: "Sandstorm",
	warning.Heat: "High temperature", warning.Drought: "Drought", warning.Lightning: "Lightning",
	warning.Hail: "Hail", warning.Frost: "Frost", warning.Fog: "Heavy fog", warning.Haze: "Haze",
	warning.RoadIcing: "Road icing", warning.GeoHazard: "Geological hazard", warning.ForestFire: "Forest fire",
	warning.FlashFlood: "Flash flood", warning.Flood: "Flood", warning.Earthquake: "Earthquake",
	warning.OtherHazard: "Emergency",
}

// cma11B maps the type part of the event codes of China's national warning
// release system (11B03 暴雨, also written 11B03_yellow or 11B0302 with the
// colour) to hazards. They are not in the shared data; the table follows two
// public code bases that agree on it (a Shanxi meteorological data sync
// script's AlarmTypeCodeToAlarmType and a CMA warning-icon mapper), and
// GB/T 35561's natural-disaster class 11 with 11B for meteorological events.
var cma11B = map[string]warning.Hazard{
	"01": warning.Typhoon, "03": warning.Rainstorm, "04": warning.Snowstorm, "05": warning.ColdWave,
	"06": warning.Gale, "07": warning.Sandstorm, "09": warning.Heat, "14": warning.Lightning,
	"15": warning.Hail, "16": warning.Frost, "17": warning.Fog, "19": warning.Haze,
	"20": warning.Gale, // 雷雨大风
	"21": warning.RoadIcing, "22": warning.Drought, "25": warning.ForestFire,
}

var cma11BRE = regexp.MustCompile(`^11B([0-9]{2})(?:[0-9]{2}|_[a-z]+)?$`)

// qweatherCSV is QWeather's list of warning event codes (type, Chinese name,
// English name), from the public repository qwd/dev-site; see
// /work/shared/data/texts/README.md.
//
//go:embed data/qweather-alert-events.csv
var qweatherCSV []byte

// qweatherHazards maps QWeather's mainland-China event codes (10xx
// meteorological, 12xx hydrological and geological) to hazards through their
// Chinese names. Codes whose name is none of warngate's hazards are left out.
var qweatherHazards = sync.OnceValue(func() map[string]warning.Hazard {
	rows, err := csv.NewReader(bytes.NewReader(qweatherCSV)).ReadAll()
	if err != nil {
		panic("cap: embedded qweather-alert-events.csv: " + err.Error())
	}
	m := map[string]warning.Hazard{}
	for _, r := range rows[1:] {
		if len(r) < 2 || len(r[0]) != 4 || (r[0][:2] != "10" && r[0][:2] != "12") {
			continue
		}
		if h := hazardInChinese(r[1]); h != warning.OtherHazard {
			m[r[0]] = h
		}
	}
	return m
})

var (
	bracketRE = regexp.MustCompile(`\[[^\]]*\]|【[^】]*】`)
	levelRE   = regexp.MustCompile(`(?:Ⅰ|Ⅱ|Ⅲ|Ⅳ|IV|III|II|I|一|二|三|四)\s*(?:级|級)|特别严重|较重|严重|一般`)
	colourRE  = regexp.MustCompile(`红色|橙色|黄色|蓝色|紅色|黃色|藍色`)
	zhSuffix  = []string{"预警信号", "預警信號", "预警", "預警", "信号", "警报", "警報"}
	enWordRE  = regexp.MustCompile(`[a-z]+`)
	enDrop    = map[string]bool{"warning": true, "warnings": true, "signal": true, "alert": true, "red": true,
		"orange": true, "yellow": true, "blue": true, "level": true, "i": true, "ii": true, "iii": true, "iv": true}
)

// hazardExact maps a whole event name, Chinese or English, to a hazard; ok
// is false when the name is not known.
func hazardExact(event string) (warning.Hazard, bool) {
	s := strings.TrimSpace(bracketRE.ReplaceAllString(event, ""))
	if s == "" {
		return "", false
	}
	if h, err := warning.ParseHazard(s); err == nil {
		return h, true
	}
	zh := colourRE.ReplaceAllString(levelRE.ReplaceAllString(s, ""), "")
	for _, suf := range zhSuffix {
		zh = strings.TrimSuffix(zh, suf)
	}
	zh = strings.TrimSpace(zh)
	if h, ok := zhHazards[zh]; ok {
		return h, true
	}
	if h, err := warning.ParseHazard(zh); err == nil {
		return h, true
	}
	words := enWordRE.FindAllString(strings.ToLower(s), -1)
	kept := words[:0]
	for _, w := range words {
		if !enDrop[w] {
			kept = append(kept, w)
		}
	}
	if h, ok := enHazards[strings.Join(kept, " ")]; ok {
		return h, true
	}
	return "", false
}

// zhNamesByLength lists the names of zhHazards, longest first.
var zhNamesByLength = sync.OnceValue(func() []string {
	names := make([]string, 0, len(zhHazards))
	for n := range zhHazards {
		names = append(names, n)
	}
	// Longest first; among equals, a fixed order so results do not vary.
	slices.SortFunc(names, func(a, b string) int {
		if la, lb := len([]rune(a)), len([]rune(b)); la != lb {
			return lb - la
		}
		return strings.Compare(a, b)
	})
	return names
})

// hazardInChinese finds the hazard named inside a Chinese text (a headline,
// an event): the longest name found, the earliest among equally long ones.
func hazardInChinese(text string) warning.Hazard {
	if h, ok := hazardExact(text); ok {
		return h
	}
	best, at, size := warning.OtherHazard, -1, 0
	for _, n := range zhNamesByLength() {
		l := len([]rune(n))
		if l < size {
			break
		}
		if i := strings.Index(text, n); i >= 0 && (at < 0 || i < at) {
			best, at, size = zhHazards[n], i, l
		}
	}
	return best
}

// hazardOf finds the hazard of an alert, primary being its chosen info:
// warngate's own event code first, then CMA's 11B codes, the event names,
// QWeather codes, and last a hazard named inside the event or headline.
func (a *Alert) hazardOf(primary int) warning.Hazard {
	in := &a.Infos[primary]
	infos := append([]*Info{in}, otherInfos(a, primary)...)
	for _, x := range infos {
		for _, c := range x.EventCodes {
			if strings.EqualFold(c.Name, HazardCodeName) {
				if h, err := warning.ParseHazard(c.Value); err == nil {
					return h
				}
			}
		}
	}
	for _, x := range infos {
		for _, c := range x.EventCodes {
			if m := cma11BRE.FindStringSubmatch(strings.TrimSpace(c.Value)); m != nil {
				if h, ok := cma11B[m[1]]; ok {
					return h
				}
			}
		}
	}
	for _, x := range infos {
		if h, ok := hazardExact(x.Event); ok {
			return h
		}
	}
	for _, x := range infos {
		for _, c := range x.EventCodes {
			if h, ok := qweatherHazards()[strings.TrimSpace(c.Value)]; ok {
				return h
			}
		}
	}
	for _, x := range infos {
		for _, s := range []string{x.Event, x.Headline} {
			if h := hazardInChinese(s); h != warning.OtherHazard {
				return h
			}
		}
	}
	return warning.OtherHazard
}

func otherInfos(a *Alert, primary int) []*Info {
	var out []*Info
	for i := range a.Infos {
		if i != primary {
			out = append(out, &a.Infos[i])
		}
	}
	return out
}
