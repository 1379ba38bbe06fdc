package channels

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
)

// Secret is a configuration value that must not be printed: it formats,
// logs and marshals as <secret> (or "" when unset). Convert it with
// string(s) only where the value is used.
type Secret string

// String implements fmt.Stringer: <secret>, or "" when unset.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of dumped configuration (YAML, JSON).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// envRef matches an inline value that names an environment variable.
var envRef = regexp.MustCompile(`^\$\{(.*)\}$`)

// envName is what an environment variable's name may be.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ResolveSecret returns the value of the secret setting <section>.<field>
// (e.g. aliyun.access_key_secret), which is given in one of three ways:
//
//   - inline, as the setting's value: `access_key_secret: s3cret`;
//   - from the environment, when the inline value is ${NAME}:
//     `access_key_secret: ${ALIYUN_ACCESS_KEY_SECRET}` reads that variable,
//     which must be set and not empty;
//   - from a file, named by the setting <field>_file:
//     `access_key_secret_file: /run/secrets/aliyun`.
//
// Values from the environment and from files have surrounding white space
// (a final newline) removed. An inline value and a file are never both
// given. When neither is, the secret is optional if need is empty (the
// result is "" and no error), and otherwise required: need then says what
// the secret is, for the error, e.g. "that AccessKey's secret".
//
// Errors name the setting and say what to fix; they never hold the secret.
func ResolveSecret(section, field string, inline Secret, file, need string) (string, error) {
	name := section + "." + field
	switch {
	case inline != "" && file != "":
		return "", fmt.Errorf("%s and %s_file: give one, not both", name, name)
	case file != "":
		return secretFromFile(name+"_file", file)
	case inline != "":
		if m := envRef.FindStringSubmatch(string(inline)); m != nil {
			return secretFromEnv(name, field, m[1])
		}
		return string(inline), nil
	case need != "":
		return "", fmt.Errorf("%s: required: %s; set it here, or to ${ENV_VAR} to read it from the environment, or set %s_file to a file that holds it", name, need, field)
	}
	return "", nil
}

// secretFromFile reads the secret in file for the setting name.
func secretFromFile(name, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %v: name a file readable by warngate that holds the secret", name, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty: put the secret in it", name, file)
	}
	return s, nil
}

// secretFromEnv reads the secret in the environment variable v for the
// setting name. A v that is no variable's name is not echoed: the value
// might be a secret that merely looks like ${…}.
func secretFromEnv(name, field, v string) (string, error) {
	if !envName.MatchString(v) {
		return "", fmt.Errorf("%s: a value written ${…} is read from the environment, but what the braces hold is not a variable name: use letters, digits and '_', e.g. ${KANNEL_PASSWORD}, or put the secret in %s_file", name, field)
	}
	s, ok := os.LookupEnv(v)
	if !ok {
		return "", fmt.Errorf("%s: environment variable %s is not set: set it in warngate's environment, or put the secret in %s_file", name, v, field)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%s: environment variable %s is empty: set it to the secret", name, v)
	}
	return s, nil
}
