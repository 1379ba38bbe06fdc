package region

import (
	"math"
	"strconv"
	"strings"
	"sync"
)

// MapShape is one county drawn for a map: an SVG path in the map's
// coordinates and where its label goes.
type MapShape struct {
	Code string
	Path string // SVG path data: absolute moves and lines, each ring closed
	// LabelX, LabelY is a point inside the county where its name fits best.
	LabelX, LabelY float64
}

// Map is the city's counties projected onto a flat picture of Width by
// Height units, north up, for an SVG viewBox.
type Map struct {
	Width, Height float64
	Counties      []MapShape // in code order
}

// mapWidth is the width of the picture; the height follows from the city's shape.
const mapWidth = 600

// CountyMap draws the shipped county boundaries. Longitudes are scaled by
// the cosine of the city's middle latitude (an equirectangular projection
// about Kunming), which keeps shapes true at the scale of one city; points
// closer than half a unit to the previous one are left out, so the whole
// picture costs a few kilobytes.
var CountyMap = sync.OnceValues(func() (*Map, error) {
	cs, err := countyShapes()
	if err != nil {
		return nil, err
	}
	all := box{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}
	for _, c := range cs {
		all = box{min(all.minX, c.box.minX), min(all.minY, c.box.minY), max(all.maxX, c.box.maxX), max(all.maxY, c.box.maxY)}
	}
	kx := math.Cos((all.minY + all.maxY) / 2 * math.Pi / 180)
	scale := mapWidth / ((all.maxX - all.minX) * kx)
	project := func(p pt) pt {
		return pt{x: (p.x - all.minX) * kx * scale, y: (all.maxY - p.y) * scale}
	}
	m := &Map{Width: mapWidth, Height: math.Ceil((all.maxY - all.minY) * scale)}
	for _, c := range cs {
		var b strings.Builder
		var largest polygon
		largestArea := -1.0
		for _, poly := range c.polys {
			for _, r := range poly {
				writeRing(&b, r, project)
			}
			if a := math.Abs(ringArea(poly[0])); a > largestArea {
				largest, largestArea = poly, a
			}
		}
		at := project(labelPoint(largest))
		m.Counties = append(m.Counties, MapShape{Code: c.code, Path: b.String(), LabelX: round1(at.x), LabelY: round1(at.y)})
	}
	return m, nil
})

func writeRing(b *strings.Builder, r ring, project func(pt) pt) {
	var last pt
	n := 0
	for i, p := range r.pts {
		q := project(p)
		if i > 0 && i < len(r.pts)-1 && math.Hypot(q.x-last.x, q.y-last.y) < 0.5 {
			continue
		}
		if n == 0 {
			b.WriteByte('M')
		} else {
			b.WriteByte('L')
		}
		b.WriteString(strconv.FormatFloat(round1(q.x), 'f', -1, 64))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(round1(q.y), 'f', -1, 64))
		last = q
		n++
	}
	b.WriteByte('Z')
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// ringArea is the signed area of a ring, in squared degrees.
func ringArea(r ring) float64 {
	a := 0.0
	for i := 1; i < len(r.pts); i++ {
		a += r.pts[i-1].x*r.pts[i].y - r.pts[i].x*r.pts[i-1].y
	}
	return a / 2
}

// labelPoint finds a point well inside a county's largest polygon: of a
// grid of candidates over it, the one inside it farthest from its outline.
// The centroid would do for round counties, but Kunming's are long and
// bent, and a centroid can fall outside them. A candidate must lie in this
// polygon, not just in the county: one in another of its parts (五华区's
// northern pieces lie within the largest one's box) is as far from this
// outline as it is misplaced.
func labelPoint(poly polygon) pt {
	const steps = 24
	r := poly[0]
	best, bestD := pt{(r.box.minX + r.box.maxX) / 2, (r.box.minY + r.box.maxY) / 2}, -1.0
	for i := 1; i < steps; i++ {
		for j := 1; j < steps; j++ {
			p := pt{r.box.minX + (r.box.maxX-r.box.minX)*float64(i)/steps, r.box.minY + (r.box.maxY-r.box.minY)*float64(j)/steps}
			if !poly.contains(p) {
				continue
			}
			d := math.Inf(1)
			for _, ring := range poly {
				for k := 1; k < len(ring.pts); k++ {
					d = min(d, distSeg(p, ring.pts[k-1], ring.pts[k]))
				}
			}
			if d > bestD {
				best, bestD = p, d
			}
		}
	}
	return best
}

// distSeg is the squared distance from p to the segment ab.
func distSeg(p, a, b pt) float64 {
	return distSq(pt{a.x - p.x, a.y - p.y}, pt{b.x - p.x, b.y - p.y})
}
