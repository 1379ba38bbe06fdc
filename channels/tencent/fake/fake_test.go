package fake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels/tencent/fake"
)

const (
	id  = "AKIDtest"
	key = "test-key"
)

var client = &http.Client{Timeout: 5 * time.Second}

func server(t *testing.T, mod func(*fake.Options)) (*fake.Server, *httptest.Server) {
	o := fake.Options{SecretID: id, SecretKey: key, SdkAppID: "1400000001", SignNames: []string{"昆明市应急管理局"},
		Templates: map[string]string{"100": "{1}：{2}"}, ReportDelay: time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	f := fake.NewServer(o)
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv
}

func body(phones ...string) string {
	b, _ := json.Marshal(map[string]any{"PhoneNumberSet": phones, "SmsSdkAppId": "1400000001", "TemplateId": "100",
		"SignName": "昆明市应急管理局", "TemplateParamSet": []string{"暴雨红色预警", "远离河道"}, "SessionContext": "w1/sms/0"})
	return string(b)
}

// signed builds a TC3-signed SendSms; tamper may change it afterwards.
func signed(t *testing.T, url, payload string, ts time.Time, tamper func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", "SendSms")
	req.Header.Set("X-TC-Version", "2021-01-11")
	req.Header.Set("X-TC-Region", "ap-guangzhou")
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	sig := fake.Sign("POST", "/", "", []string{"content-type", "host"},
		map[string]string{"content-type": "application/json", "host": req.URL.Host}, []byte(payload), ts.Unix(), "sms", key)
	req.Header.Set("Authorization", fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s/sms/tc3_request, SignedHeaders=content-type;host, Signature=%s",
		id, ts.UTC().Format("2006-01-02"), sig))
	if tamper != nil {
		tamper(req)
	}
	return req
}

type answer struct {
	Response struct {
		Error *struct {
			Code    string
			Message string
		}
		SendStatusSet []struct {
			SerialNo, PhoneNumber, Code, Message, SessionContext, IsoCode string
			Fee                                                           int
		}
		RequestId string
	}
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTP %d: Tencent answers errors with 200", resp.StatusCode)
	}
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestVerifiesAsTencentDoes(t *testing.T) {
	f, srv := server(t, func(o *fake.Options) { o.LimitedNumbers = []string{"13800000003"} })
	now := time.Now()
	tests := []struct {
		name string
		req  *http.Request
		code string
	}{
		{"signed", signed(t, srv.URL, body("+8613800000001", "+8613800000002"), now, nil), ""},
		{"body changed", signed(t, srv.URL, body("+8613800000001"), now, func(r *http.Request) {
			b := body("+8613800000009")
			r.Body, r.ContentLength = ioNop(b), int64(len(b))
		}), "AuthFailure.SignatureFailure"},
		{"old timestamp", signed(t, srv.URL, body("+8613800000001"), now.Add(-10*time.Minute), nil), "AuthFailure.SignatureExpire"},
		{"other secret id", signed(t, srv.URL, body("+8613800000001"), now, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), id, "AKIDother", 1))
		}), "AuthFailure.SecretIdNotFound"},
		{"no authorization", signed(t, srv.URL, body("+8613800000001"), now, func(r *http.Request) { r.Header.Del("Authorization") }),
			"AuthFailure.InvalidAuthorization"},
		{"other action", signed(t, srv.URL, body("+8613800000001"), now, func(r *http.Request) { r.Header.Set("X-TC-Action", "PullSmsSendStatus") }),
			"InvalidAction"},
		{"too many numbers", signed(t, srv.URL, body(strings.Split(strings.Repeat("+8613800000001,", 201), ",")[:201]...), now, nil),
			"LimitExceeded.PhoneNumberCountLimit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.req)
			if a.Response.RequestId == "" {
				t.Errorf("no RequestId")
			}
			got := ""
			if a.Response.Error != nil {
				got = a.Response.Error.Code
			}
			if got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
		})
	}
	a := do(t, signed(t, srv.URL, body("+8613800000001", "+86123", "+8613800000003"), now, nil))
	var codes []string
	for _, s := range a.Response.SendStatusSet {
		codes = append(codes, s.Code)
	}
	if strings.Join(codes, " ") != "Ok InvalidParameterValue.IncorrectPhoneNumber LimitExceeded.PhoneNumberDailyLimit" {
		t.Errorf("statuses %v", codes)
	}
	if s := a.Response.SendStatusSet[0]; s.SerialNo == "" || s.Fee != 1 || s.SessionContext != "w1/sms/0" || s.IsoCode != "CN" {
		t.Errorf("status %+v", s)
	}
	if m := f.Messages(); len(m) != 3 || m[0].Text != "【昆明市应急管理局】暴雨红色预警：远离河道" {
		t.Errorf("messages %+v", m)
	}
}

func ioNop(s string) *nopCloser { return &nopCloser{bytes.NewReader([]byte(s))} }

type nopCloser struct{ *bytes.Reader }

func (*nopCloser) Close() error { return nil }

func TestPushesAgainUntilTaken(t *testing.T) {
	var hits atomic.Int32
	var got []fake.Report
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			fmt.Fprint(w, `{"result":1,"errmsg":"busy"}`)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		fmt.Fprint(w, `{"result":0,"errmsg":"OK"}`)
	}))
	t.Cleanup(gw.Close)
	f, srv := server(t, func(o *fake.Options) { o.CallbackURL = gw.URL; o.FailNumbers = []string{"13800000002"} })
	do(t, signed(t, srv.URL, body("+8613800000001", "+8613800000002"), time.Now(), nil))
	deadline := time.Now().Add(5 * time.Second)
	for f.Pushed() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d after %d tries", f.Pushed(), hits.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(got) != 2 || got[0].ReportStatus != "SUCCESS" || got[1].ReportStatus != "FAIL" || got[1].Mobile != "13800000002" || got[0].SID == "" {
		t.Errorf("pushed %+v", got)
	}
	if err := f.PushTo(context.Background(), gw.URL, got[:1]); err != nil {
		t.Errorf("push by hand: %v", err)
	}
}
