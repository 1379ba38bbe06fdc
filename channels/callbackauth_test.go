package channels_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warngate/channels"
)

func TestCallbackAuth(t *testing.T) {
	if _, errs := channels.NewCallbackAuth("aliyun", "", "", nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), "aliyun.callback_token: required") {
		t.Fatalf("neither token nor allow-list: %v", errs)
	}
	if _, errs := channels.NewCallbackAuth("aliyun", "short", "", []string{"nonsense"}); len(errs) != 2 {
		t.Fatalf("short token and bad address: %v", errs)
	}
	a, errs := channels.NewCallbackAuth("aliyun", "0123456789abcdef", "", []string{"10.1.0.0/16", "192.0.2.7"})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		url, from string
		ok        bool
	}{
		{"/cb?token=0123456789abcdef", "10.1.2.3:5000", true},
		{"/cb?token=0123456789abcdef", "192.0.2.7:5000", true},
		{"/cb?token=0123456789abcdef", "10.2.0.1:5000", false},
		{"/cb?token=wrong", "10.1.2.3:5000", false},
		{"/cb", "10.1.2.3:5000", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", tt.url, nil)
		r.RemoteAddr = tt.from
		if got := a.Allow(r); got != tt.ok {
			t.Errorf("%s from %s: %v, want %v", tt.url, tt.from, got, tt.ok)
		}
	}
}

func TestCallbackAuthTokenSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WG_TEST_CALLBACK_TOKEN", "fedcba9876543210")
	for name, tt := range map[string]struct {
		token channels.Secret
		file  string
		want  string
	}{
		"file":        {file: file, want: "0123456789abcdef"},
		"environment": {token: "${WG_TEST_CALLBACK_TOKEN}", want: "fedcba9876543210"},
	} {
		a, errs := channels.NewCallbackAuth("tencent", tt.token, tt.file, nil)
		if len(errs) != 0 {
			t.Fatalf("%s: %v", name, errs)
		}
		if !a.Allow(httptest.NewRequest("POST", "/cb?token="+tt.want, nil)) || a.Allow(httptest.NewRequest("POST", "/cb?token=other", nil)) {
			t.Errorf("%s: the resolved token is not the one checked", name)
		}
	}
	// A bad token source is reported with the allow-list's problems, and
	// not also as a missing token.
	_, errs := channels.NewCallbackAuth("tencent", "x", file, []string{"nonsense"})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "tencent.callback_token and tencent.callback_token_file: give one, not both") ||
		!strings.Contains(errs[1].Error(), "tencent.callback_allow_from") {
		t.Errorf("both token settings and a bad address: %v", errs)
	}
	if _, errs := channels.NewCallbackAuth("tencent", "", "", []string{"10.0.0.0/8"}); len(errs) != 0 {
		t.Errorf("allow-list without a token: %v", errs)
	}
}
