package main

import (
	"flag"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files of the config check tests")

// config check reports every problem serve would refuse to start for, at
// once, across every stage, each on its line of the file: exactly what
// testdata/check-bad.golden says.
func TestConfigCheckEveryProblem(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"WARNGATE_REDIS_URL": "redis://127.0.0.1:6379/9"}[k]
	}
	var out strings.Builder
	err := configCheck([]string{"--config", "testdata/check-bad.yaml"}, env, &out)
	if err == nil {
		t.Fatalf("a bad configuration passed: %s", out.String())
	}
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile("testdata/check-bad.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/check-bad.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("config check said\n%s\nwant (testdata/check-bad.golden; go test -run %s -update to rewrite)\n%s", got, t.Name(), want)
	}

	// Every line named holds the setting named.
	file, _ := os.ReadFile("testdata/check-bad.yaml")
	lines := strings.Split(string(file), "\n")
	problem := regexp.MustCompile(`(?m)^  line ([0-9]+): ([a-z0-9_.\[\]]+)`)
	matches := problem.FindAllStringSubmatch(got, -1)
	if len(matches) < 15 {
		t.Fatalf("only %d problems with a line", len(matches))
	}
	for _, m := range matches {
		n, _ := strconv.Atoi(m[1])
		key := m[2][strings.LastIndexAny(m[2], ".]")+1:]
		if key == "" { // providers[0]: the item's line starts it
			key = "- name"
		}
		if n < 1 || n > len(lines) || !strings.Contains(lines[n-1], key) {
			t.Errorf("line %d is not where %s is: %q", n, m[2], lines[max(0, min(n, len(lines))-1)])
		}
	}
}

// The production example passes config check given the environment its
// comments name, and its comments name every variable it reads and every
// one serve needs with a real Redis; without one of them, the check fails
// as serve would.
func TestProductionExamplePassesConfigCheck(t *testing.T) {
	const example = "../../deploy/config/warngate.yaml"
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var header strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "#") {
			break
		}
		header.WriteString(l + "\n")
	}
	named := map[string]bool{}
	for _, v := range regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b`).FindAllString(header.String(), -1) {
		named[v] = true
	}
	for _, v := range []string{"WARNGATE_REDIS_URL", "WARNGATE_ADMIN_TOKEN", "WARNGATE_LINK_KEY", "WARNGATE_SESSION_KEY",
		"WARNGATE_PUBLIC_URL", "WARNGATE_SIMULATOR_SECRET"} {
		if !named[v] {
			t.Errorf("the example's comments do not name %s", v)
		}
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`).FindAllStringSubmatch(string(b), -1) {
		if !named[m[1]] {
			t.Errorf("the example reads ${%s}, which its comments do not name", m[1])
		}
	}
	env := exampleEnv(named)
	for k, v := range env {
		t.Setenv(k, v) // provider secrets are read from the process's environment
	}
	var out strings.Builder
	if err := configCheck([]string{"--config", example}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("config check of the production example: %v", err)
	}
	if out.String() != "configuration OK\n" {
		t.Errorf("config check said %q", out.String())
	}
	delete(env, "WARNGATE_LINK_KEY")
	if err := configCheck([]string{"--config", example}, func(k string) string { return env[k] }, &out); err == nil || !strings.Contains(err.Error(), "link_key: required with a real Redis") {
		t.Errorf("without WARNGATE_LINK_KEY: %v", err)
	}
}

// exampleEnv gives every variable a value of the shape its setting wants.
func exampleEnv(names map[string]bool) map[string]string {
	env := map[string]string{}
	for v := range names {
		env[v] = "example-secret-0123456789"
	}
	env["WARNGATE_REDIS_URL"] = "redis://127.0.0.1:6379/0" // never dialled
	env["WARNGATE_PUBLIC_URL"] = "https://warn.example.gov.cn"
	env["WARNGATE_LISTEN"] = "127.0.0.1:8080"
	env["WARNGATE_SESSION_KEY"] = strings.Repeat("session-key-", 4)
	if names["WECHAT_AES_KEY"] {
		env["WECHAT_AES_KEY"] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	}
	return env
}

