package wechat

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncBytes(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcdef", 5, "ab…"},
		{"暴雨暴雨", 9, "暴雨…"},
		{"暴雨暴雨", 10, "暴雨…"},
		{"a&amp;b&lt;c", 9, "a&amp;…"},
		{"ab&amp;cdef", 8, "ab…"},
	}
	for _, tt := range tests {
		got := truncBytes(tt.in, tt.n)
		if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
			t.Errorf("truncBytes(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	r := &redactor{}
	r.add("topsecret")
	got := r.clean(`Get "http://x/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=abc": dial; access_token=XYZ&x=1 corpsecret=Q topsecret`)
	for _, bad := range []string{"abc", "XYZ", "=Q", "topsecret"} {
		if strings.Contains(got, bad) {
			t.Errorf("%q left in %s", bad, got)
		}
	}
	if !strings.Contains(got, "appid=wx1") {
		t.Errorf("over-redacted: %s", got)
	}
}

func TestRewriteHost(t *testing.T) {
	base := "http://127.0.0.1:9"
	sdkBase.Store(&base)
	defer sdkBase.Store(nil)
	for in, want := range map[string]string{
		"https://api.weixin.qq.com/cgi-bin/token?x=1":  "http://127.0.0.1:9/cgi-bin/token?x=1",
		"https://qyapi.weixin.qq.com/cgi-bin/gettoken": "http://127.0.0.1:9/cgi-bin/gettoken",
		"https://example.com/a":                        "https://example.com/a",
	} {
		if got := rewriteHost(in); got != want {
			t.Errorf("rewriteHost(%s) = %s", in, got)
		}
	}
}
