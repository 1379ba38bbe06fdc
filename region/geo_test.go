package region

import (
	"slices"
	"strings"
	"testing"
)

// square returns a closed ring of [lat, lon] points around a centre.
func geoSquare(lat, lon, half float64) [][2]float64 {
	return [][2]float64{
		{lat - half, lon - half}, {lat - half, lon + half}, {lat + half, lon + half},
		{lat + half, lon - half}, {lat - half, lon - half},
	}
}

var geoAllCounties = []string{
	"530102000000", "530103000000", "530111000000", "530112000000", "530113000000",
	"530114000000", "530115000000", "530124000000", "530125000000", "530126000000",
	"530127000000", "530128000000", "530129000000", "530181000000",
}

func TestCountiesTouching(t *testing.T) {
	tests := []struct {
		name    string
		rings   [][][2]float64
		circles []Circle
		want    []string // exactly these
		has     []string // at least these, when want is nil
		min     int
	}{
		{name: "square inside 五华区", rings: [][][2]float64{geoSquare(25.12, 102.66, 0.01)}, want: []string{"530102000000"}},
		{name: "unclosed triangle inside 五华区", rings: [][][2]float64{{{25.11, 102.65}, {25.11, 102.67}, {25.13, 102.66}}}, want: []string{"530102000000"}},
		{name: "Beijing", rings: [][][2]float64{geoSquare(39.9, 116.4, 0.2)}, want: nil},
		{name: "circle in Beijing", circles: []Circle{{Lat: 39.9, Lon: 116.4, RadiusKm: 50}}, want: nil},
		{name: "5 km around the city centre", circles: []Circle{{Lat: 25.0406, Lon: 102.7123, RadiusKm: 5}},
			has: []string{"530102000000", "530103000000", "530111000000", "530112000000"}, min: 4},
		{name: "point circle in 五华区", circles: []Circle{{Lat: 25.12, Lon: 102.66}}, want: []string{"530102000000"}},
		{name: "whole city", rings: [][][2]float64{{{24.2, 102.0}, {24.2, 103.8}, {26.7, 103.8}, {26.7, 102.0}, {24.2, 102.0}}}, want: geoAllCounties},
		{name: "huge circle", circles: []Circle{{Lat: 25, Lon: 102.9, RadiusKm: 400}}, want: geoAllCounties},
		// A thin sliver through 东川区 only: no vertex of either lies inside the other.
		{name: "sliver across 东川区", rings: [][][2]float64{{{26.10, 102.70}, {26.10, 103.40}, {26.1001, 103.40}, {26.1001, 102.70}}},
			has: []string{"530113000000"}, min: 1},
		{name: "nothing", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CountiesTouching(tt.rings, tt.circles)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil || tt.has == nil {
				if !slices.Equal(got, tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				return
			}
			t.Logf("got %v", got)
			for _, c := range tt.has {
				if !slices.Contains(got, c) {
					t.Errorf("got %v, want it to include %s", got, c)
				}
			}
			if len(got) < tt.min {
				t.Errorf("got %d counties %v, want at least %d", len(got), got, tt.min)
			}
			if slices.Contains(got, cityCode) {
				t.Errorf("got the whole city %s among counties", cityCode)
			}
		})
	}
}

func TestCountiesTouchingErrors(t *testing.T) {
	tests := []struct {
		name    string
		rings   [][][2]float64
		circles []Circle
		want    string
	}{
		{"two points", [][][2]float64{{{25, 102}, {25.1, 102.1}, {25, 102}}}, nil, "region: polygon 1: 2 distinct points: a polygon needs at least 3"},
		{"latitude", [][][2]float64{{{25, 102}, {95, 102.1}, {25.1, 102.2}}}, nil, "region: polygon 1: point 2: latitude 95 is outside -90..90"},
		{"longitude swapped", [][][2]float64{geoSquare(25, 102, 0.1), {{102, 25}, {102.1, 25}, {102.1, 25.1}}}, nil, "region: polygon 2: point 1: latitude 102 is outside -90..90"},
		{"radius", nil, []Circle{{Lat: 25, Lon: 102, RadiusKm: -1}}, "region: circle 1: radius -1 km: want a finite distance of 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CountiesTouching(tt.rings, tt.circles)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCountyShapesMatchTree(t *testing.T) {
	cs, err := countyShapes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.code)
		d, ok := Kunming().Get(c.code)
		if !ok || d.Level != County {
			t.Errorf("boundary %s is not a county of the tree", c.code)
		}
	}
	if !slices.Equal(got, geoAllCounties) {
		t.Fatalf("boundaries %s, want the 14 counties", strings.Join(got, " "))
	}
}

func BenchmarkCountiesTouching(b *testing.B) {
	var ring [][2]float64
	for i := range 500 { // a 500-point ring around the city centre
		f := float64(i) / 500
		ring = append(ring, [2]float64{25.0 + 0.3*f, 102.6 + 0.3*f*f})
	}
	for b.Loop() {
		if _, err := CountiesTouching([][][2]float64{ring}, []Circle{{Lat: 25, Lon: 102.7, RadiusKm: 10}}); err != nil {
			b.Fatal(err)
		}
	}
}