// With a real Redis the simulator runs only when enabled, and then says so
// loudly: in the log at start, in a metric and on /readyz.
func TestSimulatorSaysItIsOn(t *testing.T) {
	url, _ := realRedis(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	env := []string{"WARNGATE_ADMIN_TOKEN=t0ken", "WARNGATE_LINK_KEY=0123456789abcdef0123", "WARNGATE_REDIS_URL=" + url}
	p := start(t, dir, env, "serve", "--listen", addr, "--config",
		writeConfig(t, dir, "sim.yaml", "simulator: {enabled: true, secret: s3cret-sim}\n"))
	waitHTTP(t, base+"/readyz")
	if _, ready := call(t, "GET", base+"/readyz", "", ""); ready["simulator"] != true || ready["embedded"] != false {
		t.Errorf("/readyz %v", ready)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "\nwarngate_simulator_enabled 1\n") {
		t.Errorf("metrics lack warngate_simulator_enabled 1")
	}
	log, _ := os.ReadFile(p.out)
	if !regexp.MustCompile(`level=WARN msg="SIMULATOR ON: .*NOBODY IS NOTIFIED.*channels=wecom,sms,wechat,broadcast,screen,calllist`).Match(log) {
		t.Errorf("serve does not say loudly that the simulator is on:\n%s", log)
	}
}

// The other shipped configurations pass config check with the environment
// shipped beside them: Kubernetes' ConfigMap with its Secret, compose's
// file with compose's environment; and systemd's env.example names every
// variable the production example reads.
func TestDeployConfigsPassConfigCheck(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/warngate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file string
	env := map[string]string{}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind       string            `yaml:"kind"`
			Data       map[string]string `yaml:"data"`
			StringData map[string]string `yaml:"stringData"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		switch doc.Kind {
		case "ConfigMap":
			file = writeConfig(t, t.TempDir(), "warngate.yaml", doc.Data["warngate.yaml"])
		case "Secret":
			env = doc.StringData
		}
	}
	if file == "" || len(env) < 5 {
		t.Fatalf("no ConfigMap or Secret in the manifest")
	}
	names := map[string]bool{}
	for k := range env {
		names[k] = true
	}
	shaped := exampleEnv(names)
	for k, v := range env {
		if strings.Contains(v, "CHANGE-ME") && k != "WARNGATE_REDIS_URL" && k != "WARNGATE_LINK_KEY" && k != "WARNGATE_SESSION_KEY" {
			v = shaped[k] // a placeholder of the right shape
		}
		env[k] = v
		t.Setenv(k, v)
	}
	var out strings.Builder
	if err := configCheck([]string{"--config", file}, func(k string) string { return env[k] }, &out); err != nil {
		t.Errorf("Kubernetes ConfigMap with its Secret: %v", err)
	}

	composeEnv := map[string]string{"WARNGATE_REDIS_URL": "redis://redis:6379/0", "WARNGATE_ADMIN_TOKEN": "t", "WARNGATE_LINK_KEY": "0123456789abcdef0123"}
	compose, _ := os.ReadFile("../../deploy/compose/compose.yaml")
	for k := range composeEnv {
		if !strings.Contains(string(compose), k+":") {
			t.Errorf("compose.yaml does not set %s", k)
		}
	}
	out.Reset()
	if err := configCheck([]string{"--config", "../../deploy/compose/warngate.yaml"}, func(k string) string { return composeEnv[k] }, &out); err != nil || !strings.Contains(out.String(), "the simulator is on") {
		t.Errorf("compose: %v %s", err, out.String())
	}

	example, _ := os.ReadFile("../../deploy/config/warngate.yaml")
	envExample, _ := os.ReadFile("../../deploy/systemd/env.example")
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`).FindAllStringSubmatch(string(example), -1) {
		if !regexp.MustCompile(`(?m)^#?` + m[1] + `=`).Match(envExample) {
			t.Errorf("deploy/systemd/env.example does not name %s", m[1])
		}
	}
	for _, v := range []string{"WARNGATE_REDIS_URL", "WARNGATE_ADMIN_TOKEN", "WARNGATE_LINK_KEY", "WARNGATE_SESSION_KEY", "WARNGATE_PUBLIC_URL", "WARNGATE_SIMULATOR_SECRET"} {
		if !regexp.MustCompile(`(?m)^#?` + v + `=`).Match(envExample) {
			t.Errorf("deploy/systemd/env.example does not name %s", v)
		}
	}
}
