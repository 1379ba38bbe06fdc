package region

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
	"sync"
)

// Circle is a circle on the ground as a CAP <circle> gives it ("lat,lon
// radius"): its centre in WGS84 degrees and its radius in kilometres. A zero
// radius is a point.
type Circle struct {
	Lat, Lon float64
	RadiusKm float64
}

// CountiesTouching returns, in code order, the 12-digit codes of the Kunming
// counties whose shipped boundary touches any of the polygons or circles. Each
// ring is a polygon's points as CAP writes them, latitude first ([lat, lon]);
// it may be closed (last point equal to the first) or not. The whole-city
// boundary 530100000000 is never returned: an empty result means the shape lies
// outside Kunming.
//
// Touching means the shapes overlap or their outlines meet. Circles are
// measured on a local flat projection around their centre, which is exact
// enough at the scale of a county (well under 1% at 100 km). Boundaries are
// the simplified ones Boundary returns, so a shape within about 100 m of a
// county line may be counted on either side of it.
func CountiesTouching(rings [][][2]float64, circles []Circle) ([]string, error) {
	for i, r := range rings {
		if err := checkRing(r); err != nil {
			return nil, fmt.Errorf("region: polygon %d: %w", i+1, err)
		}
	}
	for i, c := range circles {
		if err := checkPoint(c.Lat, c.Lon); err != nil {
			return nil, fmt.Errorf("region: circle %d: %w", i+1, err)
		}
		if math.IsNaN(c.RadiusKm) || math.IsInf(c.RadiusKm, 0) || c.RadiusKm < 0 {
			return nil, fmt.Errorf("region: circle %d: radius %v km: want a finite distance of 0 or more", i+1, c.RadiusKm)
		}
	}
	cs, err := countyShapes()
	if err != nil {
		return nil, err
	}
	shapes := make([]ring, len(rings))
	for i, r := range rings {
		shapes[i] = newRing(r, true)
	}
	var out []string
	for _, c := range cs {
		if c.touchesAny(shapes, circles) {
			out = append(out, c.code)
		}
	}
	return out, nil
}

func checkRing(r [][2]float64) error {
	n := len(r)
	if n > 1 && r[0] == r[n-1] {
		n--
	}
	if n < 3 {
		return fmt.Errorf("%d distinct points: a polygon needs at least 3", n)
	}
	for j, p := range r {
		if err := checkPoint(p[0], p[1]); err != nil {
			return fmt.Errorf("point %d: %w", j+1, err)
		}
	}
	return nil
}

func checkPoint(lat, lon float64) error {
	if !(lat >= -90 && lat <= 90) { // also refuses NaN
		return fmt.Errorf("latitude %v is outside -90..90", lat)
	}
	if !(lon >= -180 && lon <= 180) {
		return fmt.Errorf("longitude %v is outside -180..180", lon)
	}
	return nil
}

// pt is a point with x = longitude and y = latitude, in degrees.
type pt struct{ x, y float64 }

type box struct{ minX, minY, maxX, maxY float64 }

func (b box) overlaps(o box) bool {
	return b.minX <= o.maxX && o.minX <= b.maxX && b.minY <= o.maxY && o.minY <= b.maxY
}

// ring is a closed ring of points: the last point repeats the first.
type ring struct {
	pts []pt
	box box
}

// newRing builds a ring from [lat, lon] points (latFirst, as in CAP) or
// [lon, lat] points (as in GeoJSON), closing it if needed.
func newRing(in [][2]float64, latFirst bool) ring {
	r := ring{pts: make([]pt, 0, len(in)+1)}
	for _, p := range in {
		if latFirst {
			r.pts = append(r.pts, pt{x: p[1], y: p[0]})
		} else {
			r.pts = append(r.pts, pt{x: p[0], y: p[1]})
		}
	}
	if len(r.pts) > 0 && r.pts[0] != r.pts[len(r.pts)-1] {
		r.pts = append(r.pts, r.pts[0])
	}
	r.box = box{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}
	for _, p := range r.pts {
		r.box.minX, r.box.maxX = min(r.box.minX, p.x), max(r.box.maxX, p.x)
		r.box.minY, r.box.maxY = min(r.box.minY, p.y), max(r.box.maxY, p.y)
	}
	return r
}

