package tencent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warngate/channels"
	"warngate/channels/tencent"
	"warngate/channels/tencent/fake"
	"warngate/warning"
)

// secretFile writes s to a file of its own and returns its path.
func secretFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Secrets read from a file and from the environment reach the adapter: the
// fake takes the request's signature, and the adapter takes the fake's
// report push with its token.
func TestSecretsFromFileAndEnvironment(t *testing.T) {
	t.Setenv("WG_TEST_TENCENT_SECRET_KEY", secretKey)
	t.Setenv("WG_TEST_TENCENT_TOKEN", token)
	tests := map[string]func(*tencent.Config){
		"key in a file, token from the environment": func(c *tencent.Config) {
			c.SecretKey, c.SecretKeyFile = "", secretFile(t, secretKey+"\n")
			c.CallbackToken = "${WG_TEST_TENCENT_TOKEN}"
		},
		"key from the environment, token in a file": func(c *tencent.Config) {
			c.SecretKey = "${WG_TEST_TENCENT_SECRET_KEY}"
			c.CallbackToken, c.CallbackTokenFile = "", secretFile(t, token+"\n")
		},
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, func(_ *fake.Options, c *tencent.Config) { mod(c) })
			b := batch("13800000001")
			got, _, err := r.t.Notify(context.Background(), b)
			if err != nil || len(got) != 1 || got[0].State != warning.Sent {
				t.Fatalf("Notify: %v %v", got, err)
			}
			r.sink.index(b, got)
			waitFor(t, "the report push", func() bool { return len(r.sink.all()) == 1 })
		})
	}
}

func TestSecretGivenTwiceIsRefused(t *testing.T) {
	cfg := tencent.Config{SecretID: secretID, SecretKey: secretKey, SecretKeyFile: secretFile(t, secretKey),
		SmsSdkAppID: appID, SignName: sign, TemplateID: tmplID, CallbackToken: token, CallbackTokenFile: secretFile(t, token)}
	_, err := tencent.New(cfg, &http.Client{}, nil)
	for _, want := range []string{
		"tencent.secret_key and tencent.secret_key_file: give one, not both",
		"tencent.callback_token and tencent.callback_token_file: give one, not both",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	cfg := tencent.Config{SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID, SignName: sign, TemplateID: tmplID, CallbackToken: token}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %v\n", cfg, cfg, cfg, &cfg)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "tencent", cfg)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "tencent", cfg)
	for _, s := range []string{secretKey, token} {
		if strings.Contains(out.String(), s) {
			t.Errorf("printed %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), channels.Secret(secretKey).String()) {
		t.Errorf("the secret's placeholder is missing:\n%s", out.String())
	}
}
