package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/api"
	"warngate/region"
	"warngate/warning"
	"warngate/warning/cap"
)

// newApprovalGateway is a gateway whose admin token does not bypass the
// approval of orange and red warnings: a red CAP alert it imports awaits
// approval.
func newApprovalGateway(t *testing.T) *gateway {
	t.Helper()
	return buildGateway(t, false, region.DemoOptions{ResidentsPerVillage: 4, HouseholdsPerVillage: 2},
		func(o *api.Options) { o.AdminTokenBypass = nil })
}

// bureauAlert is a lightning CAP Alert for 五华区 from the meteorological
// bureau (sender kmqx@cma, identifier KMQX-<id>).
func bureauAlert(t *testing.T, id string, lvl warning.Level, sent, expires time.Time) string {
	t.Helper()
	src := &warning.Warning{ID: id, Hazard: warning.Lightning, Level: lvl, Status: warning.StatusActual,
		MsgType: warning.MsgAlert, Areas: []string{"530102000000"}, Headline: "昆明市气象台发布雷电" + lvl.Colour() + "预警",
		Description: "预计未来6小时五华区将出现雷电活动。", Issued: sent, Expires: expires}
	doc, err := cap.Encode(src, cap.EncodeOptions{Sender: "kmqx@cma", IdentifierPrefix: "KMQX-"})
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// followUp turns the bureau's alert KMQX-<id> into a message of type
// msgType (Update or Cancel) with identifier KMQX-<id>-<suffix> that
// references it.
func followUp(t *testing.T, alert, id, msgType, suffix string) string {
	t.Helper()
	a, err := cap.Parse(strings.NewReader(alert), cap.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(alert, "<msgType>Alert</msgType>", "<msgType>"+msgType+"</msgType>", 1)
	doc = strings.Replace(doc, "<identifier>KMQX-"+id+"</identifier>", "<identifier>KMQX-"+id+"-"+suffix+"</identifier>", 1)
	return strings.Replace(doc, "<scope>Public</scope>",
		"<scope>Public</scope><references>kmqx@cma,KMQX-"+id+","+a.Sent.Format(cap.TimeLayout)+"</references>", 1)
}

// An alert whose sent time lies years ahead is refused, naming sent: the
// maximum lifetime is not measured from a sent time the sender chose.
func TestCAPSentFarAheadRefused(t *testing.T) {
	g := newGateway(t, false)
	sent := time.Now().AddDate(5, 0, 0)
	code, out := g.postCAP(t, []byte(bureauAlert(t, "far-001", warning.Yellow, sent, sent.Add(24*time.Hour))))
	if e := apiErr(out); code != http.StatusBadRequest || e["field"] != "alert/sent" || !strings.Contains(e["message"].(string), "sent") {
		t.Fatalf("alert sent 5 years ahead: %d %v", code, out)
	}
	if ids, _ := g.ledger.Warnings(t.Context(), 0, 10); len(ids) != 0 {
		t.Fatalf("alert sent 5 years ahead stored: %v", ids)
	}
	// A sent a minute ahead (clocks differ) is taken.
	sent = time.Now().Add(time.Minute)
	if code, out := g.postCAP(t, []byte(bureauAlert(t, "skew-001", warning.Yellow, sent, sent.Add(6*time.Hour)))); code != http.StatusAccepted {
		t.Fatalf("alert sent a minute ahead: %d %v", code, out)
	}
}

// A Cancel of an alert still awaiting approval withdraws it: it is never
// released.
func TestCAPCancelOfPendingWithdraws(t *testing.T) {
	g := newApprovalGateway(t)
	now := time.Now()
	alert := bureauAlert(t, "pend-001", warning.Red, now, now.Add(6*time.Hour))
	code, w := g.postCAP(t, []byte(alert))
	if code != http.StatusAccepted || w["state"] != string(warning.StateAwaitingApproval) {
		t.Fatalf("import: %d %v", code, w)
	}
	code, c := g.postCAP(t, []byte(followUp(t, alert, "pend-001", "Cancel", "c")))
	stored, _ := g.ledger.Warning(t.Context(), w["id"].(string))
	if code != http.StatusOK || c["id"] != w["id"] || stored.State != warning.StateCancelled || !stored.Withdrawn {
		t.Fatalf("cancel of a pending warning: %d %v; warning now %s withdrawn=%v", code, c, stored.State, stored.Withdrawn)
	}
}

// An Update of an alert still awaiting approval replaces it: the pending
// version is withdrawn and the update awaits approval in its place, so
// that only one version can be approved.
func TestCAPUpdateOfPendingReplacesIt(t *testing.T) {
	g := newApprovalGateway(t)
	now := time.Now()
	alert := bureauAlert(t, "pend-002", warning.Red, now, now.Add(6*time.Hour))
	code, w := g.postCAP(t, []byte(alert))
	if code != http.StatusAccepted {
		t.Fatalf("import: %d %v", code, w)
	}
	upd := strings.ReplaceAll(followUp(t, alert, "pend-002", "Update", "u"), "雷电红色预警", "雷电橙色预警")
	code, u := g.postCAP(t, []byte(upd))
	if code != http.StatusAccepted || u["id"] == w["id"] || u["state"] != string(warning.StateAwaitingApproval) || u["headline"] != "昆明市气象台发布雷电橙色预警" {
		t.Fatalf("update of a pending warning: %d %v", code, u)
	}
	first, _ := g.ledger.Warning(t.Context(), w["id"].(string))
	if first.State != warning.StateCancelled || !first.Withdrawn {
		t.Fatalf("the pending version is still %s (withdrawn=%v) beside its update %v", first.State, first.Withdrawn, u["id"])
	}
	pending := 0
	ids, _ := g.ledger.Warnings(t.Context(), 0, 10)
	for _, id := range ids {
		if x, _ := g.ledger.Warning(t.Context(), id); x.State == warning.StateAwaitingApproval {
			pending++
		}
	}
	if pending != 1 {
		t.Fatalf("%d warnings await approval after the update, want 1", pending)
	}
	// The same update again is the same warning.
	if code, again := g.postCAP(t, []byte(upd)); code != http.StatusOK || again["id"] != u["id"] {
		t.Fatalf("same update again: %d %v", code, again)
	}
}

// An Update or Cancel of something this gateway never had is refused: it
// never becomes a new alert.
func TestCAPFollowUpOfUnknownRefused(t *testing.T) {
	g := newGateway(t, false)
	now := time.Now()
	alert := bureauAlert(t, "unk-001", warning.Yellow, now, now.Add(6*time.Hour))
	for _, c := range []struct{ msgType, code string }{{"Update", "nothing_to_update"}, {"Cancel", "nothing_to_cancel"}} {
		code, out := g.postCAP(t, []byte(followUp(t, alert, "unk-001", c.msgType, "x")))
		if code != http.StatusNotFound || apiErr(out)["code"] != c.code {
			t.Fatalf("%s of an unknown alert: %d %v", c.msgType, code, out)
		}
	}
	if ids, _ := g.ledger.Warnings(t.Context(), 0, 10); len(ids) != 0 {
		t.Fatalf("follow-ups of an unknown alert stored warnings: %v", ids)
	}
}

// An Update of a warning already lifted is refused (409), not taken as a
// new alert.
func TestCAPUpdateOfCancelledRefused(t *testing.T) {
	g := newGateway(t, false)
	now := time.Now()
	alert := bureauAlert(t, "end-001", warning.Yellow, now, now.Add(6*time.Hour))
	if code, w := g.postCAP(t, []byte(alert)); code != http.StatusAccepted {
		t.Fatalf("import: %d %v", code, w)
	}
	if code, c := g.postCAP(t, []byte(followUp(t, alert, "end-001", "Cancel", "c"))); code != http.StatusOK {
		t.Fatalf("cancel: %d %v", code, c)
	}
	code, out := g.postCAP(t, []byte(followUp(t, alert, "end-001", "Update", "u")))
	if code != http.StatusConflict || apiErr(out)["code"] != "reference_ended" {
		t.Fatalf("update of a lifted warning: %d %v", code, out)
	}
	if ids, _ := g.ledger.Warnings(t.Context(), 0, 10); len(ids) != 1 {
		t.Fatalf("update of a lifted warning stored a warning: %v", ids)
	}
}

// The same Cancel sent twice (a retry) is answered 200 both times; the
// second says the warning was cancelled already.
func TestCAPCancelRepeatedIsIdempotent(t *testing.T) {
	g := newGateway(t, false)
	now := time.Now()
	alert := bureauAlert(t, "c2-001", warning.Yellow, now, now.Add(6*time.Hour))
	code, w := g.postCAP(t, []byte(alert))
	if code != http.StatusAccepted {
		t.Fatalf("import: %d %v", code, w)
	}
	cancel := followUp(t, alert, "c2-001", "Cancel", "c")
	if code, c := g.postCAP(t, []byte(cancel)); code != http.StatusOK {
		t.Fatalf("cancel: %d %v", code, c)
	}
	code, c := g.postCAP(t, []byte(cancel))
	if code != http.StatusOK || c["id"] != w["id"] || c["state"] != string(warning.StateCancelled) || c["note"] == nil {
		t.Fatalf("same cancel again: %d %v", code, c)
	}
}

// apiErr is the error object of an API answer, empty when there is none.
func apiErr(out map[string]any) map[string]any {
	e, _ := out["error"].(map[string]any)
	if e == nil {
		e = map[string]any{}
	}
	return e
}
