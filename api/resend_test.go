package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// POST /api/v1/warnings/{id}/resend puts the failed deliveries of a live
// warning back and answers how many, names every bad field of its body,
// and refuses a warning no longer live.
func TestResendRoute(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["areas"] = []string{"530102001001"} }))
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	// A resident's SMS failed for good: the provider said the phone is off.
	var res region.Person
	g.roster.People("530102001001", func(p region.Person) bool {
		res = p
		return p.Role != region.Resident || p.Phone == ""
	})
	e := ledger.Entry{RecipientID: res.ID, Audience: warning.Residents, Division: res.Division}
	h, err := g.ledger.Lock(ctx, id, warning.SMS, 1, "t", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := g.ledger.Begin(ctx, h, []ledger.Entry{e}, false)
	g.ledger.Record(ctx, id, warning.SMS, c.Gen, []ledger.Outcome{{Entry: e, State: warning.Failed, Extra: "用户关机"}})
	g.ledger.Unlock(ctx, id, warning.SMS, 1, h.Gen)

	code, body := g.do(t, "POST", "/api/v1/warnings/"+id+"/resend", token, `{"channels":["sms","sirens"],"states":["failed","delivered"]}`)
	errBody, _ := body["error"].(map[string]any)
	if code != http.StatusBadRequest || errBody["field"] != "channels[1]" || len(errBody["fields"].([]any)) != 2 {
		t.Fatalf("bad channel and state: %d %v; want 400 naming channels[1] and states[1]", code, body)
	}
	if code, body := g.do(t, "POST", "/api/v1/warnings/"+id+"/resend", token, `{"channels":`); code != http.StatusBadRequest {
		t.Fatalf("malformed body: %d %v", code, body)
	}
	code, body = g.do(t, "POST", "/api/v1/warnings/"+id+"/resend", token, `{"channels":["sms"],"states":["failed"]}`)
	if code != http.StatusOK || body["total"] != float64(1) || body["channels"].(map[string]any)["sms"] != float64(1) {
		t.Fatalf("resend: %d %v; want the one failed SMS", code, body)
	}
	stored, _ := g.ledger.Warning(ctx, id)
	ref, err := g.d.DeliveryRef(ctx, stored, warning.SMS, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := g.ledger.Delivery(ctx, ref); d.State != warning.Queued || !d.Reopened {
		t.Fatalf("the failed delivery is %s (re-opened %v) after resend, want queued again", d.State, d.Reopened)
	}
	_, audit := g.do(t, "GET", "/api/v1/audit?warning="+id, token, "")
	found := false
	for _, e := range audit["entries"].([]any) {
		m := e.(map[string]any)
		found = found || (m["action"] == "resend" && m["who"] == "admin")
	}
	if !found {
		t.Fatalf("resend not audited: %v", audit)
	}
	if code, _ := g.do(t, "POST", "/api/v1/warnings/nope/resend", token, ""); code != http.StatusNotFound {
		t.Fatalf("unknown warning: %d", code)
	}
	g.do(t, "POST", "/api/v1/warnings/"+id+"/cancel", token, "")
	if code, body := g.do(t, "POST", "/api/v1/warnings/"+id+"/resend", token, ""); code != http.StatusConflict {
		t.Fatalf("resend of a lifted warning: %d %v; want 409", code, body)
	}
}
