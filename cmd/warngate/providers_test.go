package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"warngate/channels"
	"warngate/channels/aliyun"
	"warngate/channels/kannel"
	"warngate/config"
	"warngate/internal/channeltest"
)

// Two accounts of one provider, each with its own callback token or key,
// share the provider's callback path: a push is served by the account whose
// token or key it carries. Before, the first account's receiver took every
// push and refused the second's (403), losing all its delivery reports; two
// Kannel accounts registered the reply path twice, which stops the server
// at start.
func TestAccountsOfOneProviderShareItsCallbackPath(t *testing.T) {
	ali := func(name, token string) config.Provider {
		return config.Provider{Name: name, Channel: "sms", Type: "aliyun", Aliyun: &aliyun.Config{AccessKeyID: "LTAI5t" + name,
			AccessKeySecret: "secret-0123456789abcdef", SignName: "昆明市应急管理局", TemplateCode: "SMS_123456789",
			CallbackToken: channels.Secret(token)}}
	}
	kan := func(name, key string) config.Provider {
		return config.Provider{Name: name, Channel: "sms", Type: "kannel", Kannel: &kannel.Config{SendSMSURL: "http://127.0.0.1:13013/cgi-bin/sendsms",
			Username: "warngate", Password: "kannel-password", Signature: "昆明市应急管理局", DLRURL: "http://gw.example/callbacks/kannel", CallbackKey: channels.Secret(key)}}
	}
	cfg := &config.Config{Providers: []config.Provider{
		ali("ali-a", "token-aaaaaaaaaaaaaaaa"), kan("kannel-a", "key-aaaaaaaaaaaaaaaa"),
		ali("ali-b", "token-bbbbbbbbbbbbbbbb"), kan("kannel-b", "key-bbbbbbbbbbbbbbbb"),
	}}
	p, err := buildProviders(cfg, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	receivers := map[string]channels.ReportReceiver{}
	for _, rc := range p.receivers {
		if receivers[rc.Name()] != nil {
			t.Fatalf("two receivers at /callbacks/%s", rc.Name())
		}
		receivers[rc.Name()] = rc
	}
	if len(p.replies) != 1 {
		t.Fatalf("%d reply receivers for two Kannel accounts, want one at /callbacks/kannel/mo", len(p.replies))
	}

	push := func(name, query, body string) int {
		w := httptest.NewRecorder()
		method := http.MethodPost
		if name == "kannel" {
			method = http.MethodGet
		}
		receivers[name].ServeReports(w, httptest.NewRequest(method, "/callbacks/"+name+"?"+query, strings.NewReader(body)), &channeltest.Sink{Provider: name})
		return w.Code
	}
	for _, tc := range []struct {
		name, query, body string
		want              int
	}{
		{"aliyun", "token=token-aaaaaaaaaaaaaaaa", "[]", 200},
		{"aliyun", "token=token-bbbbbbbbbbbbbbbb", "[]", 200},
		{"aliyun", "token=token-cccccccccccccccc", "[]", 403},
		// A report for a delivery nobody knows is answered OK, once its key is right.
		{"kannel", "ref=w1/sms/r1&type=1&key=key-aaaaaaaaaaaaaaaa", "", 200},
		{"kannel", "ref=w1/sms/r1&type=1&key=key-bbbbbbbbbbbbbbbb", "", 200},
		{"kannel", "ref=w1/sms/r1&type=1&key=key-cccccccccccccccc", "", 403},
	} {
		if got := push(tc.name, tc.query, tc.body); got != tc.want {
			t.Errorf("/callbacks/%s?%s: %d, want %d", tc.name, tc.query, got, tc.want)
		}
	}

	var replies []channels.Reply
	for key, want := range map[string]int{"key-bbbbbbbbbbbbbbbb": 1, "key-cccccccccccccccc": 0} {
		replies = nil
		w := httptest.NewRecorder()
		p.replies[0].ServeReplies(w, httptest.NewRequest(http.MethodGet, "/callbacks/kannel/mo?from=13800000001&text=1&key="+key, nil),
			func(_ context.Context, r channels.Reply) error { replies = append(replies, r); return nil })
		if len(replies) != want {
			t.Errorf("a reply with key %s: %d handled (HTTP %d), want %d", key, len(replies), w.Code, want)
		}
	}
}
