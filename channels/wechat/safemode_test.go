package wechat_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"warngate/channels"
	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// The known answer: a key, random prefix, timestamp and nonce chosen for
// this test, encrypted and signed with openssl and sha1sum:
//
//	key=$(printf 'warngate known-answer key' | sha256sum | cut -c1-64)
//	iv=${key:0:32}
//	printf 'KAT-random-16byt' + 4-byte length + katMessage + appID + 18 bytes of 18 |
//	  openssl enc -aes-256-cbc -K $key -iv $iv -nopad | base64 -w0
//	printf '%s\n' wgtoken2026 1714000000 1320562132 "$encrypt" | LC_ALL=C sort | tr -d '\n' | sha1sum
const (
	katAESKey    = "/Sb6dyXJaHiqz80DZnFCGWAVMtG4kpXvxhDEuTr3kvc"
	katRandom    = "KAT-random-16byt"
	katTimestamp = "1714000000"
	katNonce     = "1320562132"
	katMessage   = `<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><FromUserName><![CDATA[oFollower0001]]></FromUserName><CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID><Status><![CDATA[success]]></Status></xml>`
	katEncrypt   = "0/55XLz+do7Rv8DvSi2L9BLa0a8TpIet/bY7DLi3uqOOHP3YJZ76PDmZiSpRqAewHRjEeWLqwlBMOrY9SgV9dz9mZ/0JF7Rm7wX4fdaQN+dZEzen8PglFmQ7oMe6H/P6OkWdK1SfsZ5dO7HoenJ4EjRzsk4flypxW2Z0T4KwMUoNW91KH+t3/Q3lOFUtE7z+WYKC4Un4fHs0dNRLiWTMEO8Kv9XPQOyTJSz0C11bvhrePeNgvZ3BpO7+jJLjkGgi53MQjQhngPhDoCORL5Bhk0OtRGjurwadU0NTgF5JMd/xKHu8yIJsAF/s4heNVg+Cj588M5OaXdthGsQVsORs+KfZfiXoqB0bsw7AIfDlKh4+QHNZWa9Fkt8K3380g5+AWqlS0467z/5a7AImsUV3JwkAiib/k4mQX3s3xUjC4m5apzuY9U/ZCLWnxiwe3dw9NZzRBqkMi4pIAz8uA/3LGQ=="
	katMsgSign   = "bdd9e696a98037468c2acfc9a41878da04ec4e20"
)

// otherAESKey is a valid key that is not the account's.
const otherAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

// safeConfig is the official account in safe mode.
func safeConfig() wechat.OfficialAccountConfig {
	c := oaConfig("", "")
	c.EncodingAESKey = katAESKey
	return c
}

// encryptedURL is the callback URL of an encrypted event, signed with
// token over encrypted.
func encryptedURL(token, ts, nonce, encrypted string) string {
	return signedURL(token, ts, nonce, url.Values{
		"encrypt_type":  {"aes"},
		"msg_signature": {fake.MsgSign(token, ts, nonce, encrypted)},
		"openid":        {"oFollower0001"},
	})
}

// safeBody is the body of an event in safe mode.
func safeBody(encrypted string) string {
	return `<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><Encrypt><![CDATA[` + encrypted + `]]></Encrypt></xml>`
}

// compatibleBody is the body of an event in compatible mode: plain fields
// (with plainStatus) and the encrypted copy.
func compatibleBody(plainStatus, encrypted string) string {
	return strings.Replace(strings.Replace(eventXML, "%s", plainStatus, 1), "</xml>", "<Encrypt><![CDATA["+encrypted+"]]></Encrypt></xml>", 1)
}

