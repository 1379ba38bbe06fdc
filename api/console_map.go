package api

import (
	"strings"

	"warngate/region"
)

// countyMap is the city's counties as the console draws them: the shipped
// county boundaries as SVG paths, from region.CountyMap, with their names.
// One template (web/console/map.html) draws it on the watch page, coloured
// by delivery or by 叫应, and on the issue page, coloured by the areas
// chosen; the page's script colours it and its <title>s from the API.
type countyMap struct {
	Width, Height float64
	Counties      []mapCounty
}

// mapCounty is one county of the map.
type mapCounty struct {
	Code, Name string
	Short      string // the label on the map: 禄劝县 for 禄劝彝族苗族自治县
	Path       string
	X, Y       float64 // where the label goes
}

// countyMap builds the map once; nil when the boundaries cannot be drawn,
// and the pages go without it.
func (c *console) countyMap() *countyMap {
	c.mapOnce.Do(func() {
		m, err := region.CountyMap()
		if err != nil {
			c.Log.Error("county map", "err", err)
			return
		}
		cm := &countyMap{Width: m.Width, Height: m.Height}
		for _, s := range m.Counties {
			name := s.Code
			if d, ok := c.Tree.Get(s.Code); ok {
				name = d.Name
			}
			cm.Counties = append(cm.Counties, mapCounty{Code: s.Code, Name: name, Short: shortName(name), Path: s.Path, X: s.LabelX, Y: s.LabelY})
		}
		c.cmap = cm
	})
	return c.cmap
}

// shortName is a county's name as a map labels it: an autonomous county by
// its place name (石林彝族自治县 → 石林县), others as they are.
func shortName(name string) string {
	if i := strings.Index(name, "族"); i > 0 && strings.HasSuffix(name, "自治县") {
		r := []rune(name)
		if len(r) > 2 {
			return string(r[:2]) + "县"
		}
	}
	return name
}
