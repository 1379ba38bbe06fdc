package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Every metric the shipped alert rules and dashboard query is one the
// gateway exports: an alert on a misspelt name never fires.
func TestDeployQueriesNameExportedMetrics(t *testing.T) {
	defined := exportedMetrics(t, "../..")
	if len(defined) < 10 {
		t.Fatalf("found only %d exported metrics: %v", len(defined), defined)
	}
	var queries []string
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries = append(queries, r.Alert+": "+r.Expr)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err = os.ReadFile("../../deploy/grafana/warngate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries = append(queries, p.Title+": "+q.Expr)
		}
	}
	if len(queries) < 10 {
		t.Fatalf("found only %d queries", len(queries))
	}
	name := regexp.MustCompile(`warngate_[a-z0-9_]+`)
	for _, q := range queries {
		for _, m := range name.FindAllString(q, -1) {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if trimmed, ok := strings.CutSuffix(m, suffix); ok && defined[trimmed] {
					base = trimmed
				}
			}
			if !defined[base] {
				t.Errorf("%s queries %s, which the gateway does not export", q[:strings.Index(q, ":")], m)
			}
		}
	}
}

// exportedMetrics reads the metric names the gateway's source declares.
func exportedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	opts := regexp.MustCompile(`Namespace:\s*"warngate",\s*Name:\s*"([a-z0-9_]+)"`)
	desc := regexp.MustCompile(`NewDesc\("(warngate_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range opts.FindAllSubmatch(b, -1) {
			out["warngate_"+string(m[1])] = true
		}
		for _, m := range desc.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
