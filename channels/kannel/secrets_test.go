package kannel_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"warngate/channels/kannel"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// Secrets read from a file and from the environment reach the adapter:
// smsbox takes the password, the dlr-url carries the callback key, and a
// report with that key is taken.
func TestSecretsFromFileAndEnvironment(t *testing.T) {
	for _, way := range channeltest.SecretWays(t, "WG_TEST_KANNEL", "password", password, "key", cbKey) {
		t.Run(way.Name, func(t *testing.T) {
			s, srv := newSendsms(t, nil)
			cfg := config(srv.URL + "/cgi-bin/sendsms")
			cfg.Password, cfg.PasswordFile = way.Secret, way.SecretFile
			cfg.CallbackKey, cfg.CallbackKeyFile = way.Token, way.TokenFile
			k, _ := newKannel(t, cfg)
			got, _, err := k.Notify(context.Background(), channeltest.Batch("13800000001"))
			if err != nil || len(got) != 1 || got[0].State != warning.Sent {
				t.Fatalf("Notify: %v %v", got, err)
			}
			s.mu.Lock()
			dlr := s.calls[0].Get("dlr-url")
			s.mu.Unlock()
			if !strings.Contains(dlr, "&key="+cbKey+"&") {
				t.Errorf("dlr-url %q lacks the callback key", dlr)
			}
			if rec := callback(t, k, &channeltest.Sink{}, http.MethodGet, "/callbacks/kannel?ref=w1%2Fsms%2Fra&type=1&key="+cbKey); rec.Code != http.StatusOK {
				t.Errorf("report with the key: answer %d, want 200", rec.Code)
			}
		})
	}
}

func TestSecretGivenTwiceOrBadIsRefused(t *testing.T) {
	cfg := config("http://127.0.0.1:13013/cgi-bin/sendsms")
	cfg.PasswordFile = channeltest.SecretFile(t, password)
	cfg.CallbackKeyFile = channeltest.SecretFile(t, cbKey)
	_, err := kannel.New(cfg, &http.Client{}, &channeltest.Sink{}, nil)
	channeltest.CheckErrorHas(t, err,
		"kannel.password and kannel.password_file: give one, not both",
		"kannel.callback_key and kannel.callback_key_file: give one, not both")
	// The key's rules apply to a key read from a file.
	cfg = config("http://127.0.0.1:13013/cgi-bin/sendsms")
	cfg.CallbackKey, cfg.CallbackKeyFile = "", channeltest.SecretFile(t, "short\n")
	if _, err := kannel.New(cfg, &http.Client{}, &channeltest.Sink{}, nil); err == nil || !strings.Contains(err.Error(), "kannel.callback_key_file: must be at least 16 characters") {
		t.Errorf("short key in a file: %v", err)
	}
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	cfg := config("http://127.0.0.1:13013/cgi-bin/sendsms")
	channeltest.CheckSecretsHidden(t, "kannel", &cfg, password, cbKey)
}
