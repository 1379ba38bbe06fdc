package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/warning"
	"warngate/warning/cap"
)

func (g *gateway) postCAP(t *testing.T, doc []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/api/v1/cap", strings.NewReader(string(doc)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/cap+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// A meteorological bureau's CAP alert becomes a warning once; its cancel
// lifts it; exports are CAP again; the public feeds show only what is live.
func TestCAPInAndOut(t *testing.T) {
	g := newGateway(t, true)
	src := &warning.Warning{ID: "met-001", Hazard: warning.Lightning, Level: warning.Yellow, Status: warning.StatusActual,
		MsgType: warning.MsgAlert, Areas: []string{"530102000000", "530103000000"}, Headline: "昆明市气象台发布雷电黄色预警",
		Description: "预计未来6小时五华区、盘龙区将出现雷电活动。", Instruction: "减少户外活动。",
		Issued: time.Now(), Expires: time.Now().Add(6 * time.Hour),
		Translations: []warning.Translation{{Language: "en-US", Headline: "Lightning yellow warning"}}}
	doc, err := cap.Encode(src, cap.EncodeOptions{Sender: "kmqx@cma", IdentifierPrefix: "KMQX-"})
	if err != nil {
		t.Fatal(err)
	}
	code, w := g.postCAP(t, doc)
	if code != http.StatusAccepted || w["hazard"] != "lightning" || w["level"] != "yellow" {
		t.Fatalf("import: %d %v", code, w)
	}
	id := w["id"].(string)
	if tr := w["translations"].([]any); len(tr) != 1 {
		t.Errorf("translations %v", tr)
	}
	code, again := g.postCAP(t, doc)
	if code != http.StatusOK || again["id"] != id {
		t.Fatalf("same CAP twice: %d %v, want the first warning", code, again["id"])
	}

	// Export validates against the schema (the cap package's test runs
	// xmllint); here: it parses back to the same warning.
	req, _ := http.NewRequest("GET", g.url+"/api/v1/warnings/"+id+"/cap", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Type"), "cap+xml") || strings.Contains(string(out), "Z</") {
		t.Fatalf("export: %s\n%s", resp.Header.Get("Content-Type"), out)
	}
	back, err := cap.Parse(strings.NewReader(string(out)), cap.Limits{})
	if err != nil || back.Infos[0].Headline != src.Headline || len(back.Infos) != 2 {
		t.Fatalf("export does not parse back: %v %+v", err, back)
	}

	// Public feeds: live actual warnings only, no personal data.
	code, pub := g.do(t, "GET", "/public/warnings.json?area=530102001001", "", "")
	if code != 200 || len(pub["warnings"].([]any)) != 1 {
		t.Fatalf("public json for a village of 五华区: %d %v", code, pub)
	}
	code, pub = g.do(t, "GET", "/public/warnings.json?area=530181000000", "", "")
	if code != 200 || len(pub["warnings"].([]any)) != 0 {
		t.Fatalf("public json for 安宁市 shows a 五华/盘龙 warning: %v", pub)
	}
	resp, _ = http.Get(g.url + "/public/warnings.atom")
	atom, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(atom), "/public/warnings/"+id+"/cap.xml") || !strings.Contains(string(atom), "雷电黄色预警") {
		t.Fatalf("atom feed:\n%s", atom)
	}

	// The bureau's cancel, referencing the alert.
	cancel := strings.Replace(string(doc), "<msgType>Alert</msgType>", "<msgType>Cancel</msgType>", 1)
	cancel = strings.Replace(cancel, "<identifier>KMQX-met-001</identifier>", "<identifier>KMQX-met-001-c</identifier>", 1)
	sent := back.Sent.Format(cap.TimeLayout)
	cancel = strings.Replace(cancel, "<scope>Public</scope>", "<scope>Public</scope><references>kmqx@cma,KMQX-met-001,"+sent+"</references>", 1)
	code, c := g.postCAP(t, []byte(cancel))
	if code != http.StatusOK || c["state"] != "cancelled" || c["id"] != id {
		t.Fatalf("cancel: %d %v", code, c)
	}
	_, pub = g.do(t, "GET", "/public/warnings.json", "", "")
	if len(pub["warnings"].([]any)) != 0 {
		t.Fatalf("a lifted warning is still public: %v", pub)
	}

	// The feeds carry the lift, so that their consumers take it down: the
	// JSON feed in its own list, the Atom feed as the Cancel's entry, and
	// the CAP document is now the Cancel of the alert.
	lifted, _ := pub["cancelled"].([]any)
	if len(lifted) != 1 || lifted[0].(map[string]any)["id"] != id || lifted[0].(map[string]any)["msg_type"] != "cancel" ||
		lifted[0].(map[string]any)["cancelled"] == nil {
		t.Fatalf("public json does not carry the lift: %v", pub)
	}
	resp, _ = http.Get(g.url + "/public/warnings.atom")
	atom, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(atom), "<id>urn:oid:CN-KM-WG-"+id+"-cancel</id>") || !strings.Contains(string(atom), "【已解除】") ||
		strings.Contains(string(atom), "<id>urn:oid:CN-KM-WG-"+id+"</id>") {
		t.Fatalf("atom feed after the lift:\n%s", atom)
	}
	resp, _ = http.Get(g.url + "/public/warnings/" + id + "/cap.xml")
	cancelled, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	validCAP(t, cancelled)
	ca, err := cap.Parse(strings.NewReader(string(cancelled)), cap.Limits{})
	if err != nil || ca.MsgType != "Cancel" || len(ca.References) != 1 || ca.References[0].Identifier != "CN-KM-WG-"+id ||
		!ca.References[0].Sent.Equal(back.Sent) || ca.Identifier == back.Identifier {
		t.Fatalf("the lifted warning's CAP: %v\n%s", err, cancelled)
	}
}

