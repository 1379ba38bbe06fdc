package fake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"warngate/channels/internal/tcfake"
	"warngate/channels/tencentvoice/fake"
)

const (
	id  = "AKIDvoice"
	key = "voice-key"
)

func body(number, template string, params ...string) string {
	b, _ := json.Marshal(map[string]any{"TemplateId": template, "CalledNumber": number, "VoiceSdkAppid": "1400000001",
		"TemplateParamSet": params, "PlayTimes": 2, "SessionContext": "0123456789ab"})
	return string(b)
}

// signed builds a TC3-signed request of action for service; tamper may
// change it afterwards.
func signed(t *testing.T, url, action, service, payload string, ts time.Time, tamper func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", action)
	req.Header.Set("X-TC-Version", "2020-09-02")
	req.Header.Set("X-TC-Region", "ap-guangzhou")
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	sig := tcfake.Sign("POST", "/", "", []string{"content-type", "host"},
		map[string]string{"content-type": "application/json", "host": req.URL.Host}, []byte(payload), ts.Unix(), service, key)
	req.Header.Set("Authorization", fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s/%s/tc3_request, SignedHeaders=content-type;host, Signature=%s",
		id, ts.UTC().Format("2006-01-02"), service, sig))
	if tamper != nil {
		tamper(req)
	}
	return req
}

func TestAnswersAsTencentDoes(t *testing.T) {
	f := fake.NewServer(fake.Options{SecretID: id, SecretKey: key, SdkAppID: "1400000001",
		Templates: map[string]string{"100001": "{1}确认收到请按1"}})
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	now := time.Now()
	ok := body("+8613800000001", "100001", "暴雨红色预警")
	tests := []struct {
		name, code string
		req        *http.Request
	}{
		{"placed", "", signed(t, srv.URL, "SendTtsVoice", "vms", ok, now, nil)},
		{"signed for sms", "AuthFailure.SignatureFailure", signed(t, srv.URL, "SendTtsVoice", "sms", ok, now, nil)},
		{"body changed", "AuthFailure.SignatureFailure", signed(t, srv.URL, "SendTtsVoice", "vms", ok, now, func(r *http.Request) {
			r.Body = http.NoBody
		})},
		{"old", "AuthFailure.SignatureExpire", signed(t, srv.URL, "SendTtsVoice", "vms", ok, now.Add(-time.Hour), nil)},
		{"other action", "InvalidAction", signed(t, srv.URL, "SendCodeVoice", "vms", ok, now, nil)},
		{"other app", "UnauthorizedOperation.VoiceSdkAppidVerifyFail", signed(t, srv.URL, "SendTtsVoice", "vms",
			strings.Replace(ok, "1400000001", "1400000002", 1), now, nil)},
		{"unknown template", "FailedOperation.TemplateIncorrectOrUnapproved", signed(t, srv.URL, "SendTtsVoice", "vms", body("+8613800000001", "9", "x"), now, nil)},
		{"missing parameter", "FailedOperation.TemplateIncorrectOrUnapproved", signed(t, srv.URL, "SendTtsVoice", "vms", body("+8613800000001", "100001"), now, nil)},
		{"without +86", "InvalidParameterValue.CalledNumberVerifyFail", signed(t, srv.URL, "SendTtsVoice", "vms", body("13800000001", "100001", "x"), now, nil)},
		{"too long", "InvalidParameterValue.ContentLengthLimit", signed(t, srv.URL, "SendTtsVoice", "vms",
			body("+8613800000001", "100001", strings.Repeat("雨", 350)), now, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans struct {
				Response struct {
					Error      *struct{ Code, Message string }
					SendStatus *struct{ CallId, SessionContext string }
					RequestId  string
				}
			}
			json.NewDecoder(resp.Body).Decode(&ans)
			code := ""
			if ans.Response.Error != nil {
				code = ans.Response.Error.Code
			}
			if resp.StatusCode != 200 || code != tt.code || ans.Response.RequestId == "" ||
				(code == "") != (ans.Response.SendStatus != nil && ans.Response.SendStatus.CallId != "" && ans.Response.SendStatus.SessionContext == "0123456789ab") {
				t.Errorf("answer %d %+v, want %q", resp.StatusCode, ans.Response, tt.code)
			}
		})
	}
	if c := f.Calls(); len(c) != 1 || c[0].Text != "暴雨红色预警确认收到请按1" || c[0].Number != "13800000001" {
		t.Errorf("calls %+v", c)
	}
}
