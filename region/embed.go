package region

import (
	"bytes"
	"embed"
	"fmt"
	"sync"
)

//go:embed data/kunming.csv
var kunmingCSV []byte

//go:embed data/geojson/*.geojson
var boundaries embed.FS

// Kunming returns the divisions of 昆明市 under 云南省 (the root), from the
// NBS 2023 统计用区划代码 shipped with warngate: 1 province, 1 city, 14
// counties, 150 townships and 1738 villages. The tree is parsed on first use
// and shared; Kunming panics only if the embedded file is broken.
func Kunming() *Tree { return kunming() }

var kunming = sync.OnceValue(func() *Tree {
	t, err := LoadTree(bytes.NewReader(kunmingCSV))
	if err != nil {
		panic(fmt.Sprintf("region: embedded kunming.csv: %v", err))
	}
	return t
})

// Boundary returns the GeoJSON Feature (a simplified WGS84 MultiPolygon) of
// the county with the given 12-digit code, or of the whole city for
// 530100000000. It reports false for any other code; townships and villages
// have no boundary. The caller owns the returned bytes.
func Boundary(code string) ([]byte, bool) {
	if !isCode(code) {
		return nil, false
	}
	b, err := boundaries.ReadFile("data/geojson/" + code + ".geojson")
	return b, err == nil
}
