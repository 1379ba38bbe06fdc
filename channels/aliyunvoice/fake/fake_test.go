package fake_test

import (
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

	"warngate/channels/aliyunvoice/fake"
	"warngate/channels/internal/acsfake"
)

const (
	keyID  = "LTAI-voice"
	secret = "voice-secret"
)

func server(t *testing.T) (*fake.Server, *httptest.Server) {
	f := fake.NewServer(fake.Options{AccessKeyID: keyID, AccessKeySecret: secret, ShowNumbers: []string{"057112345678"},
		Templates: map[string]string{"TTS_1": "${text}确认收到请按1", "TTS_2": "谢谢"}})
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv
}

var nonces atomic.Int64

// signed builds a signed request of action; tamper may change it after signing.
func signed(t *testing.T, base, action string, q url.Values, date time.Time, tamper func(*http.Request)) *http.Request {
	t.Helper()
	enc := strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(q.Encode())
	req, err := http.NewRequest(http.MethodPost, base+"/?"+enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	h := map[string]string{"host": req.URL.Host, "x-acs-action": action, "x-acs-version": "2017-05-25",
		"x-acs-date": date.UTC().Format("2006-01-02T15:04:05Z"), "x-acs-signature-nonce": fmt.Sprint("n", nonces.Add(1)),
		"x-acs-content-sha256": hex.EncodeToString(sum[:])}
	var names []string
	for k, v := range h {
		if k != "host" {
			req.Header.Set(k, v)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	sig := acsfake.Sign("POST", "/", req.URL.Query(), h, nil, secret)
	req.Header.Set("Authorization", "ACS3-HMAC-SHA256 Credential="+keyID+",SignedHeaders="+strings.Join(names, ";")+",Signature="+sig)
	if tamper != nil {
		tamper(req)
	}
	return req
}

func ivr(number string, change func(url.Values)) url.Values {
	q := url.Values{"CalledShowNumber": {"057112345678"}, "CalledNumber": {number}, "StartCode": {"TTS_1"},
		"StartTtsParams": {`{"text":"暴雨红色预警"}`}, "PlayTimes": {"2"}, "Timeout": {"8000"}, "OutId": {"0123456789ab"},
		"MenuKeyMap.1.Key": {"1"}, "MenuKeyMap.1.Code": {"TTS_2"}}
	if change != nil {
		change(q)
	}
	return q
}

func TestAnswersAsAlibabaDoes(t *testing.T) {
	f, srv := server(t)
	now := time.Now()
	tests := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"ivr call", signed(t, srv.URL, "IvrCall", ivr("13800000001", nil), now, nil), 200, "OK"},
		{"single call", signed(t, srv.URL, "SingleCallByTts", url.Values{"CalledShowNumber": {"057112345678"}, "CalledNumber": {"13800000001"},
			"TtsCode": {"TTS_1"}, "TtsParam": {`{"text":"解除"}`}}, now, nil), 200, "OK"},
		{"query changed after signing", signed(t, srv.URL, "IvrCall", ivr("13800000001", nil), now, func(r *http.Request) {
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "13800000001", "13800000002", 1)
		}), 400, "SignatureDoesNotMatch"},
		{"other key", signed(t, srv.URL, "IvrCall", ivr("13800000001", nil), now, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), keyID, "LTAI-other", 1))
		}), 404, "InvalidAccessKeyId.NotFound"},
		{"old date", signed(t, srv.URL, "IvrCall", ivr("13800000001", nil), now.Add(-time.Hour), nil), 400, "InvalidTimeStamp.Expired"},
		{"unknown action", signed(t, srv.URL, "SingleCallByVoice", ivr("13800000001", nil), now, nil), 404, "InvalidAction.NotFound"},
		{"not our number shown", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Set("CalledShowNumber", "01012345678") }), now, nil), 200, "isv.DISPLAY_NUMBER_ILLEGAL"},
		{"bad number", signed(t, srv.URL, "IvrCall", ivr("1234", nil), now, nil), 200, "isv.MOBILE_NUMBER_ILLEGAL"},
		{"unknown template", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Set("StartCode", "TTS_9") }), now, nil), 200, "isv.TTS_TEMPLATE_ILLEGAL"},
		{"missing variable", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Set("StartTtsParams", `{}`) }), now, nil), 200, "isv.TEMPLATE_MISSING_PARAMETERS"},
		{"no menu", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Del("MenuKeyMap.1.Key") }), now, nil), 200, "isv.INVALID_PARAMETERS"},
		{"long out id", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Set("OutId", "w1/voice/p0001-x") }), now, nil), 200, "isv.INVALID_PARAMETERS"},
		{"four plays", signed(t, srv.URL, "IvrCall", ivr("13800000001", func(q url.Values) { q.Set("PlayTimes", "4") }), now, nil), 200, "isv.INVALID_PARAMETERS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans map[string]string
			json.NewDecoder(resp.Body).Decode(&ans)
			if resp.StatusCode != tt.status || ans["Code"] != tt.code || ans["RequestId"] == "" || (tt.code == "OK") != (ans["CallId"] != "") {
				t.Errorf("answer %d %v, want %d %s", resp.StatusCode, ans, tt.status, tt.code)
			}
		})
	}
	calls := f.Calls()
	if len(calls) != 2 || calls[0].Text != "暴雨红色预警确认收到请按1" || calls[0].Menu["1"] != "TTS_2" || calls[1].Action != "SingleCallByTts" {
		t.Errorf("calls %+v", calls)
	}
	// A nonce used twice is refused.
	req := signed(t, srv.URL, "IvrCall", ivr("13800000001", nil), now, nil)
	again := req.Clone(req.Context())
	http.DefaultClient.Do(req)
	resp, _ := http.DefaultClient.Do(again)
	var ans map[string]string
	json.NewDecoder(resp.Body).Decode(&ans)
	if ans["Code"] != "SignatureNonceUsed" {
		t.Errorf("nonce used twice: %v", ans)
	}
}
