package kannel_test

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
	"warngate/channels/kannel"
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

// Secrets read from a file and from the environment reach the adapter:
// smsbox takes the password, the dlr-url carries the callback key, and a
// report with that key is taken.
func TestSecretsFromFileAndEnvironment(t *testing.T) {
	t.Setenv("WG_TEST_KANNEL_PASSWORD", password)
	t.Setenv("WG_TEST_KANNEL_KEY", cbKey)
	tests := map[string]func(*kannel.Config){
		"password in a file, key from the environment": func(c *kannel.Config) {
			c.Password, c.PasswordFile = "", secretFile(t, password+"\n")
			c.CallbackKey = "${WG_TEST_KANNEL_KEY}"
		},
		"password from the environment, key in a file": func(c *kannel.Config) {
			c.Password = "${WG_TEST_KANNEL_PASSWORD}"
			c.CallbackKey, c.CallbackKeyFile = "", secretFile(t, cbKey+"\n")
		},
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			s, srv := newSendsms(t, nil)
			cfg := config(srv.URL + "/cgi-bin/sendsms")
			mod(&cfg)
			k := newKannel(t, cfg)
			got, _, err := k.Notify(context.Background(), batch("13800000001"))
			if err != nil || len(got) != 1 || got[0].State != warning.Sent {
				t.Fatalf("Notify: %v %v", got, err)
			}
			s.mu.Lock()
			dlr := s.calls[0].Get("dlr-url")
			s.mu.Unlock()
			if !strings.Contains(dlr, "&key="+cbKey+"&") {
				t.Errorf("dlr-url %q lacks the callback key", dlr)
			}
			if rec := callback(t, k, &memSink{}, http.MethodGet, "/callbacks/kannel?ref=w1%2Fsms%2Fra&type=1&key="+cbKey); rec.Code != http.StatusOK {
				t.Errorf("report with the key: answer %d, want 200", rec.Code)
			}
		})
	}
}

func TestSecretGivenTwiceOrBadIsRefused(t *testing.T) {
	cfg := config("http://127.0.0.1:13013/cgi-bin/sendsms")
	cfg.PasswordFile = secretFile(t, password)
	cfg.CallbackKeyFile = secretFile(t, cbKey)
	_, err := kannel.New(cfg, &http.Client{}, nil)
	for _, want := range []string{
		"kannel.password and kannel.password_file: give one, not both",
		"kannel.callback_key and kannel.callback_key_file: give one, not both",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	// The key's rules apply to a key read from a file.
	cfg = config("http://127.0.0.1:13013/cgi-bin/sendsms")
	cfg.CallbackKey, cfg.CallbackKeyFile = "", secretFile(t, "short\n")
	if _, err := kannel.New(cfg, &http.Client{}, nil); err == nil || !strings.Contains(err.Error(), "kannel.callback_key_file: must be at least 16 characters") {
		t.Errorf("short key in a file: %v", err)
	}
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	cfg := config("http://127.0.0.1:13013/cgi-bin/sendsms")
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %v\n", cfg, cfg, cfg, &cfg)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "kannel", cfg)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "kannel", cfg)
	for _, s := range []string{password, cbKey} {
		if strings.Contains(out.String(), s) {
			t.Errorf("printed %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), channels.Secret(password).String()) {
		t.Errorf("the secret's placeholder is missing:\n%s", out.String())
	}
}