// encrypt encrypts msg as WeChat does, with the fake's crypter.
func encrypt(t *testing.T, key, app, msg string) string {
	t.Helper()
	c, err := fake.NewCrypter(key, app)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Encrypt([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// event is the TEMPLATESENDJOBFINISH event of msgid 200163836 with status.
func event(status string) string { return strings.Replace(eventXML, "%s", status, 1) }

// TestReceiverSafeMode runs each request against a new receiver, since a
// receiver answers a request it has handled before without recording it.
func TestReceiverSafeMode(t *testing.T) {
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "r1"}
	const ts, nonce = "1700000000", "7"
	delivered := encrypt(t, katAESKey, appID, event("success"))
	blocked := encrypt(t, katAESKey, appID, event("failed:user block"))
	signedOver := func(encrypted string) string { return encryptedURL(srvToken, ts, nonce, encrypted) }
	withBad := func(encrypted string) (string, string) { return signedOver(encrypted), safeBody(encrypted) }
	notBase64URL, notBase64Body := withBad("not*base64*at*all")
	shortURL, shortBody := withBad("AAAAAAAAAAAAAAAAAAAAAA==")
	wrongKeyURL, wrongKeyBody := withBad(encrypt(t, otherAESKey, appID, event("success")))
	otherAppURL, otherAppBody := withBad(encrypt(t, katAESKey, "wx0000000000000000", event("success")))
	notXMLURL, notXMLBody := withBad(encrypt(t, katAESKey, appID, "<xml><MsgType>"))
	subscribe := encrypt(t, katAESKey, appID, `<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>`)
	tests := []eventCase{
		{name: "url verification", method: "GET", url: signedURL(srvToken, ts, nonce, url.Values{"echostr": {"hello-echo"}}), code: 200, answer: "hello-echo"},
		{name: "delivered", method: "POST", url: signedOver(delivered), body: safeBody(delivered), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Delivered, ProviderID: "200163836"}},
		{name: "user block", method: "POST", url: signedOver(blocked), body: safeBody(blocked), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Failed, Reason: "用户拒收", ProviderID: "200163836"}},
		{name: "encrypt_type in capitals", method: "POST", url: strings.Replace(signedOver(delivered), "encrypt_type=aes", "encrypt_type=AES", 1), body: safeBody(delivered), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Delivered, ProviderID: "200163836"}},
		{name: "compatible mode: only the encrypted copy counts", method: "POST", url: signedOver(blocked), body: compatibleBody("success", blocked), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Failed, Reason: "用户拒收", ProviderID: "200163836"}},
		{name: "other event", method: "POST", url: signedOver(subscribe), body: safeBody(subscribe), code: 200, answer: "success"},
		{name: "not recorded", method: "POST", url: signedOver(blocked), body: safeBody(blocked), code: 503, failSink: true},

		{name: "plain event", method: "POST", url: signedURL(srvToken, ts, nonce, nil), body: event("success"), code: 400, log: "encoding_aes_key is set"},
		{name: "compatible body without encrypt_type", method: "POST", url: signedURL(srvToken, ts, nonce, nil), body: compatibleBody("success", delivered), code: 400, log: "encoding_aes_key is set"},
		{name: "no signature", method: "POST", url: "/callbacks/wechat?encrypt_type=aes&timestamp=" + ts + "&nonce=" + nonce + "&msg_signature=" + fake.MsgSign(srvToken, ts, nonce, delivered), body: safeBody(delivered), code: 403},
		{name: "no msg_signature", method: "POST", url: signedURL(srvToken, ts, nonce, url.Values{"encrypt_type": {"aes"}}), body: safeBody(delivered), code: 403, log: "msg_signature mismatch"},
		{name: "msg_signature with another token", method: "POST", url: strings.Replace(signedOver(delivered), fake.MsgSign(srvToken, ts, nonce, delivered), fake.MsgSign("guess", ts, nonce, delivered), 1), body: safeBody(delivered), code: 403, log: "msg_signature mismatch"},
		{name: "msg_signature of another body", method: "POST", url: signedOver(blocked), body: safeBody(delivered), code: 403, log: "msg_signature mismatch"},
		{name: "no Encrypt", method: "POST", url: signedOver(""), body: `<xml><ToUserName>gh</ToUserName></xml>`, code: 400, log: "no Encrypt element"},
		{name: "malformed envelope", method: "POST", url: signedOver(delivered), body: `<xml><Encrypt>`, code: 400},
		{name: "Encrypt not Base64", method: "POST", url: notBase64URL, body: notBase64Body, code: 400, log: "not Base64"},
		{name: "Encrypt of 16 bytes", method: "POST", url: shortURL, body: shortBody, code: 400, log: "32-byte blocks"},
		{name: "encrypted with another key", method: "POST", url: wrongKeyURL, body: wrongKeyBody, code: 400, log: "wrong EncodingAESKey"},
		{name: "another AppID", method: "POST", url: otherAppURL, body: otherAppBody, code: 400, log: "event_appid=wx0000000000000000"},
		{name: "decrypted message not XML", method: "POST", url: notXMLURL, body: notXMLBody, code: 400, log: "not XML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logged := newLog()
			rc, err := wechat.NewReceiver(safeConfig(), log)
			if err != nil {
				t.Fatal(err)
			}
			tt.serve(t, rc, ref)
			if tt.log != "" && !strings.Contains(logged.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logged)
			}
			checkHidden(t, nil, logged, katAESKey)
		})
	}
}

