package cap_test

// This test is the only place package cap meets package region: it wires
// them the way cmd/warngate does, to show the seam works on the real
// boundaries. Package cap itself imports only warning.

import (
	"errors"
	"os"
	"slices"
	"testing"

	"warngate/region"
	"warngate/warning/cap"
)

// kunming is a cap.Jurisdiction over the shipped divisions and boundaries.
type kunming struct{ t *region.Tree }

func (k kunming) Known(code string) bool { return k.t.Covers("530100000000", code) }

func (k kunming) Locate(s cap.Shape) ([]string, error) {
	circles := make([]region.Circle, len(s.Circles))
	for i, c := range s.Circles {
		circles[i] = region.Circle(c)
	}
	return region.CountiesTouching(s.Polygons, circles)
}

var _ cap.Jurisdiction = kunming{}

func parseTestdata(t *testing.T, name string) *cap.Alert {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := cap.Parse(f, cap.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestKunmingJurisdiction(t *testing.T) {
	j := kunming{region.Kunming()}
	tests := []struct {
		file  string
		areas []string
		err   string
	}{
		// A polygon in 五华区's north, then a 5 km circle on the city centre.
		{file: "kunming/thunder_polygon_11B.xml",
			areas: []string{"530102000000", "530103000000", "530111000000", "530112000000"}},
		{file: "kunming/rainstorm_III_update.xml",
			areas: []string{"530102000000", "530103000000", "530111000000", "530112000000"}},
		{file: "kunming/beijing_out.xml",
			err: "cap: out of jurisdiction: 东城区 (110101000000); 北京城区 (by its polygons and circles)"},
		{file: "samples/seevee_cma_penglai_hightemp_red_update.xml",
			err: "cap: out of jurisdiction: 蓬莱 (370614000000)"},
		{file: "samples/google_australia_rfs.xml",
			err: "cap: out of jurisdiction: Yerong Creek Structure Fire (by its polygons and circles)"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			w, err := parseTestdata(t, tt.file).Warning(j)
			if tt.err != "" {
				if !errors.Is(err, cap.ErrOutOfJurisdiction) || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w.Areas, tt.areas) {
				t.Fatalf("areas %v, want %v", w.Areas, tt.areas)
			}
		})
	}
}