// contains reports whether p lies inside the ring, by the even-odd rule.
func (r ring) contains(p pt) bool {
	in := false
	for i := 1; i < len(r.pts); i++ {
		a, b := r.pts[i-1], r.pts[i]
		if (a.y > p.y) != (b.y > p.y) && p.x < (b.x-a.x)*(p.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}

// crosses reports whether any edge of r meets any edge of s.
func (r ring) crosses(s ring) bool {
	if !r.box.overlaps(s.box) {
		return false
	}
	for i := 1; i < len(r.pts); i++ {
		a, b := r.pts[i-1], r.pts[i]
		eb := box{min(a.x, b.x), min(a.y, b.y), max(a.x, b.x), max(a.y, b.y)}
		if !eb.overlaps(s.box) {
			continue
		}
		for j := 1; j < len(s.pts); j++ {
			if segmentsMeet(a, b, s.pts[j-1], s.pts[j]) {
				return true
			}
		}
	}
	return false
}

func orient(a, b, c pt) float64 { return (b.x-a.x)*(c.y-a.y) - (b.y-a.y)*(c.x-a.x) }

func onSegment(a, b, p pt) bool {
	return min(a.x, b.x) <= p.x && p.x <= max(a.x, b.x) && min(a.y, b.y) <= p.y && p.y <= max(a.y, b.y)
}

// segmentsMeet reports whether segments ab and cd share at least one point.
func segmentsMeet(a, b, c, d pt) bool {
	o1, o2 := orient(a, b, c), orient(a, b, d)
	o3, o4 := orient(c, d, a), orient(c, d, b)
	if ((o1 > 0 && o2 < 0) || (o1 < 0 && o2 > 0)) && ((o3 > 0 && o4 < 0) || (o3 < 0 && o4 > 0)) {
		return true
	}
	return (o1 == 0 && onSegment(a, b, c)) || (o2 == 0 && onSegment(a, b, d)) ||
		(o3 == 0 && onSegment(c, d, a)) || (o4 == 0 && onSegment(c, d, b))
}

// polygon is an outer ring and its holes.
type polygon []ring

func (p polygon) contains(q pt) bool {
	if len(p) == 0 || !p[0].contains(q) {
		return false
	}
	for _, h := range p[1:] {
		if h.contains(q) {
			return false
		}
	}
	return true
}

type county struct {
	code  string
	polys []polygon
	box   box
}

func (c *county) contains(q pt) bool {
	for _, p := range c.polys {
		if p.contains(q) {
			return true
		}
	}
	return false
}

func (c *county) touchesAny(shapes []ring, circles []Circle) bool {
	for _, s := range shapes {
		if c.touchesRing(s) {
			return true
		}
	}
	for _, ci := range circles {
		if c.touchesCircle(ci) {
			return true
		}
	}
	return false
}

// touchesRing: two simple polygons share a point exactly when their outlines
// meet or one holds a vertex of the other.
func (c *county) touchesRing(s ring) bool {
	if !c.box.overlaps(s.box) {
		return false
	}
	if c.contains(s.pts[0]) {
		return true
	}
	for _, p := range c.polys {
		if s.contains(p[0].pts[0]) {
			return true
		}
		for _, r := range p {
			if r.crosses(s) {
				return true
			}
		}
	}
	return false
}

// kmPerDegree is the length of one degree of a great circle on a sphere of
// the Earth's mean radius (6371 km).
const kmPerDegree = 6371 * math.Pi / 180

func (c *county) touchesCircle(ci Circle) bool {
	centre := pt{x: ci.Lon, y: ci.Lat}
	if c.contains(centre) {
		return true
	}
	// Project onto a plane tangent at the centre, in kilometres.
	kx := kmPerDegree * math.Cos(ci.Lat*math.Pi/180)
	proj := func(p pt) pt { return pt{x: (p.x - centre.x) * kx, y: (p.y - centre.y) * kmPerDegree} }
	// A cheap reject: the county's box, widened by the radius, must hold the centre.
	dy := ci.RadiusKm / kmPerDegree
	if centre.y < c.box.minY-dy || centre.y > c.box.maxY+dy {
		return false
	}
	r2 := ci.RadiusKm * ci.RadiusKm
	for _, p := range c.polys {
		for _, r := range p {
			for i := 1; i < len(r.pts); i++ {
				if distSq(proj(r.pts[i-1]), proj(r.pts[i])) <= r2 {
					return true
				}
			}
		}
	}
	return false
}

// distSq returns the squared distance from the origin to segment ab.
func distSq(a, b pt) float64 {
	dx, dy := b.x-a.x, b.y-a.y
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = max(0, min(1, -(a.x*dx+a.y*dy)/l))
	}
	x, y := a.x+t*dx, a.y+t*dy
	return x*x + y*y
}

// countyShapes parses the shipped county boundaries once, in code order.
var countyShapes = sync.OnceValues(func() ([]*county, error) {
	names, err := fs.Glob(boundaries, "data/geojson/*.geojson")
	if err != nil {
		return nil, fmt.Errorf("region: embedded boundaries: %w", err)
	}
	slices.Sort(names)
	var out []*county
	for _, name := range names {
		code := strings.TrimSuffix(path.Base(name), ".geojson")
		if code == cityCode {
			continue
		}
		b, err := boundaries.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("region: embedded boundary %s: %w", code, err)
		}
		c, err := parseCounty(code, b)
		if err != nil {
			return nil, fmt.Errorf("region: embedded boundary %s: %w", code, err)
		}
		out = append(out, c)
	}
	return out, nil
})

// cityCode is the whole city, whose boundary ships beside the counties'.
const cityCode = "530100000000"

func parseCounty(code string, b []byte) (*county, error) {
	var f struct {
		Geometry struct {
			Type        string          `json:"type"`
			Coordinates json.RawMessage `json:"coordinates"`
		} `json:"geometry"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	var mp [][][][2]float64
	switch f.Geometry.Type {
	case "MultiPolygon":
		if err := json.Unmarshal(f.Geometry.Coordinates, &mp); err != nil {
			return nil, err
		}
	case "Polygon":
		var p [][][2]float64
		if err := json.Unmarshal(f.Geometry.Coordinates, &p); err != nil {
			return nil, err
		}
		mp = [][][][2]float64{p}
	default:
		return nil, fmt.Errorf("geometry %q: want MultiPolygon or Polygon", f.Geometry.Type)
	}
	c := &county{code: code, box: box{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}}
	for _, rings := range mp {
		var p polygon
		for _, r := range rings {
			if len(r) < 3 {
				continue
			}
			p = append(p, newRing(r, false))
		}
		if len(p) == 0 {
			continue
		}
		b := p[0].box
		c.box = box{min(c.box.minX, b.minX), min(c.box.minY, b.minY), max(c.box.maxX, b.maxX), max(c.box.maxY, b.maxY)}
		c.polys = append(c.polys, p)
	}
	if len(c.polys) == 0 {
		return nil, fmt.Errorf("no polygon")
	}
	return c, nil
}
