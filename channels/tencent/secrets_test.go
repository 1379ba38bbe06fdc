package tencent_test

import (
	"context"
	"net/http"
	"testing"

	"warngate/channels/tencent"
	"warngate/channels/tencent/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// Secrets read from a file and from the environment reach the adapter: the
// fake takes the request's signature, and the adapter takes the fake's
// report push with its token.
func TestSecretsFromFileAndEnvironment(t *testing.T) {
	for _, way := range channeltest.SecretWays(t, "WG_TEST_TENCENT", "key", secretKey, "token", token) {
		t.Run(way.Name, func(t *testing.T) {
			r := newRig(t, func(_ *fake.Options, c *tencent.Config) {
				c.SecretKey, c.SecretKeyFile = way.Secret, way.SecretFile
				c.CallbackToken, c.CallbackTokenFile = way.Token, way.TokenFile
			})
			b := channeltest.Batch("13800000001")
			got, _, err := r.t.Notify(context.Background(), b)
			if err != nil || len(got) != 1 || got[0].State != warning.Sent {
				t.Fatalf("Notify: %v %v", got, err)
			}
			channeltest.CheckReports(t, r.sink, b, got, nil)
		})
	}
}

func TestSecretGivenTwiceIsRefused(t *testing.T) {
	cfg := tencent.Config{SecretID: secretID, SecretKey: secretKey, SecretKeyFile: channeltest.SecretFile(t, secretKey),
		SmsSdkAppID: appID, SignName: sign, TemplateID: tmplID, CallbackToken: token, CallbackTokenFile: channeltest.SecretFile(t, token)}
	_, err := tencent.New(cfg, &http.Client{}, nil)
	channeltest.CheckErrorHas(t, err,
		"tencent.secret_key and tencent.secret_key_file: give one, not both",
		"tencent.callback_token and tencent.callback_token_file: give one, not both")
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	cfg := tencent.Config{SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID, SignName: sign, TemplateID: tmplID, CallbackToken: token}
	channeltest.CheckSecretsHidden(t, "tencent", &cfg, secretKey, token)
}
