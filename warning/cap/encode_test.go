package cap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"warngate/warning"
)

var testNames = map[string]string{
	"530102000000": "五华区", "530103000000": "盘龙区", "530111000000": "官渡区", "530112000000": "西山区",
}

func testOptions() EncodeOptions {
	return EncodeOptions{
		Sender:           "kmyjj@km.gov.cn",
		IdentifierPrefix: "CN-KM-YJJ-",
		SenderName:       "昆明市应急管理局",
		AreaName:         func(code string) string { return testNames[code] },
		Reference: func(id string) (Reference, bool) {
			if id != "w-0001" {
				return Reference{}, false
			}
			return Reference{Sender: "kmyjj@km.gov.cn", Identifier: "CN-KM-YJJ-w-0001",
				Sent: time.Date(2026, 7, 1, 6, 0, 0, 0, ChinaTime)}, true
		},
	}
}

// testWarnings are the warnings the encoding, round-trip and schema tests
// share: every status and message type, translations, references, areas
// named and unnamed, text that needs escaping.
func testWarnings() []*warning.Warning {
	utc := time.Date(2026, 7, 1, 0, 30, 15, 123456789, time.UTC) // 08:30:15 in Kunming
	return []*warning.Warning{
		{
			ID: "w-0001", Hazard: warning.Rainstorm, Level: warning.Yellow, Status: warning.StatusActual, MsgType: warning.MsgAlert,
			Areas:       []string{"530102000000", "530103000000"},
			Headline:    "昆明市气象台发布暴雨Ⅲ级预警",
			Description: "预计未来12小时，五华、盘龙将出现暴雨。\n请注意防范 <山洪> & 滑坡。",
			Instruction: "公众外出注意安全。",
			Issued:      utc, Expires: utc.Add(24 * time.Hour),
		},
		{
			ID: "w-0002", Hazard: warning.Rainstorm, Level: warning.Orange, Status: warning.StatusActual, MsgType: warning.MsgUpdate,
			Areas:      []string{"530102000000", "530111000000", "530112000000"},
			Headline:   "昆明市气象台升级发布暴雨Ⅱ级预警",
			References: []string{"w-0001", "kmyjj@km.gov.cn,CN-KM-YJJ-w-0000,2026-06-30T06:00:00+08:00"},
			Translations: []warning.Translation{
				{Language: "en-US", Headline: "Rainstorm warning upgraded to Level II", Description: "Heavy rain in Wuhua, Guandu and Xishan."},
				{Language: "fr-FR", Headline: "Alerte orage de niveau II"},
			},
			Issued: utc.Add(time.Hour), Expires: utc.Add(25 * time.Hour),
		},
		{
			ID: "w-0003", Hazard: warning.GeoHazard, Level: warning.Red, Status: warning.StatusExercise, MsgType: warning.MsgAlert,
			Areas:    []string{"530113000000"},
			Headline: "地质灾害气象风险Ⅰ级预警（演练）",
			Issued:   utc, Expires: utc.Add(12 * time.Hour),
		},
		{
			ID: "w-0004", Hazard: warning.ForestFire, Level: warning.Blue, Status: warning.StatusTest, MsgType: warning.MsgCancel,
			Areas: []string{"530181000000"}, Headline: "解除森林火险Ⅳ级预警", References: []string{"w-0001"},
			Issued: utc, Expires: utc.Add(time.Hour),
		},
		{
			ID: "w-0005", Hazard: warning.OtherHazard, Level: warning.Blue, Status: warning.StatusActual,
			Areas: []string{"530124000000"}, Headline: "突发事件提示",
			Translations: []warning.Translation{{Language: "en", Headline: "Notice"}},
			Issued:       utc, Expires: utc.Add(time.Hour),
		},
		{
			ID: "w-0006", Hazard: warning.Earthquake, Level: warning.Orange, Status: warning.StatusActual, MsgType: warning.MsgAlert,
			Areas: []string{"530100000000"}, Headline: "地震预警", Issued: utc, Expires: utc.Add(time.Hour),
		},
	}
}

// testCancelled are testWarnings' alert and update after they were lifted.
func testCancelled() []*warning.Warning {
	var out []*warning.Warning
	for _, w := range testWarnings()[:2] {
		w.State, w.Cancelled = warning.StateCancelled, w.Issued.Add(2*time.Hour)
		out = append(out, w)
	}
	return out
}

