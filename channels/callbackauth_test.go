package channels_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"warngate/channels"
)

func TestCallbackAuth(t *testing.T) {
	if _, errs := channels.NewCallbackAuth("aliyun", "", nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), "aliyun.callback_token: required") {
		t.Fatalf("neither token nor allow-list: %v", errs)
	}
	if _, errs := channels.NewCallbackAuth("aliyun", "short", []string{"nonsense"}); len(errs) != 2 {
		t.Fatalf("short token and bad address: %v", errs)
	}
	a, errs := channels.NewCallbackAuth("aliyun", "0123456789abcdef", []string{"10.1.0.0/16", "192.0.2.7"})
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
