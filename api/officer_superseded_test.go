package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// officialLink is the link an official's SMS carries for a warning.
func (g *gateway) officialLink(w *warning.Warning, person string) string {
	return g.url + "/a/" + g.links.Token(warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: person}, w.Expires.Add(24*time.Hour))
}

// waitAsked waits until an official is asked to confirm a warning.
func (g *gateway) waitAsked(t *testing.T, id, person string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := g.ledger.OfficialState(context.Background(), id, person); err == nil {
			return
		}
	}
	t.Fatalf("%s never asked to confirm %s", person, id)
}

func (g *gateway) ackState(t *testing.T, id, person string) ledger.AckState {
	t.Helper()
	o, err := g.ledger.OfficialState(context.Background(), id, person)
	if err != nil {
		t.Fatal(err)
	}
	return o.State
}

// A village officer taps 确认收到 on the page of their first message after
// the warning was updated. The old version is no longer theirs to confirm
// and the new one would go on reminding and escalating them: nothing is
// recorded, and they are taken to the new version's page, which says their
// confirmation was not recorded and offers the button. Confirming there
// ends it; the old link then opens the new version, confirmed.
func TestOldLinkAfterAnUpdateConfirmsNothingAndOpensTheCurrentVersion(t *testing.T) {
	g := newGateway(t, true)
	ctx := context.Background()
	const officer = "o94" // a village officer of 530102001001
	old, _, err := g.d.Submit(ctx, redWarning("530102001001"), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitAsked(t, old.ID, officer)
	nw := redWarning("530102001001")
	nw.Description = "更新：降雨量将超过150毫米。"
	cur, err := g.d.Update(ctx, old.ID, nw, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitAsked(t, cur.ID, officer)

	resp := g.form(t, g.officialLink(old, officer)+"/ack", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/a/"+cur.ID+".") || !strings.HasSuffix(loc, "?err=superseded") {
		t.Fatalf("tap on the old version: %d to %q; want the current version's page (%s) saying it was updated", resp.StatusCode, loc, cur.ID)
	}
	if s := g.ackState(t, cur.ID, officer); s == ledger.AckConfirmed {
		t.Error("the tap on the old version confirmed the current one, which the official has not seen")
	}
	if s := g.ackState(t, old.ID, officer); s == ledger.AckConfirmed {
		t.Error("the tap confirmed the superseded version")
	}
	code, body := g.page(t, g.url+loc)
	if code != 200 || !strings.Contains(body, "该预警已更新，您刚才的确认未记录") || !strings.Contains(body, nw.Description) || !strings.Contains(body, `id="ack"`) {
		t.Fatalf("current version's page after the tap: %d; want it to say the confirmation was not recorded, show the new text and the button:\n%s", code, body)
	}

	// Confirming on the current version's page ends it.
	if resp := g.form(t, g.url+strings.TrimSuffix(loc, "?err=superseded")+"/ack", nil); !strings.HasSuffix(resp.Header.Get("Location"), "?ok=ack") {
		t.Fatalf("confirm on the current version: %s", resp.Header.Get("Location"))
	}
	if s := g.ackState(t, cur.ID, officer); s != ledger.AckConfirmed {
		t.Fatalf("current version after confirming on its page: %s", s)
	}
	// The old link now opens the current version, confirmed, in either language.
	if _, body := g.page(t, g.officialLink(old, officer)); !strings.Contains(body, "您已确认最新版本") || strings.Contains(body, `id="ack"`) || !strings.Contains(body, nw.Description) {
		t.Errorf("old link after confirming the current version; want the current page, confirmed:\n%s", body)
	}
	if _, body := g.page(t, g.officialLink(old, officer)+"?lang=en"); !strings.Contains(body, "you have confirmed the latest version") {
		t.Errorf("old link in English:\n%s", body)
	}
}

// A tap on the page of a lifted warning, or of one whose update was then
// lifted, confirms nothing: the page says the warning is no longer in
// force and offers no button.
func TestLinkOfALiftedWarningConfirmsNothing(t *testing.T) {
	g := newGateway(t, true)
	ctx := context.Background()
	const officer = "o94"
	lifted, _, err := g.d.Submit(ctx, redWarning("530102001001"), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitAsked(t, lifted.ID, officer)
	if _, err := g.d.Cancel(ctx, lifted.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	old, _, err := g.d.Submit(ctx, redWarning("530102001002"), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := ""
	g.roster.People("530102001002", func(p region.Person) bool {
		if p.Role == region.VillageOfficer {
			other = p.ID
		}
		return other == ""
	})
	g.waitAsked(t, old.ID, other)
	cur, err := g.d.Update(ctx, old.ID, redWarning("530102001002"), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitAsked(t, cur.ID, other)
	if _, err := g.d.Cancel(ctx, cur.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		w      *warning.Warning
		person string
	}{{"lifted", lifted, officer}, {"updated, then lifted", old, other}} {
		link := g.officialLink(c.w, c.person)
		resp := g.form(t, link+"/ack", nil)
		if loc := resp.Header.Get("Location"); !strings.HasSuffix(loc, "?err=closed") {
			t.Errorf("%s: tap answered %d to %q; want the page saying it is no longer in force", c.name, resp.StatusCode, loc)
		}
		for _, w := range []*warning.Warning{c.w, cur} {
			if o, _ := g.ledger.OfficialState(ctx, w.ID, c.person); o.State == ledger.AckConfirmed {
				t.Errorf("%s: the tap confirmed %s", c.name, w.ID)
			}
		}
		if _, body := g.page(t, link); !strings.Contains(body, "该预警已解除或已过期") || strings.Contains(body, `id="ack"`) {
			t.Errorf("%s: page; want it to say the warning is lifted, with no button:\n%s", c.name, body)
		}
	}
}