// A lifted warning's document is its Cancel, so that a consumer polling it
// takes the warning down; parsed back, it cancels the warning's message.
func TestEncodeCancelled(t *testing.T) {
	ws := testCancelled()
	b, err := Encode(ws[0], testOptions())
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{
		"<identifier>CN-KM-YJJ-w-0001-cancel</identifier>",
		"<sent>2026-07-01T10:30:15+08:00</sent>",
		"<msgType>Cancel</msgType>",
		"<references>kmyjj@km.gov.cn,CN-KM-YJJ-w-0001,2026-07-01T08:30:15+08:00</references>",
		"<responseType>AllClear</responseType>",
		"<urgency>Past</urgency>",
		"<headline>【已解除】昆明市气象台发布暴雨Ⅲ级预警</headline>",
		"<expires>2026-07-02T08:30:15+08:00</expires>",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %s in\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "<instruction>") {
		t.Errorf("a lifted warning's advice still given:\n%s", doc)
	}
	a, err := Parse(bytes.NewReader(b), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := a.Warning(&fakeJurisdiction{codes: []string{"530102000000", "530103000000"}})
	if err != nil {
		t.Fatal(err)
	}
	if back.MsgType != warning.MsgCancel || len(back.References) != 1 || back.References[0] != "CN-KM-YJJ-w-0001" {
		t.Errorf("parsed back: %s references %v", back.MsgType, back.References)
	}

	// An update lifted references the update, not what it replaced; the
	// English headline says so in English.
	b, err = Encode(ws[1], testOptions())
	if err != nil {
		t.Fatal(err)
	}
	doc = string(b)
	for _, want := range []string{
		"<references>kmyjj@km.gov.cn,CN-KM-YJJ-w-0002,2026-07-01T09:30:15+08:00</references>",
		"<headline>Lifted: Rainstorm warning upgraded to Level II</headline>",
		"<headline>【已解除】Alerte orage de niveau II</headline>",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %s in\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "CN-KM-YJJ-w-0000") {
		t.Errorf("the lifted update's Cancel references what the update replaced:\n%s", doc)
	}
}

func TestEncodeFormat(t *testing.T) {
	b, err := Encode(testWarnings()[1], testOptions())
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{
		`<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">`,
		"<identifier>CN-KM-YJJ-w-0002</identifier>",
		"<sender>kmyjj@km.gov.cn</sender>",
		"<sent>2026-07-01T09:30:15+08:00</sent>",
		"<status>Actual</status>",
		"<msgType>Update</msgType>",
		"<scope>Public</scope>",
		"<references>kmyjj@km.gov.cn,CN-KM-YJJ-w-0001,2026-07-01T06:00:00+08:00 kmyjj@km.gov.cn,CN-KM-YJJ-w-0000,2026-06-30T06:00:00+08:00</references>",
		"<language>zh-CN</language>\n    <category>Met</category>\n    <event>暴雨预警</event>\n    <urgency>Immediate</urgency>\n    <severity>Severe</severity>\n    <certainty>Likely</certainty>",
		"<eventCode>\n      <valueName>warngate:hazard</valueName>\n      <value>rainstorm</value>",
		"<expires>2026-07-02T09:30:15+08:00</expires>",
		"<senderName>昆明市应急管理局</senderName>",
		"<parameter>\n      <valueName>warngate:level</valueName>\n      <value>Ⅱ</value>",
		"<areaDesc>五华区、官渡区、西山区</areaDesc>",
		"<geocode>\n        <valueName>CPEAS Geographic Code</valueName>\n        <value>530111000000</value>",
		"<language>en-US</language>\n    <category>Met</category>\n    <event>Rainstorm warning</event>",
		"<headline>Rainstorm warning upgraded to Level II</headline>",
		"<language>fr-FR</language>\n    <category>Met</category>\n    <event>暴雨预警</event>",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks\n%s\n--- document:\n%s", want, doc)
		}
	}
	if n := strings.Count(doc, "<info>"); n != 3 {
		t.Errorf("%d infos, want 3", n)
	}
	// Never "Z", never fractions: every time has a +08:00 offset.
	for _, m := range regexp.MustCompile(`<(sent|expires)>([^<]*)<`).FindAllStringSubmatch(doc, -1) {
		if !strings.HasSuffix(m[2], "+08:00") || len(m[2]) != len("2026-07-01T09:30:15+08:00") {
			t.Errorf("%s %q is not in +08:00 without fractions", m[1], m[2])
		}
	}
}

