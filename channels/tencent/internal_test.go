package tencent

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"warngate/channels"
)

func TestRetryable(t *testing.T) {
	for code, want := range map[string]bool{
		"RequestLimitExceeded": true, "RequestLimitExceeded.UinLimitExceeded": true, "InternalError.Timeout": true,
		"InternalError": true, "FailedOperation.InsufficientBalanceInSmsPackage": true,
		"AuthFailure.SecretIdNotFound": false, "AuthFailure.SignatureFailure": false, "UnauthorizedOperation.SmsSdkAppIdVerifyFail": false,
		"FailedOperation.TemplateIncorrectOrUnapproved": false, "FailedOperation.SignatureIncorrectOrUnapproved": false,
		"InvalidParameterValue.IncorrectPhoneNumber": false, "LimitExceeded.PhoneNumberDailyLimit": false, "Something.New": false,
	} {
		if got := retryable(code); got != want {
			t.Errorf("retryable(%s) = %v, want %v", code, got, want)
		}
	}
}

func TestTemplateRender(t *testing.T) {
	msg := channels.Text{Title: "【演练】五华区暴雨红色预警", Body: "预计有大暴雨。", Instruction: "远离河道。", Level: "暴雨红色预警（Ⅰ级/特别严重）"}
	tests := []struct {
		name     string
		text     string
		params   []string
		maxChars int
		maxParam int
		body     string
		want     []string
		wantText string
	}{
		{name: "default", text: DefaultTemplate, params: DefaultTemplateParams(), maxChars: 500,
			want: []string{"【演练】五华区暴雨红色预警", "预计有大暴雨。 防御指引：远离河道。"}, wantText: "【昆明市应急管理局】【演练】五华区暴雨红色预警：预计有大暴雨。 防御指引：远离河道。"},
		{name: "repeated and reordered", text: "{2}！{1}，{2}", params: []string{"title", "level"}, maxChars: 500,
			want: []string{"【演练】五华区暴雨红色预警", "暴雨红色预警（Ⅰ级/特别严重）"}},
		{name: "per-parameter limit", text: "{1}：{2}", params: []string{"title", "body"}, maxChars: 500, maxParam: 6,
			want: []string{"【演练】五…", "预计有大暴…"}},
		{name: "whole limit", text: "{1}：{2}", params: []string{"title", "body"}, maxChars: 70, body: strings.Repeat("雨", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, errs := newTemplate(tt.text, tt.params, "昆明市应急管理局", tt.maxChars, tt.maxParam)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			m := msg
			if tt.body != "" {
				m.Body = tt.body
			}
			vals, full := tp.render(m)
			if tt.want != nil && fmt.Sprint(vals) != fmt.Sprint(tt.want) {
				t.Errorf("values %q, want %q", vals, tt.want)
			}
			if tt.wantText != "" && full != tt.wantText {
				t.Errorf("text %s, want %s", full, tt.wantText)
			}
			if n := utf8.RuneCountInString(full); n > tt.maxChars || (tt.body != "" && n != tt.maxChars) {
				t.Errorf("text has %d characters (limit %d): %s", n, tt.maxChars, full)
			}
		})
	}
}
