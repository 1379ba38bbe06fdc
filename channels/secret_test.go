package channels_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"warngate/channels"
)

const secretValue = "Pa55-word-0123456789"

func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  "+secretValue+"\n")
	empty := write("empty", " \n")
	t.Setenv("WG_TEST_SECRET", secretValue+"\n")
	t.Setenv("WG_TEST_EMPTY", "")

	tests := []struct {
		name   string
		inline channels.Secret
		file   string
		need   string
		want   string
		errHas []string // every part must be in the error; nil: no error
	}{
		{name: "inline", inline: secretValue, need: "the password", want: secretValue},
		{name: "inline kept as written", inline: " a b ", want: " a b "},
		{name: "file, trimmed", file: good, need: "the password", want: secretValue},
		{name: "environment, trimmed", inline: "${WG_TEST_SECRET}", need: "the password", want: secretValue},
		{name: "optional and unset", want: ""},
		{name: "dollar without braces is literal", inline: "$WG_TEST_SECRET", want: "$WG_TEST_SECRET"},
		{name: "reference inside a value is literal", inline: "x${WG_TEST_SECRET}", want: "x${WG_TEST_SECRET}"},
		{name: "required and unset", need: "the password of the sendsms-user group",
			errHas: []string{"kannel.password: required: the password of the sendsms-user group", "${ENV_VAR}", "password_file"}},
		{name: "both", inline: secretValue, file: good, need: "the password",
			errHas: []string{"kannel.password and kannel.password_file: give one, not both"}},
		{name: "both, inline from the environment", inline: "${WG_TEST_SECRET}", file: good,
			errHas: []string{"kannel.password and kannel.password_file: give one, not both"}},
		{name: "empty file", file: empty, need: "the password",
			errHas: []string{"kannel.password_file: " + empty + " is empty"}},
		{name: "missing file", file: filepath.Join(dir, "none"), need: "the password",
			errHas: []string{"kannel.password_file: ", "no such file"}},
		{name: "variable unset", inline: "${WG_TEST_UNSET}", need: "the password",
			errHas: []string{"kannel.password: environment variable WG_TEST_UNSET is not set", "password_file"}},
		{name: "variable empty", inline: "${WG_TEST_EMPTY}",
			errHas: []string{"kannel.password: environment variable WG_TEST_EMPTY is empty"}},
		{name: "not a variable name", inline: "${9 lives}",
			errHas: []string{"kannel.password: a value written ${…} is read from the environment", "not a variable name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := channels.ResolveSecret("kannel", "password", tt.inline, tt.file, tt.need)
			if tt.errHas == nil {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			for _, part := range tt.errHas {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
			if strings.Contains(err.Error(), secretValue) || strings.Contains(err.Error(), "9 lives") {
				t.Errorf("error %q shows the value", err)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	type config struct {
		User     string          `yaml:"user" json:"user"`
		Password channels.Secret `yaml:"password" json:"password"`
	}
	c := config{User: "warngate", Password: secretValue}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q %x ", c, c, c, c.Password, c.Password, c.Password)
	fmt.Fprint(&out, c.Password, &c)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "cfg", c, "password", c.Password)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "cfg", c, "password", c.Password)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	out.Write(y)
	if strings.Contains(out.String(), secretValue) {
		t.Fatalf("the secret was printed:\n%s", out.String())
	}
	if !strings.Contains(string(y), "password: <secret>") {
		t.Errorf("YAML %q, want password: <secret>", y)
	}
	if s := channels.Secret("").String(); s != "" {
		t.Errorf("unset secret prints %q, want nothing", s)
	}
}