// TestReceiverKnownAnswer checks the encryption against a ciphertext and a
// msg_signature made by openssl and sha1sum, and against the SDK's
// implementation: the receiver reads it, and the fake's crypter and the
// SDK produce it.
func TestReceiverKnownAnswer(t *testing.T) {
	if got := fake.MsgSign(srvToken, katTimestamp, katNonce, katEncrypt); got != katMsgSign {
		t.Errorf("fake msg_signature %s, want %s", got, katMsgSign)
	}
	c, err := fake.NewCrypter(katAESKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	c.Rand = strings.NewReader(katRandom)
	if got, err := c.Encrypt([]byte(katMessage)); err != nil || got != katEncrypt {
		t.Errorf("fake crypter:\n%s (%v)\nwant\n%s", got, err, katEncrypt)
	}
	sdk, err := util.EncryptMsg([]byte(katRandom), []byte(katMessage), appID, katAESKey)
	if err != nil || string(sdk) != katEncrypt {
		t.Errorf("SDK:\n%s (%v)\nwant\n%s", sdk, err, katEncrypt)
	}

	rc, err := wechat.NewReceiver(safeConfig(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "ra"}
	s := eventSink(ref)
	u := signedURL(srvToken, katTimestamp, katNonce, url.Values{"encrypt_type": {"aes"}, "msg_signature": {katMsgSign}})
	w := httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest("POST", u, strings.NewReader(safeBody(katEncrypt))), s)
	got := s.Reports()
	if w.Code != 200 || len(got) != 1 || got[0].Ref != ref || got[0].State != warning.Delivered || got[0].ProviderID != "200163836" {
		t.Fatalf("%d %q reports %+v", w.Code, w.Body, got)
	}
}

// TestCryptoRoundTrip encrypts events of several sizes with the fake's
// crypter and with the SDK; the receiver reads both, and the SDK reads
// what the fake wrote.
func TestCryptoRoundTrip(t *testing.T) {
	rc, err := wechat.NewReceiver(safeConfig(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	c, err := fake.NewCrypter(katAESKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	encryptors := map[string]func(msg string) (string, error){
		"fake": func(msg string) (string, error) { return c.Encrypt([]byte(msg)) },
		"sdk": func(msg string) (string, error) {
			b, err := util.EncryptMsg([]byte(util.RandomStr(16)), []byte(msg), appID, katAESKey)
			return string(b), err
		},
	}
	statuses := []string{
		"success",
		"failed:user block",
		"failed: system failed",
		"failed: " + strings.Repeat("系统繁忙", 40), // many blocks
		"failed:" + strings.Repeat("x", 7),      // the plaintext ends on a block boundary or near it
		"failed:" + strings.Repeat("x", 8),
		"failed:" + strings.Repeat("x", 9),
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "ra"}
	for name, enc := range encryptors {
		for i, status := range statuses {
			t.Run(name+"/"+status[:min(len(status), 24)], func(t *testing.T) {
				msg := event(status)
				encrypted, err := enc(msg)
				if err != nil {
					t.Fatal(err)
				}
				if name == "fake" {
					_, plain, err := util.DecryptMsg(appID, encrypted, katAESKey)
					if err != nil || string(plain) != msg {
						t.Fatalf("SDK decrypts the fake's %q: %v", plain, err)
					}
				}
				s := eventSink(ref)
				nonce := "n" + string(rune('a'+i))
				w := httptest.NewRecorder()
				rc.ServeReports(w, httptest.NewRequest("POST", encryptedURL(srvToken, "1700000000", nonce, encrypted), strings.NewReader(safeBody(encrypted))), s)
				got := s.Reports()
				if w.Code != 200 || len(got) != 1 {
					t.Fatalf("%d %q reports %+v", w.Code, w.Body, got)
				}
				wantState, wantReason := warning.Failed, status
				switch status {
				case "success":
					wantState, wantReason = warning.Delivered, ""
				case "failed:user block":
					wantReason = "用户拒收"
				}
				if got[0].State != wantState || got[0].Reason != wantReason {
					t.Errorf("report %+v, want %v %q", got[0], wantState, wantReason)
				}
			})
		}
	}
}

// TestReceiverSafeModeReplay: the same encrypted request again is answered
// success without recording anything; one that was not recorded is taken
// again; WeChat's retry, encrypted anew, is recorded again as the same
// report.
func TestReceiverSafeModeReplay(t *testing.T) {
	rc, err := wechat.NewReceiver(safeConfig(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "ra"}
	s := eventSink(ref)
	post := func(u, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		rc.ServeReports(w, httptest.NewRequest("POST", u, strings.NewReader(body)), s)
		return w
	}

	// Not recorded the first time: the same request is handled again.
	enc := encrypt(t, katAESKey, appID, event("success"))
	u := encryptedURL(srvToken, "1700000000", "1", enc)
	s.FailRecord = errors.New("redis down")
	if w := post(u, safeBody(enc)); w.Code != 503 {
		t.Fatalf("failing sink: %d", w.Code)
	}
	s.FailRecord = nil
	if w := post(u, safeBody(enc)); w.Code != 200 || len(s.Reports()) != 1 {
		t.Fatalf("after the sink recovered: %d, reports %+v", w.Code, s.Reports())
	}

	// Recorded: the same request again is answered, not recorded.
	calls := s.Calls()
	for range 3 {
		if w := post(u, safeBody(enc)); w.Code != 200 || w.Body.String() != "success" {
			t.Fatalf("replay: %d %q", w.Code, w.Body)
		}
	}
	if s.Calls() != calls || len(s.Reports()) != 1 {
		t.Errorf("replays reached the sink: %d calls, reports %+v", s.Calls()-calls, s.Reports())
	}

	// The same event encrypted and signed anew is recorded again, as the
	// same report: idempotent in the sink.
	enc2 := encrypt(t, katAESKey, appID, event("success"))
	if w := post(encryptedURL(srvToken, "1700000001", "2", enc2), safeBody(enc2)); w.Code != 200 {
		t.Fatalf("retry: %d", w.Code)
	}
	if got := s.Reports(); len(got) != 2 || got[0] != got[1] {
		t.Errorf("reports %+v, want the same report twice", got)
	}
}

// TestReceiverWithoutAESKey refuses safe-mode events and says which setting
// is missing, and reads the plain fields of compatible mode as before.
func TestReceiverWithoutAESKey(t *testing.T) {
	log, logged := newLog()
	rc, err := wechat.NewReceiver(oaConfig("", ""), log)
	if err != nil {
		t.Fatal(err)
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "ra"}
	enc := encrypt(t, katAESKey, appID, event("failed:user block"))
	for _, body := range []string{safeBody(enc), compatibleBody("success", enc)} {
		for _, u := range []string{encryptedURL(srvToken, "1", "2", enc), signedURL(srvToken, "1", "2", nil)} {
			s := eventSink(ref)
			w := httptest.NewRecorder()
			rc.ServeReports(w, httptest.NewRequest("POST", u, strings.NewReader(body)), s)
			if body == safeBody(enc) {
				if w.Code != 400 || s.Calls() != 0 {
					t.Errorf("safe mode, %s: %d, sink called %d times; want 400", u, w.Code, s.Calls())
				}
				continue
			}
			// Compatible mode: the plain fields are read, as in plain mode.
			if got := s.Reports(); w.Code != 200 || len(got) != 1 || got[0].State != warning.Delivered {
				t.Errorf("compatible mode, %s: %d %+v", u, w.Code, got)
			}
		}
	}
	for _, want := range []string{"set wechat.official_account.encoding_aes_key", "compatible mode (兼容模式) without encoding_aes_key"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
}

func TestReceiverAESKeyConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "aes")
	os.WriteFile(keyFile, []byte(katAESKey+"\n"), 0o600)
	shortFile := filepath.Join(dir, "short")
	os.WriteFile(shortFile, []byte(katAESKey[:40]), 0o600)
	tests := []struct {
		name string
		edit func(*wechat.OfficialAccountConfig)
		want []string // parts of the error; none for success
	}{
		{"inline", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey = katAESKey }, nil},
		{"from a file", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKeyFile = keyFile }, nil},
		{"with the =", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey = katAESKey + "=" },
			[]string{"wechat.official_account.encoding_aes_key:", `without the "="`, "服务器配置 → EncodingAESKey"}},
		{"short", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey = channels.Secret(katAESKey[:42]) },
			[]string{"wechat.official_account.encoding_aes_key:", "42 characters, want 43", "服务器配置 → EncodingAESKey"}},
		{"not Base64", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey = channels.Secret("#" + katAESKey[1:]) },
			[]string{"wechat.official_account.encoding_aes_key:", "not Base64", "服务器配置 → EncodingAESKey"}},
		{"short file", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKeyFile = shortFile },
			[]string{"wechat.official_account.encoding_aes_key_file:", "40 characters", "服务器配置 → EncodingAESKey"}},
		{"missing file", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKeyFile = filepath.Join(dir, "none") },
			[]string{"wechat.official_account.encoding_aes_key_file:"}},
		{"both", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey, c.EncodingAESKeyFile = katAESKey, keyFile },
			[]string{"encoding_aes_key and wechat.official_account.encoding_aes_key_file: give one, not both"}},
		{"no AppID", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey, c.AppID = katAESKey, "" },
			[]string{"wechat.official_account.app_id: required with encoding_aes_key"}},
		{"no token either", func(c *wechat.OfficialAccountConfig) { c.EncodingAESKey, c.Token = channels.Secret(katAESKey[:5]), "" },
			[]string{"wechat.official_account.token: required", "wechat.official_account.encoding_aes_key:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := oaConfig("", "")
			tt.edit(&c)
			_, err := wechat.NewReceiver(c, quiet())
			key, rerr := c.ResolveEncodingAESKey()
			if len(tt.want) == 0 {
				if err != nil || rerr != nil || key != katAESKey {
					t.Fatalf("err %v; resolve %q %v", err, key, rerr)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), katAESKey[:20]) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
	// Printing the configuration does not show the key.
	c := safeConfig()
	channeltest.CheckSecretsHidden(t, "official_account", &c, katAESKey)
	if key, err := oaConfig("", "").ResolveEncodingAESKey(); key != "" || err != nil {
		t.Errorf("no key configured: %q %v", key, err)
	}
}

// TestOfficialAccountSafeModeWithFake runs template sends end to end with
// the fake pushing encrypted events, in safe and in compatible mode, and
// the receiver recording delivered and failed reports.
func TestOfficialAccountSafeModeWithFake(t *testing.T) {
	for _, compatible := range []bool{false, true} {
		name := "safe mode"
		if compatible {
			name = "compatible mode"
		}
		t.Run(name, func(t *testing.T) {
			rdb, prefix := testRedis(t)
			s := &channeltest.Sink{Provider: "wechat", AwaitIndex: true}
			cfg := oaConfig("", prefix)
			cfg.EncodingAESKey = katAESKey
			log, logged := newLog()
			rc, err := wechat.NewReceiver(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			var (
				cbMu                   sync.Mutex
				encrypted, plainFields int
			)
			callback := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				cbMu.Lock()
				if r.URL.Query().Get("encrypt_type") == "aes" && bytes.Contains(body, []byte("<Encrypt>")) {
					encrypted++
				}
				if bytes.Contains(body, []byte("<MsgType>")) {
					plainFields++
				}
				cbMu.Unlock()
				r.Body = io.NopCloser(bytes.NewReader(body))
				rc.ServeReports(w, r, s)
			}))
			f, srv := startFake(t, fake.Config{
				EncodingAESKey: katAESKey, Compatible: compatible,
				Followers: []string{"oFollower0001", "oFollower0002", "oBlocker00001"}, Blocked: []string{"oBlocker00001"},
				CallbackURL: callback.URL, ReportDelay: 10 * time.Millisecond,
			})
			cfg.BaseURL = srv.URL
			oa := newOA(t, cfg, rdb, quiet())
			b := oaBatch("oFollower0001", "oBlocker00001", "oFollower0002")
			rs, _, err := oa.Notify(context.Background(), b)
			if err != nil || len(rs) != 3 {
				t.Fatalf("notify: %+v %v", rs, err)
			}
			s.Index(b, rs)
			channeltest.WaitFor(t, "three reports", func() bool { return len(s.Reports()) == 3 })
			by := s.ByRef()
			if r := by[b.Ref(0)]; r.State != warning.Delivered || r.Ref != b.Ref(0) || r.ProviderID != rs[0].ProviderID {
				t.Errorf("follower report %+v", r)
			}
			if r := by[b.Ref(1)]; r.State != warning.Failed || r.Reason != "用户拒收" {
				t.Errorf("blocker report %+v, want failed 用户拒收", r)
			}
			if r := by[b.Ref(2)]; r.State != warning.Delivered {
				t.Errorf("second follower report %+v", r)
			}
			channeltest.WaitFor(t, "the fake to count its events", func() bool { return f.EventsSent() == 3 })
			cbMu.Lock()
			defer cbMu.Unlock()
			if encrypted != 3 {
				t.Errorf("%d encrypted events, want 3", encrypted)
			}
			if wantPlain := map[bool]int{false: 0, true: 3}[compatible]; plainFields != wantPlain {
				t.Errorf("%d events with plain fields, want %d", plainFields, wantPlain)
			}
			if strings.Contains(logged.String(), "refused") {
				t.Errorf("events refused:\n%s", logged)
			}
		})
	}
}
