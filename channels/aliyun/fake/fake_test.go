package fake_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels/aliyun/fake"
)

const (
	keyID  = "LTAI-test"
	secret = "test-secret"
)

func server(t *testing.T, mod func(*fake.Options)) (*fake.Server, *httptest.Server) {
	o := fake.Options{AccessKeyID: keyID, AccessKeySecret: secret, SignNames: []string{"昆明市应急管理局"},
		Templates: map[string]string{"SMS_1": "${title}：${content}"}, ReportDelay: time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	f := fake.NewServer(o)
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv
}

// signed builds a signed SendSms request; tamper may change it after signing.
func signed(t *testing.T, base string, q url.Values, body string, nonce string, date time.Time, tamper func(*http.Request)) *http.Request {
	t.Helper()
	enc := strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(q.Encode())
	req, err := http.NewRequest(http.MethodPost, base+"/?"+enc, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	h := map[string]string{
		"host": req.URL.Host, "x-acs-action": "SendSms", "x-acs-version": "2017-05-25",
		"x-acs-date": date.UTC().Format("2006-01-02T15:04:05Z"), "x-acs-signature-nonce": nonce,
		"x-acs-content-sha256": hex.EncodeToString(sum[:]),
	}
	if body != "" {
		h["content-type"] = "application/x-www-form-urlencoded"
	}
	names := []string{}
	for k, v := range h {
		if k != "host" {
			req.Header.Set(k, v)
		}
		names = append(names, k)
	}
	sig := fake.Sign("POST", "/", req.URL.Query(), h, []byte(body), secret)
	sort.Strings(names)
	req.Header.Set("Authorization", "ACS3-HMAC-SHA256 Credential="+keyID+",SignedHeaders="+strings.Join(names, ";")+",Signature="+sig)
	if tamper != nil {
		tamper(req)
	}
	return req
}

var client = &http.Client{Timeout: 5 * time.Second}

var nonces atomic.Int64

func nonce() string { return fmt.Sprintf("nonce-%d", nonces.Add(1)) }

func do(t *testing.T, req *http.Request) (int, map[string]string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func params(phones string) url.Values {
	return url.Values{"PhoneNumbers": {phones}, "SignName": {"昆明市应急管理局"}, "TemplateCode": {"SMS_1"},
		"TemplateParam": {`{"title":"暴雨红色预警","content":"远离河道 注意安全"}`}, "OutId": {"w1/sms/0"}}
}

func TestVerifiesAsAlibabaDoes(t *testing.T) {
	f, srv := server(t, nil)
	now := time.Now()
	reused := nonce()
	tests := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"signed", signed(t, srv.URL, params("13800000001,13800000002"), "", reused, now, nil), 200, "OK"},
		{"params in a form body", signed(t, srv.URL, url.Values{}, params("13800000001").Encode(), nonce(), now, nil), 200, "OK"},
		{"nonce used again", signed(t, srv.URL, params("13800000001"), "", reused, now, nil), 400, "SignatureNonceUsed"},
		{"query changed after signing", signed(t, srv.URL, params("13800000001"), "", nonce(), now, func(r *http.Request) {
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "13800000001", "13800000009", 1)
		}), 400, "SignatureDoesNotMatch"},
		{"body changed after signing", signed(t, srv.URL, url.Values{}, params("13800000001").Encode(), nonce(), now, func(r *http.Request) {
			r.Body = http.NoBody
			r.ContentLength = 0
		}), 400, "SignatureDoesNotMatch"},
		{"unsigned x-acs header", signed(t, srv.URL, params("13800000001"), "", nonce(), now, func(r *http.Request) {
			r.Header.Set("x-acs-security-token", "sneaky")
		}), 400, "IncompleteSignature"},
		{"old date", signed(t, srv.URL, params("13800000001"), "", nonce(), now.Add(-20*time.Minute), nil), 400, "InvalidTimeStamp.Expired"},
		{"no authorization", signed(t, srv.URL, params("13800000001"), "", nonce(), now, func(r *http.Request) {
			r.Header.Del("Authorization")
		}), 400, "IncompleteSignature"},
		{"other key", signed(t, srv.URL, params("13800000001"), "", nonce(), now, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), keyID, "LTAI-other", 1))
		}), 404, "InvalidAccessKeyId.NotFound"},
		{"missing numbers", signed(t, srv.URL, url.Values{"SignName": {"昆明市应急管理局"}, "TemplateCode": {"SMS_1"}}, "", nonce(), now, nil), 400, "MissingPhoneNumbers"},
		{"too many numbers", signed(t, srv.URL, params(strings.TrimSuffix(strings.Repeat("13800000001,", 1001), ",")), "", nonce(), now, nil), 200, "isv.MOBILE_COUNT_OVER_LIMIT"},
		{"bad number", signed(t, srv.URL, params("13800000001,1234"), "", nonce(), now, nil), 200, "isv.MOBILE_NUMBER_ILLEGAL"},
		{"non-string param", signed(t, srv.URL, func() url.Values {
			p := params("13800000001")
			p.Set("TemplateParam", `{"title":1,"content":"x"}`)
			return p
		}(), "", nonce(), now, nil), 200, "isv.INVALID_JSON_PARAM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ans := do(t, tt.req)
			if status != tt.status || ans["Code"] != tt.code || ans["RequestId"] == "" {
				t.Errorf("answer %d %v, want %d %s", status, ans, tt.status, tt.code)
			}
			if tt.code == "OK" && (ans["BizId"] == "" || ans["Message"] != "OK") {
				t.Errorf("answer %v", ans)
			}
		})
	}
	if m := f.Messages(); len(m) != 3 || m[0].Text != "【昆明市应急管理局】暴雨红色预警：远离河道 注意安全" {
		t.Errorf("messages %+v", m)
	}
}

func TestPushesAgainUntilTaken(t *testing.T) {
	var hits atomic.Int32
	var got []fake.Report
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"code":1,"msg":"busy"}`)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		fmt.Fprint(w, `{"code":0,"msg":"成功"}`)
	}))
	t.Cleanup(gw.Close)
	f, srv := server(t, func(o *fake.Options) { o.CallbackURL = gw.URL; o.FailNumbers = []string{"13800000002"} })
	if status, ans := do(t, signed(t, srv.URL, params("13800000001,13800000002"), "", nonce(), time.Now(), nil)); status != 200 {
		t.Fatalf("answer %v", ans)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Pushed() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d after %d tries", f.Pushed(), hits.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(got) != 2 || !got[0].Success || got[1].Success || got[1].ErrCode != fake.FailCode || got[0].BizID == "" || got[0].OutID != "w1/sms/0" {
		t.Errorf("pushed %+v", got)
	}
	if err := f.PushTo(context.Background(), gw.URL, got[:1]); err != nil {
		t.Errorf("push by hand: %v", err)
	}
}
