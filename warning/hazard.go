package warning

import (
	"fmt"
	"sort"
	"strings"
)

// Hazard names what the warning is about, in the API's English form
// ("rainstorm"). Unknown hazards are refused; "other" is the open case.
type Hazard string

// The 14 national meteorological signals, then the hazards the bureau adds.
const (
	Typhoon     Hazard = "typhoon"
	Rainstorm   Hazard = "rainstorm"
	Snowstorm   Hazard = "snowstorm"
	ColdWave    Hazard = "cold_wave"
	Gale        Hazard = "gale"
	Sandstorm   Hazard = "sandstorm"
	Heat        Hazard = "heat"
	Drought     Hazard = "drought"
	Lightning   Hazard = "lightning"
	Hail        Hazard = "hail"
	Frost       Hazard = "frost"
	Fog         Hazard = "fog"
	Haze        Hazard = "haze"
	RoadIcing   Hazard = "road_icing"
	GeoHazard   Hazard = "geological_hazard"
	ForestFire  Hazard = "forest_fire"
	FlashFlood  Hazard = "flash_flood"
	Flood       Hazard = "flood"
	Earthquake  Hazard = "earthquake"
	OtherHazard Hazard = "other"
)

var hazardChinese = map[Hazard]string{
	Typhoon: "台风", Rainstorm: "暴雨", Snowstorm: "暴雪", ColdWave: "寒潮", Gale: "大风",
	Sandstorm: "沙尘暴", Heat: "高温", Drought: "干旱", Lightning: "雷电", Hail: "冰雹",
	Frost: "霜冻", Fog: "大雾", Haze: "霾", RoadIcing: "道路结冰", GeoHazard: "地质灾害",
	ForestFire: "森林火险", FlashFlood: "山洪", Flood: "洪水", Earthquake: "地震", OtherHazard: "其他",
}

var hazardByChinese = func() map[string]Hazard {
	m := make(map[string]Hazard, len(hazardChinese)+4)
	for h, zh := range hazardChinese {
		m[zh] = h
	}
	m["地质灾害气象风险"] = GeoHazard
	m["森林火险气象"] = ForestFire
	m["森林火灾"] = ForestFire
	m["山洪灾害"] = FlashFlood
	return m
}()

// HazardNames lists the accepted English names, sorted.
func HazardNames() []string {
	out := make([]string, 0, len(hazardChinese))
	for h := range hazardChinese {
		out = append(out, string(h))
	}
	sort.Strings(out)
	return out
}

// ParseHazard accepts the English name (case and "-"/" " insensitive) or the
// Chinese name of a hazard.
func ParseHazard(s string) (Hazard, error) {
	t := strings.TrimSpace(s)
	if h, ok := hazardByChinese[t]; ok {
		return h, nil
	}
	k := Hazard(strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(t)))
	if _, ok := hazardChinese[k]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown hazard %q: use one of %s (or the Chinese name, e.g. 暴雨)", s, strings.Join(HazardNames(), ", "))
}

// Chinese returns the hazard's Chinese name, e.g. 暴雨.
func (h Hazard) Chinese() string { return hazardChinese[h] }

// UnmarshalText implements encoding.TextUnmarshaler with ParseHazard.
func (h *Hazard) UnmarshalText(b []byte) error {
	v, err := ParseHazard(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}
