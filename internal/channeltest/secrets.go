package channeltest

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"warngate/channels"
)

// SecretFile writes s to a file of its own and returns its path.
func SecretFile(t testing.TB, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// SecretWay is one way of giving an adapter its two secrets, the one it
// signs or logs in with and the one it expects in callbacks: each inline
// (as ${ENV_VAR}) or in a file, the other one empty.
type SecretWay struct {
	// Name names the way, for t.Run.
	Name string
	// Secret and SecretFile give the adapter's secret, Token and TokenFile
	// its callback token, as the configuration's inline and file settings.
	Secret     channels.Secret
	SecretFile string
	Token      channels.Secret
	TokenFile  string
}

// SecretWays sets the environment variables <prefix>_<SECRETNAME> and
// <prefix>_<TOKENNAME> to secret and token for the rest of t, and returns
// the two ways of giving them: the secret in a file with the token from
// the environment, and the secret from the environment with the token in a
// file. The files end in a newline, as an editor writes them. secretName
// and tokenName are what the adapter calls them, e.g. "password" and "key".
func SecretWays(t *testing.T, prefix, secretName, secret, tokenName, token string) []SecretWay {
	secretVar := prefix + "_" + strings.ToUpper(secretName)
	tokenVar := prefix + "_" + strings.ToUpper(tokenName)
	t.Setenv(secretVar, secret)
	t.Setenv(tokenVar, token)
	return []SecretWay{
		{Name: secretName + " in a file, " + tokenName + " from the environment",
			SecretFile: SecretFile(t, secret+"\n"), Token: channels.Secret("${" + tokenVar + "}")},
		{Name: secretName + " from the environment, " + tokenName + " in a file",
			Secret: channels.Secret("${" + secretVar + "}"), TokenFile: SecretFile(t, token+"\n")},
	}
}

// CheckErrorHas fails t unless err has each of wants in its message.
func CheckErrorHas(t testing.TB, err error, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

// CheckSecretsHidden prints and logs the configuration cfg points to, as
// section, in every way configuration gets shown (%v, %+v, %#v, slog text
// and JSON), and fails t if any of secrets shows, or if the placeholder of
// a Secret does not.
func CheckSecretsHidden(t testing.TB, section string, cfg any, secrets ...string) {
	t.Helper()
	v := reflect.ValueOf(cfg).Elem().Interface()
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %v\n", v, v, v, cfg)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", section, v)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", section, v)
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Errorf("printed %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), channels.Secret(secrets[0]).String()) {
		t.Errorf("the secret's placeholder is missing:\n%s", out.String())
	}
}
