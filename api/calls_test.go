package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// The 未叫应 list and the progress show what each official's calls came
// to: every call with its outcome, keys and times, a summary such as
// 无人接听×3, counts per outcome and the minutes each account bills.
func TestUnreachedShowsCalls(t *testing.T) {
	g := newGateway(t, true)
	ctx := context.Background()
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["areas"] = []string{"530102001001"} }))
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	var leader ledger.Official
	deadline := time.Now().Add(30 * time.Second)
	for leader.PersonID == "" || len(must(g.ledger.Calls(ctx, id))[leader.PersonID]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the township leader was not called with the message")
		}
		time.Sleep(20 * time.Millisecond)
		os, _ := g.ledger.Officials(ctx, id)
		for _, o := range os {
			if p, _ := g.roster.Person(o.PersonID); p.Role == region.TownshipLeader {
				leader = o
			}
		}
	}
	if _, err := g.ledger.MarkTries(ctx, id, time.Now(), []ledger.Try{{Official: leader, Tries: leader.Tries, Unreached: true}}); err != nil {
		t.Fatal(err)
	}
	ref := warning.Ref{WarningID: id, Channel: warning.Voice, RecipientID: leader.PersonID}
	for i := range 3 {
		rep := warning.Call{Outcome: warning.CallNoAnswer, Ring: 45 * time.Second, Account: "county-trunk"}.Report(ref, fmt.Sprint("c-", i), time.Now(), "")
		if err := g.d.Record(ctx, []warning.Report{rep}); err != nil {
			t.Fatal(err)
		}
	}
	_, un := g.do(t, "GET", "/api/v1/warnings/"+id+"/unreached", token, "")
	var row map[string]any
	for _, tw := range un["townships"].([]any) {
		for _, o := range tw.(map[string]any)["officials"].([]any) {
			if o.(map[string]any)["person_id"] == leader.PersonID {
				row = o.(map[string]any)
			}
		}
	}
	if row == nil {
		t.Fatalf("the leader is not on the 未叫应 list: %v", un)
	}
	if row["call_summary"] != "无人接听×3，接听未按键×1" {
		t.Errorf("call_summary %q, want 无人接听×3，接听未按键×1", row["call_summary"])
	}
	calls, _ := row["calls"].([]any)
	if len(calls) != 4 {
		t.Fatalf("calls %v, want 4", row["calls"])
	}
	last := calls[3].(map[string]any)
	if last["outcome"] != "no_answer" || last["outcome_name"] != "无人接听" || last["ring_seconds"] != 45.0 || last["account"] != "county-trunk" {
		t.Errorf("a call shown as %v", last)
	}
	_, prog := g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, "")
	pc, _ := prog["calls"].(map[string]any)
	if pc == nil {
		t.Fatalf("progress has no calls: %v", prog)
	}
	if out := pc["outcomes"].(map[string]any); out["no_answer"] != 3.0 || out["no_key"] != 2.0 {
		t.Errorf("progress's calls by outcome: %v; want 3 no answer, 2 no key (the township's two officials)", out)
	}
	if b := pc["billing"].(map[string]any)["county-trunk"].(map[string]any); b["calls"] != 3.0 || b["minutes"] != 0.0 {
		t.Errorf("county-trunk billed %v", b)
	}
	_, rep := g.do(t, "GET", "/api/v1/warnings/"+id+"/report", token, "")
	if rc, _ := rep["calls"].(map[string]any); rc == nil || rc["total"] != 5.0 {
		t.Errorf("the report's calls: %v", rep["calls"])
	}
	found := false
	for _, tw := range rep["townships"].([]any) {
		us, _ := tw.(map[string]any)["unreached"].([]any)
		for _, u := range us {
			found = found || strings.HasSuffix(u.(string), "：电话无人接听×3，接听未按键×1")
		}
	}
	if !found {
		t.Errorf("the report's unreached do not say what their calls came to: %v", rep["townships"])
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The preview says who is called and when: red's township officials with
// the message, three calls 100 s apart.
func TestPreviewShowsTheCalls(t *testing.T) {
	g := newGateway(t, false)
	code, p := g.do(t, "POST", "/api/v1/warnings/preview", token, warningBody(func(m map[string]any) { m["areas"] = []string{"530102001001"} }))
	if code != http.StatusOK {
		t.Fatalf("preview: %d %v", code, p)
	}
	calls, _ := p["calls"].(map[string]any)
	if calls == nil || calls["officials"] != 2.0 || calls["after_seconds"] != 0.0 || calls["tries"] != 3.0 || calls["interval_seconds"] != 100.0 {
		t.Errorf("preview's calls: %v", p["calls"])
	}
	if p["channels"].(map[string]any)["voice"] != 2.0 {
		t.Errorf("preview's channels: %v; want 2 calls with the message", p["channels"])
	}
	// Every demo resident has a phone: some lack WeChat, none every channel.
	if u, ok := p["unreachable"].(map[string]any); !ok || len(u) != 0 {
		t.Errorf("preview's unreachable: %v; want an empty object", p["unreachable"])
	}
	if p["no_address"].(map[string]any)["wechat"] == nil {
		t.Errorf("preview's no_address: %v; want residents without WeChat", p["no_address"])
	}
}
