package fake_test

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"warngate/channels/wechat/fake"
)

const testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func TestNewCrypter(t *testing.T) {
	for key, want := range map[string]string{
		testAESKey:           "",
		testAESKey + "=":     "44 characters",
		testAESKey[:42]:      "42 characters",
		"*" + testAESKey[1:]: "not the Base64",
	} {
		_, err := fake.NewCrypter(key, "wxA")
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: err %v, want %q", key, err, want)
		}
	}
	f := fake.New(fake.Config{AppID: "wxA"}, http.DefaultClient, quiet())
	defer f.Close()
	if err := f.SetEncodingAESKey("short"); err == nil {
		t.Error("SetEncodingAESKey took a bad key")
	}
}

// pushed is one event as the callback saw it.
type pushed struct {
	query url.Values
	body  string
	plain string // decrypted, or the body when plain
}

// TestEventPushEncrypted: with an EncodingAESKey the fake encrypts events
// and signs them with msg_signature as WeChat does (checked with the SDK's
// implementation), in safe and in compatible mode; without one, or after
// SetEncodingAESKey(""), they are plain.
func TestEventPushEncrypted(t *testing.T) {
	tests := []struct {
		name       string
		key        string // in Config
		set        *string
		compatible bool
		encrypted  bool
	}{
		{name: "safe mode", key: testAESKey, encrypted: true},
		{name: "compatible mode", key: testAESKey, compatible: true, encrypted: true},
		{name: "key set after start", set: ptr(testAESKey), encrypted: true},
		{name: "key removed", key: testAESKey, set: ptr("")},
		{name: "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []pushed
			cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				p := pushed{query: r.URL.Query(), body: string(b), plain: string(b)}
				if p.query.Get("encrypt_type") == "aes" {
					var env struct {
						Encrypt string `xml:"Encrypt"`
					}
					xml.Unmarshal(b, &env)
					q := p.query
					if q.Get("msg_signature") != util.Signature("tok123", q.Get("timestamp"), q.Get("nonce"), env.Encrypt) {
						w.WriteHeader(403)
						return
					}
					_, plain, err := util.DecryptMsg("wxA", env.Encrypt, testAESKey)
					if err != nil {
						t.Errorf("SDK cannot decrypt: %v", err)
						w.WriteHeader(400)
						return
					}
					p.plain = string(plain)
				}
				mu.Lock()
				got = append(got, p)
				mu.Unlock()
				io.WriteString(w, "success")
			}))
			defer cb.Close()
			f := fake.New(fake.Config{AppID: "wxA", AppSecret: "S", Token: "tok123", EncodingAESKey: tt.key, Compatible: tt.compatible,
				CallbackURL: cb.URL, ReportDelay: time.Millisecond}, cb.Client(), quiet())
			defer f.Close()
			if tt.set != nil {
				if err := f.SetEncodingAESKey(*tt.set); err != nil {
					t.Fatal(err)
				}
			}
			tok := call(t, f, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=S", "")["access_token"].(string)
			call(t, f, "POST", "/cgi-bin/message/template/send?access_token="+tok, `{"touser":"oFollower1","template_id":"T","data":{"a":{"value":"x"}}}`)
			deadline := time.Now().Add(5 * time.Second)
			for f.EventsSent() < 1 {
				if time.Now().After(deadline) {
					t.Fatal("event not pushed")
				}
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			p := got[0]
			if p.query.Get("signature") != fake.Sign("tok123", p.query.Get("timestamp"), p.query.Get("nonce")) {
				t.Error("no plain signature")
			}
			if enc := p.query.Get("encrypt_type") == "aes"; enc != tt.encrypted {
				t.Fatalf("encrypt_type %q", p.query.Get("encrypt_type"))
			}
			var ev struct {
				MsgType string `xml:"MsgType"`
				Event   string `xml:"Event"`
				MsgID   int64  `xml:"MsgID"`
				Status  string `xml:"Status"`
			}
			if err := xml.Unmarshal([]byte(p.plain), &ev); err != nil || ev.Event != "TEMPLATESENDJOBFINISH" || ev.Status != "success" || ev.MsgID == 0 {
				t.Errorf("event %+v (%v): %s", ev, err, p.plain)
			}
			hasEncrypt := strings.Contains(p.body, "<Encrypt>")
			hasPlain := strings.Contains(p.body, "<MsgType>")
			if hasEncrypt != tt.encrypted || hasPlain != (!tt.encrypted || tt.compatible) {
				t.Errorf("body: %s", p.body)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
