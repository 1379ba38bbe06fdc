package region

import (
	"cmp"
	"math"
	"slices"
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

// LabelWidth and LabelHeight are the room a county's label takes, in the
// map's units: a three-character name over a figure, at up to 24 units a
// character, the name's baseline at the label point, LabelAbove of the
// room above it. No two counties' rooms overlap.
const (
	LabelWidth  = 76
	LabelHeight = 56
	LabelAbove  = 24
)

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
	cands := make([][]pt, len(cs))
	areas := make([]float64, len(cs))
	for i, c := range cs {
		var b strings.Builder
		var largest polygon
		for _, poly := range c.polys {
			for _, r := range poly {
				writeRing(&b, r, project)
			}
			if a := math.Abs(ringArea(poly[0])); a > areas[i] {
				largest, areas[i] = poly, a
			}
		}
		for _, p := range labelPoints(largest) {
			cands[i] = append(cands[i], project(p))
		}
		m.Counties = append(m.Counties, MapShape{Code: c.code, Path: b.String()})
	}
	placeLabels(m.Counties, cands, areas)
	return m, nil
})

// placeLabels gives each county the best label point whose room overlaps
// no other label's, the smallest counties first: they have the fewest
// places to choose from. A county with no such place keeps its best.
func placeLabels(shapes []MapShape, cands [][]pt, areas []float64) {
	order := make([]int, len(shapes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(areas[a], areas[b]) })
	var placed []box
	for _, i := range order {
		at := cands[i][0]
		for _, p := range cands[i] {
			if !slices.ContainsFunc(placed, labelRoom(p).overlaps) {
				at = p
				break
			}
		}
		placed = append(placed, labelRoom(at))
		shapes[i].LabelX, shapes[i].LabelY = round1(at.x), round1(at.y)
	}
}

// labelRoom is the room of a label at p.
func labelRoom(p pt) box {
	return box{p.x - LabelWidth/2, p.y - LabelAbove, p.x + LabelWidth/2, p.y - LabelAbove + LabelHeight}
}

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

// labelPoints finds points well inside a county's largest polygon: of a
// grid of candidates over it, those inside it farthest from its outline.
// The centroid would do for round counties, but Kunming's are long and
// bent, and a centroid can fall outside them. A candidate must lie in this
// polygon, not just in the county: one in another of its parts (五华区's
// northern pieces lie within the largest one's box) is as far from this
// outline as it is misplaced.
func labelPoints(poly polygon) []pt {
	const steps = 24
	r := poly[0]
	type cand struct {
		p pt
		d float64
	}
	var cs []cand
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
			cs = append(cs, cand{p, d})
		}
	}
	if len(cs) == 0 { // too thin for the grid: its box's middle
		return []pt{{(r.box.minX + r.box.maxX) / 2, (r.box.minY + r.box.maxY) / 2}}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(b.d, a.d) })
	out := make([]pt, len(cs))
	for i, c := range cs {
		out[i] = c.p
	}
	return out
}

// distSeg is the squared distance from p to the segment ab.
func distSeg(p, a, b pt) float64 {
	return distSq(pt{a.x - p.x, a.y - p.y}, pt{b.x - p.x, b.y - p.y})
}