// A warning withdrawn while it awaited approval was never public: no feed
// and no CAP document shows it, lifted or not.
func TestWithdrawnWarningStaysPrivate(t *testing.T) {
	g := newGateway(t, false)
	ctx := t.Context()
	w := &warning.Warning{Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual, Areas: []string{"530102000000"},
		Headline: "五华区暴雨红色预警（未发布）", Description: "…", Expires: time.Now().Add(6 * time.Hour)}
	stored, _, err := g.d.Submit(ctx, w, dispatcher.SubmitOptions{By: dispatcher.Actor{User: "duty"}, NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.d.Cancel(ctx, stored.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := g.do(t, "GET", "/public/warnings/"+stored.ID+"/cap.xml", "", ""); code != http.StatusNotFound {
		t.Errorf("a withdrawn warning's CAP is public: %d", code)
	}
	_, pub := g.do(t, "GET", "/public/warnings.json", "", "")
	live, _ := pub["warnings"].([]any)
	lifted, _ := pub["cancelled"].([]any)
	if len(live)+len(lifted) != 0 {
		t.Errorf("a withdrawn warning is in the public feed: %v", pub)
	}
	resp, _ := http.Get(g.url + "/public/warnings.atom")
	atom, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(atom), "未发布") {
		t.Errorf("a withdrawn warning is in the Atom feed:\n%s", atom)
	}
}

// validCAP checks doc against the OASIS CAP 1.2 schema with xmllint.
func validCAP(t *testing.T, doc []byte) {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("WARNGATE_TEST_XMLLINT_REQUIRED") != "" {
			t.Fatal("xmllint not found and WARNGATE_TEST_XMLLINT_REQUIRED is set: apt-get install libxml2-utils")
		}
		t.Log("xmllint not found: the CAP document is not checked against the schema (apt-get install libxml2-utils)")
		return
	}
	f := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(xmllint, "--noout", "--nonet", "--schema", "../warning/cap/testdata/CAP-v1.2.xsd", f).CombinedOutput(); err != nil {
		t.Fatalf("not valid CAP 1.2: %v\n%s\n%s", err, out, doc)
	}
}

func TestCAPRefused(t *testing.T) {
	g := newGateway(t, false)
	for _, tt := range []struct {
		file, code, field string
	}{
		{"beijing_out.xml", "out_of_jurisdiction", "alert/info/area"},
		{"google_invalid.cap.xml", "invalid_cap", ""},
	} {
		doc, _ := os.ReadFile("testdata/cap/" + tt.file)
		status, body := g.postCAP(t, doc)
		e, _ := body["error"].(map[string]any)
		if status < 400 || e["code"] != tt.code || (tt.field != "" && e["field"] != tt.field) {
			t.Errorf("%s: %d %v", tt.file, status, body)
		}
	}
	status, body := g.postCAP(t, []byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>`))
	if status != 400 {
		t.Errorf("XXE: %d %v", status, body)
	}
	ids, _ := g.ledger.Warnings(t.Context(), 0, 10)
	if len(ids) != 0 {
		t.Fatalf("refused CAP stored %d warnings", len(ids))
	}
}

func TestDrillReport(t *testing.T) {
	g := newGateway(t, true)
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["status"] = "exercise"
		m["areas"] = []string{"530102001001"}
	}))
	if code != 202 {
		t.Fatalf("%d %v", code, w)
	}
	id := w["id"].(string)
	var prog map[string]any
	for i := 0; i < 500; i++ {
		if _, prog = g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, ""); prog["complete"] == true {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := prog["audiences"].(map[string]any)["residents"]; ok {
		t.Fatalf("a drill reached residents: %v", prog["audiences"])
	}
	var officer string
	_, acks := g.do(t, "GET", "/api/v1/warnings/"+id+"/acks", token, "")
	officer = acks["officials"].([]any)[0].(map[string]any)["person_id"].(string)
	if code, _ := g.do(t, "POST", "/api/v1/warnings/"+id+"/acks", token, `{"person_id":"`+officer+`"}`); code != 200 {
		t.Fatalf("confirm by API: %d", code)
	}
	code, rep := g.do(t, "GET", "/api/v1/warnings/"+id+"/report", token, "")
	a := rep["acknowledgements"].(map[string]any)
	if code != 200 || rep["drill"] != true || a["confirmed"] != float64(1) || a["expected"].(float64) < 4 {
		t.Fatalf("report: %d %v", code, rep)
	}
	// The drill reached officials only: its residents count as not reached.
	cov, _ := rep["coverage"].(map[string]any)
	if cov == nil || cov["people"].(float64) == 0 || cov["reached"] != float64(0) || cov["unreached"] != cov["people"] || len(cov["townships"].([]any)) == 0 {
		t.Fatalf("the drill report's coverage: %v", rep["coverage"])
	}
	// A drill never shows on the public side unless asked.
	_, pub := g.do(t, "GET", "/public/warnings.json", "", "")
	if len(pub["warnings"].([]any)) != 0 {
		t.Fatal("a drill is public by default")
	}
	_, pub = g.do(t, "GET", "/public/warnings.json?include=exercise", "", "")
	if ws := pub["warnings"].([]any); len(ws) != 1 || !strings.HasPrefix(ws[0].(map[string]any)["headline"].(string), "【演练】") {
		t.Fatalf("drill on request: %v", pub)
	}
}
