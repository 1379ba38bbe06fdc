package region

import (
	"math"
	"regexp"
	"strconv"
	"testing"
)

// The county map has every county, inside the picture, each label inside
// its county, and costs a few kilobytes.
func TestCountyMap(t *testing.T) {
	m, err := CountyMap()
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := countyShapes()
	if len(m.Counties) != len(cs) || len(cs) != 14 {
		t.Fatalf("%d shapes for %d counties, want 14", len(m.Counties), len(cs))
	}
	if m.Width != 600 || m.Height < 400 || m.Height > 1200 {
		t.Errorf("picture %v × %v", m.Width, m.Height)
	}
	num := regexp.MustCompile(`[ML]([0-9.]+) ([0-9.]+)`)
	size := 0
	for i, s := range m.Counties {
		size += len(s.Path)
		pts := num.FindAllStringSubmatch(s.Path, -1)
		if len(pts) < 20 {
			t.Errorf("%s: %d points", s.Code, len(pts))
		}
		for _, p := range pts {
			x, _ := strconv.ParseFloat(p[1], 64)
			y, _ := strconv.ParseFloat(p[2], 64)
			if x < 0 || x > m.Width || y < 0 || y > m.Height {
				t.Errorf("%s: point %v,%v outside the picture", s.Code, x, y)
				break
			}
		}
		if cs[i].code != s.Code {
			t.Fatalf("order: %s vs %s", cs[i].code, s.Code)
		}
		// The label lies inside the county as drawn, in its largest ring:
		// a label in a small outlying piece is lost among the neighbours.
		var poly polygon
		largest, area := -1, 0.0
		for i, r := range regexp.MustCompile(`M[^Z]*Z`).FindAllString(s.Path, -1) {
			var in [][2]float64
			for _, p := range num.FindAllStringSubmatch(r, -1) {
				x, _ := strconv.ParseFloat(p[1], 64)
				y, _ := strconv.ParseFloat(p[2], 64)
				in = append(in, [2]float64{x, y})
			}
			poly = append(poly, newRing(in, false))
			if a := math.Abs(ringArea(poly[i])); a > area {
				largest, area = i, a
			}
		}
		inside := false
		for _, r := range poly {
			inside = inside != r.contains(pt{s.LabelX, s.LabelY})
		}
		if !inside || !poly[largest].contains(pt{s.LabelX, s.LabelY}) {
			t.Errorf("%s: label at %v,%v lies outside the county's largest part", s.Code, s.LabelX, s.LabelY)
		}
	}
	// No two labels take the same room: 五华区's and 西山区's best points
	// are a label's height apart.
	for i, a := range m.Counties {
		for _, b := range m.Counties[i+1:] {
			if labelRoom(pt{a.LabelX, a.LabelY}).overlaps(labelRoom(pt{b.LabelX, b.LabelY})) {
				t.Errorf("the labels of %s (%v,%v) and %s (%v,%v) overlap", a.Code, a.LabelX, a.LabelY, b.Code, b.LabelX, b.LabelY)
			}
		}
	}
	if size > 60_000 {
		t.Errorf("the map's paths take %d bytes; keep the page light", size)
	}
}
