package aliyun

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"warngate/channels"
	"warngate/channels/aliyun/fake"
)

// The worked example of Alibaba Cloud's "V3 request body and signature
// mechanism" page (ROA-style edition), secret YourAccessKeySecret.
func TestSignMatchesAlibabasExample(t *testing.T) {
	q := url.Values{"ImageId": {"win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"}, "RegionId": {"cn-shanghai"}}
	req, _ := http.NewRequest(http.MethodPost, "https://ecs.cn-shanghai.aliyuncs.com/?"+CanonicalQuery(q), nil)
	req.Header.Set("x-acs-action", "RunInstances")
	req.Header.Set("x-acs-version", "2014-05-26")
	req.Header.Set("x-acs-date", "2023-10-26T09:01:01Z")
	req.Header.Set("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0")
	req.Header.Set("x-acs-content-sha256", hashHex(nil))
	signRequest(req, "YourAccessKeyId", "YourAccessKeySecret")
	want := "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization\n got %s\nwant %s", got, want)
	}
	// The fake's independent signer agrees.
	h := map[string]string{"host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances", "x-acs-version": "2014-05-26",
		"x-acs-date": "2023-10-26T09:01:01Z", "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0", "x-acs-content-sha256": hashHex(nil)}
	if got := fake.Sign("POST", "/", q, h, nil, "YourAccessKeySecret"); !strings.HasSuffix(want, got) {
		t.Errorf("fake.Sign = %s", got)
	}
}

func TestCanonicalQueryEncodesLikeAlibaba(t *testing.T) {
	q := url.Values{"b": {"a b*c~d"}, "TemplateParam": {`{"title":"暴雨"}`}, "A": {"1,2"}}
	want := "A=1%2C2&TemplateParam=%7B%22title%22%3A%22%E6%9A%B4%E9%9B%A8%22%7D&b=a%20b%2Ac~d"
	if got := CanonicalQuery(q); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   bool
	}{
		{200, "isv.BUSINESS_LIMIT_CONTROL", true},
		{400, "Throttling.User", true},
		{200, "isp.SYSTEM_ERROR", true},
		{503, "ServiceUnavailable", true},
		{200, "isp.SOMETHING_NEW", true},
		{502, "(none)", true},
		{429, "(none)", true},
		{200, "isv.MOBILE_NUMBER_ILLEGAL", false},
		{200, "isv.SMS_TEMPLATE_ILLEGAL", false},
		{200, "isv.SMS_SIGNATURE_ILLEGAL", false},
		{200, "isv.INVALID_PARAMETERS", false},
		{400, "SignatureDoesNotMatch", false},
		{404, "InvalidAccessKeyId.NotFound", false},
		{200, "isv.SOMETHING_NEW", false},
		{403, "(none)", false},
	}
	for _, tt := range tests {
		if got := retryable(tt.status, tt.code); got != tt.want {
			t.Errorf("retryable(%d, %s) = %v, want %v", tt.status, tt.code, got, tt.want)
		}
	}
}

func TestTemplateRenderFitsTheLimits(t *testing.T) {
	msg := channels.Text{
		Title: "【演练】五华区暴雨红色预警", Body: strings.Repeat("雨", 600), Instruction: "远离河道。",
		Level: "暴雨红色预警（Ⅰ级/特别严重）", AckURL: "https://k.example/a/1",
	}
	tests := []struct {
		name     string
		text     string
		params   map[string]string
		maxChars int
		maxParam int
		want     map[string]string
		wantLen  int
	}{
		{
			name: "short fits as it is", text: "${title}：${content}", params: DefaultTemplateParams(), maxChars: 500,
			want: map[string]string{"title": "【演练】五华区暴雨红色预警", "content": "雨雨雨 防御指引：远离河道。"},
		},
		{
			name: "long content is cut to the whole limit", text: "${title}：${content}", params: DefaultTemplateParams(), maxChars: 500,
			wantLen: 500,
		},
		{
			name: "per-variable limit", text: "${t}，${l}：${c}", params: map[string]string{"t": "title", "l": "level", "c": "body"}, maxChars: 500, maxParam: 10,
			want: map[string]string{"t": "【演练】五华区暴雨…", "l": "暴雨红色预警（Ⅰ级…", "c": "雨雨雨"},
		},
		{
			name: "ack link", text: "${title}，请确认：${url}", params: map[string]string{"title": "title", "url": "ack_url"}, maxChars: 500,
			want: map[string]string{"title": "【演练】五华区暴雨红色预警", "url": "https://k.example/a/1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, errs := newTemplate(tt.text, tt.params, "昆明市应急管理局", tt.maxChars, tt.maxParam)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			m := msg
			if tt.wantLen == 0 {
				m.Body = "雨雨雨"
			}
			vals, full := tp.render(m)
			if tt.want != nil && fmt.Sprint(vals) != fmt.Sprint(tt.want) {
				t.Errorf("values %v, want %v", vals, tt.want)
			}
			if !strings.HasPrefix(full, "【昆明市应急管理局】") {
				t.Errorf("text without signature: %s", full)
			}
			if n := utf8.RuneCountInString(full); n > tt.maxChars || (tt.wantLen > 0 && n != tt.wantLen) {
				t.Errorf("text has %d characters, want %d (limit %d)", n, tt.wantLen, tt.maxChars)
			}
		})
	}
}

func TestTemplateChecksItsVariables(t *testing.T) {
	_, errs := newTemplate("${title}：${body}", map[string]string{"title": "headline", "extra": "body"}, "x", 500, 0)
	want := []string{
		`aliyun.template_params.extra: the template has no ${extra}: remove it or correct aliyun.template`,
		`aliyun.template_params.title: unknown field "headline": use one of title, level, body, instruction, content, text, ack_url`,
		`aliyun.template_params: the template's ${body} is not filled: add body: <field> (one of title, level, body, instruction, content, text, ack_url)`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	// map order varies among the first two
	if len(got) != 3 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) || got[2] != want[2] {
		t.Errorf("got\n%s", strings.Join(got, "\n"))
	}
}