func TestEncodeEscapes(t *testing.T) {
	b, err := Encode(testWarnings()[0], testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want := "<description>预计未来12小时，五华、盘龙将出现暴雨。\n请注意防范 &lt;山洪&gt; &amp; 滑坡。</description>"; !bytes.Contains(b, []byte(want)) {
		t.Errorf("document lacks %q:\n%s", want, b)
	}
}

func TestEncodeCategories(t *testing.T) {
	tests := map[warning.Hazard]string{
		warning.Rainstorm: "Met", warning.Heat: "Met", warning.Flood: "Met", warning.FlashFlood: "Met",
		warning.GeoHazard: "Geo", warning.Earthquake: "Geo", warning.ForestFire: "Fire", warning.OtherHazard: "Other",
	}
	for h, want := range tests {
		w := testWarnings()[0]
		w.Hazard = h
		a, err := fromWarning(w, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		in := a.Infos[0]
		if in.Categories[0] != want || in.Event != h.Chinese()+"预警" {
			t.Errorf("%s: category %s event %s, want %s %s预警", h, in.Categories[0], in.Event, want, h.Chinese())
		}
	}
	for l, want := range map[warning.Level][2]string{
		warning.Red: {"Immediate", "Extreme"}, warning.Orange: {"Immediate", "Severe"},
		warning.Yellow: {"Expected", "Moderate"}, warning.Blue: {"Expected", "Minor"},
	} {
		w := testWarnings()[0]
		w.Level = l
		a, _ := fromWarning(w, testOptions())
		if got := [2]string{a.Infos[0].Urgency, a.Infos[0].Severity}; got != want {
			t.Errorf("%s: urgency, severity %v, want %v", l, got, want)
		}
	}
}

func TestEncodeRefused(t *testing.T) {
	w := &warning.Warning{Hazard: "volcano", Status: "real", MsgType: "ack", Areas: []string{"5301"}, References: []string{"w-9"}}
	_, err := Encode(w, EncodeOptions{})
	want := strings.Join([]string{
		`cap: encode warning "": id: required: the identifier is IdentifierPrefix + id`,
		`sender: required: set EncodeOptions.Sender`,
		`hazard: unknown hazard "volcano"`,
		`level: required: blue, yellow, orange or red`,
		`status: "real": want actual, exercise or test`,
		`msg_type: "ack": want alert, update or cancel`,
		`areas[0]: "5301" is not a 12-digit division code`,
		`issued: required: when the warning was issued`,
		`expires: required: when the warning stops applying`,
		`references[0]: "w-9" is not "sender,identifier,sent" and EncodeOptions.Reference does not know it`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%s", err, want)
	}
	var fe *warning.FieldError
	if !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("error does not hold *warning.FieldError values")
	}

	w = testWarnings()[0]
	w.ID = "w 1"
	if _, err := Encode(w, testOptions()); err == nil || err.Error() != `cap: alert/identifier: "CN-KM-YJJ-w 1" holds " ", which CAP forbids here (no spaces, commas, < or &)` {
		t.Errorf("identifier with a space: %v", err)
	}
	w = testWarnings()[1]
	w.Translations[0].Language = "en US"
	if _, err := Encode(w, testOptions()); err == nil || err.Error() != `cap: alert/info[2]/language: "en US" is not a language tag (want e.g. zh-CN)` {
		t.Errorf("bad language: %v", err)
	}
}

// TestRoundTrip encodes warnings, parses them back and maps them to
// warnings again.
func TestRoundTrip(t *testing.T) {
	opts := testOptions()
	for _, w := range testWarnings() {
		t.Run(w.ID, func(t *testing.T) {
			b, err := Encode(w, opts)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Parse(bytes.NewReader(b), Limits{})
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			got, err := a.Warning(&fakeJurisdiction{codes: append([]string{"530100000000"}, kunmingCounties...)})
			if err != nil {
				t.Fatal(err)
			}
			want := *w
			if want.MsgType == "" {
				want.MsgType = warning.MsgAlert
			}
			want.Identifier = opts.IdentifierPrefix + w.ID
			want.Sender = opts.Sender
			want.Issued = w.Issued.Truncate(time.Second)
			want.Expires = w.Expires.Truncate(time.Second)
			want.References = nil
			for _, id := range w.References {
				r, _ := lookupReference(id, opts)
				want.References = append(want.References, r.Identifier)
			}
			diffWarnings(t, got, &want)
			if _, off := got.Issued.Zone(); off != 8*3600 {
				t.Errorf("issued offset %d, want +08:00", off)
			}
		})
	}
}

// TestSchema validates what Encode writes, and every sample re-encoded,
// against the OASIS schema with xmllint.
func TestSchema(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("WARNGATE_TEST_XMLLINT_REQUIRED") != "" {
			t.Fatal("xmllint not found and WARNGATE_TEST_XMLLINT_REQUIRED is set: apt-get install libxml2-utils")
		}
		t.Skip("xmllint not found: apt-get install libxml2-utils to validate against CAP-v1.2.xsd (set WARNGATE_TEST_XMLLINT_REQUIRED=1 to make this a failure)")
	}
	dir := t.TempDir()
	var files []string
	write := func(name string, b []byte) {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	for _, w := range testWarnings() {
		b, err := Encode(w, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		write("warning-"+w.ID+".xml", b)
	}
	for _, w := range testCancelled() {
		b, err := Encode(w, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		write("cancelled-"+w.ID+".xml", b)
	}
	samples, _ := filepath.Glob("testdata/samples/*.xml")
	more, _ := filepath.Glob("testdata/*/*.xml")
	for _, f := range append(samples, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Parse(bytes.NewReader(b), Limits{})
		if err != nil {
			continue // the refused ones
		}
		out, err := a.Encode()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		write("reencoded-"+strings.ReplaceAll(strings.TrimPrefix(f, "testdata/"), "/", "-"), out)
	}
	if len(files) < 20 {
		t.Fatalf("only %d documents to validate", len(files))
	}
	args := append([]string{"--noout", "--nonet", "--schema", "testdata/CAP-v1.2.xsd"}, files...)
	out, err := exec.Command(xmllint, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), " validates"); got != len(files) {
		t.Fatalf("%d of %d documents validate:\n%s", got, len(files), out)
	}
	// And the schema does refuse what it should: a "Z" time.
	bad, _ := Encode(testWarnings()[0], testOptions())
	bad = regexp.MustCompile(`<sent>[^<]*</sent>`).ReplaceAll(bad, []byte("<sent>2026-07-01T00:30:15Z</sent>"))
	f := filepath.Join(dir, "z.xml")
	if err := os.WriteFile(f, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(xmllint, "--noout", "--nonet", "--schema", "testdata/CAP-v1.2.xsd", f).CombinedOutput(); err == nil {
		t.Fatalf("xmllint accepted a Z time:\n%s", out)
	}
}

func ExampleEncode() {
	w := &warning.Warning{
		ID: "20260701-001", Hazard: warning.Rainstorm, Level: warning.Yellow, Status: warning.StatusExercise,
		MsgType: warning.MsgAlert, Areas: []string{"530102000000"}, Headline: "五华区暴雨Ⅲ级预警",
		Issued:  time.Date(2026, 7, 1, 8, 0, 0, 0, ChinaTime),
		Expires: time.Date(2026, 7, 1, 20, 0, 0, 0, ChinaTime),
	}
	b, err := Encode(w, EncodeOptions{
		Sender: "kmyjj@km.gov.cn", IdentifierPrefix: "CN-KM-",
		AreaName: func(string) string { return "五华区" },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(b))
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?>
	// <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
	//   <identifier>CN-KM-20260701-001</identifier>
	//   <sender>kmyjj@km.gov.cn</sender>
	//   <sent>2026-07-01T08:00:00+08:00</sent>
	//   <status>Exercise</status>
	//   <msgType>Alert</msgType>
	//   <scope>Public</scope>
	//   <info>
	//     <language>zh-CN</language>
	//     <category>Met</category>
	//     <event>暴雨预警</event>
	//     <urgency>Expected</urgency>
	//     <severity>Moderate</severity>
	//     <certainty>Likely</certainty>
	//     <eventCode>
	//       <valueName>warngate:hazard</valueName>
	//       <value>rainstorm</value>
	//     </eventCode>
	//     <expires>2026-07-01T20:00:00+08:00</expires>
	//     <headline>【演练】五华区暴雨Ⅲ级预警</headline>
	//     <parameter>
	//       <valueName>warngate:level</valueName>
	//       <value>Ⅲ</value>
	//     </parameter>
	//     <area>
	//       <areaDesc>五华区</areaDesc>
	//       <geocode>
	//         <valueName>CPEAS Geographic Code</valueName>
	//         <value>530102000000</value>
	//       </geocode>
	//     </area>
	//   </info>
	// </alert>
}
