package aliyun_test

import (
	"context"
	"net/http"
	"testing"

	"warngate/channels/aliyun"
	"warngate/channels/aliyun/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// Secrets read from a file and from the environment reach the adapter: the
// fake takes the request's signature, and the adapter takes the fake's
// report push with its token.
func TestSecretsFromFileAndEnvironment(t *testing.T) {
	for _, way := range channeltest.SecretWays(t, "WG_TEST_ALIYUN", "secret", secret, "token", token) {
		t.Run(way.Name, func(t *testing.T) {
			r := newRig(t, func(_ *fake.Options, c *aliyun.Config) {
				c.AccessKeySecret, c.AccessKeySecretFile = way.Secret, way.SecretFile
				c.CallbackToken, c.CallbackTokenFile = way.Token, way.TokenFile
			})
			b := channeltest.Batch("13800000001")
			got, _, err := r.a.Notify(context.Background(), b)
			if err != nil || len(got) != 1 || got[0].State != warning.Sent {
				t.Fatalf("Notify: %v %v", got, err)
			}
			channeltest.CheckReports(t, r.sink, b, got, nil)
		})
	}
}

func TestSecretGivenTwiceIsRefused(t *testing.T) {
	cfg := aliyun.Config{AccessKeyID: keyID, AccessKeySecret: secret, AccessKeySecretFile: channeltest.SecretFile(t, secret),
		SignName: sign, TemplateCode: template, CallbackToken: token, CallbackTokenFile: channeltest.SecretFile(t, token)}
	_, err := aliyun.New(cfg, &http.Client{}, nil)
	channeltest.CheckErrorHas(t, err,
		"aliyun.access_key_secret and aliyun.access_key_secret_file: give one, not both",
		"aliyun.callback_token and aliyun.callback_token_file: give one, not both")
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	cfg := aliyun.Config{AccessKeyID: keyID, AccessKeySecret: secret, SignName: sign, TemplateCode: template, CallbackToken: token}
	channeltest.CheckSecretsHidden(t, "aliyun", &cfg, secret, token)
}
