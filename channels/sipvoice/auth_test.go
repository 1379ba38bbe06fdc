package sipvoice_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"warngate/channels/sipvoice"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// trunk is a SIP trunk that wants digest credentials before it takes a
// call, then refuses it as the phone did: busy, with the Q.850 cause of a
// rejection. (The phone that answers is baresip, in the other tests; this
// one checks only the INVITE's credentials.)
type trunk struct {
	addr string
	mu   sync.Mutex
	auth []string // the Authorization header of each INVITE
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func startTrunk(t *testing.T, user, password string) *trunk {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("trunk"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trunk{}
	const realm, nonce = "kunming-trunk", "0a1b2c3d4e5f"
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		h := req.GetHeader("Authorization")
		tr.mu.Lock()
		if h != nil {
			tr.auth = append(tr.auth, h.Value())
		} else {
			tr.auth = append(tr.auth, "")
		}
		tr.mu.Unlock()
		if h == nil {
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="`+realm+`", nonce="`+nonce+`", algorithm=MD5`))
			tx.Respond(res)
			return
		}
		p := map[string]string{}
		for _, kv := range strings.Split(strings.TrimPrefix(h.Value(), "Digest "), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			p[k] = strings.Trim(v, `"`)
		}
		ha1 := md5hex(user + ":" + realm + ":" + password)
		ha2 := md5hex("INVITE:" + p["uri"])
		want := md5hex(ha1 + ":" + nonce + ":" + ha2)
		if p["qop"] != "" {
			want = md5hex(ha1 + ":" + nonce + ":" + p["nc"] + ":" + p["cnonce"] + ":" + p["qop"] + ":" + ha2)
		}
		if p["username"] != user || p["response"] != want {
			tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		}
		res := sip.NewResponseFromRequest(req, 486, "Busy Here", nil)
		res.AppendHeader(sip.NewHeader("Reason", `Q.850;cause=21;text="Call rejected"`))
		tx.Respond(res)
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr.addr = l.LocalAddr().String()
	go ua.TransportLayer().ServeUDP(l)
	t.Cleanup(func() { l.Close(); ua.Close() })
	return tr
}

func TestTrunkThatWantsCredentials(t *testing.T) {
	tests := []struct {
		name, password string
		want           warning.CallOutcome
	}{
		{"right password", "trunk-pass", warning.CallRejected}, // through, then refused by the phone: 486 with Q.850 21
		{"wrong password", "guessed", warning.CallFailed},      // the trunk's 403
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := startTrunk(t, "warngate", "trunk-pass")
			g := newGateway(t, tr.addr, func(c *sipvoice.Config) {
				c.Username, c.Password = "warngate", "trunk-pass"
				if tt.password != "trunk-pass" {
					c.Password = "guessed"
				}
				c.TTSCommand = []string{os.Args[0], "-w", "{wav}"}
			})
			t.Setenv("SIPVOICE_FAKE_TTS", t.TempDir()+"/runs")
			b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "13800000009")
			if _, _, err := g.Notify(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			r := g.report(t)
			if r.Call.Outcome != tt.want {
				t.Errorf("outcome %s (%s), want %s", r.Call.Outcome, r.Reason, tt.want)
			}
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if len(tr.auth) != 2 || tr.auth[0] != "" || !strings.HasPrefix(tr.auth[1], "Digest ") || !strings.Contains(tr.auth[1], `username="warngate"`) {
				t.Errorf("INVITEs' Authorization: %q", tr.auth)
			}
			if strings.Contains(fmt.Sprint(tr.auth), tt.password) {
				t.Error("the password travels")
			}
			if strings.Contains(g.log.String(), "trunk-pass") {
				t.Error("the password is in the log")
			}
		})
	}
}
