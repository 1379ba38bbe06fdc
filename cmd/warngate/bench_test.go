package main

import (
	"bytes"
	"strings"
	"testing"

	"warngate/region"
)

// The benches' city-wide warnings name the city: the API refuses the
// province above it as outside the gateway's city.
func TestBenchCityCode(t *testing.T) {
	if got := benchCity(region.Kunming()); got != "530100000000" {
		t.Fatalf("city-wide warnings name %s, want the city 530100000000", got)
	}
}

// The fan-out bench warns the city (not the province its division tree
// hangs from, which a warning may not name) and prints its figures.
func TestBenchFanOutSmall(t *testing.T) {
	url, _ := realRedis(t)
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--redis", url, "--flush", "--recipients", "20000", "--naive", "0", "--samples", "3"},
		func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "recipients_per_second=") {
		t.Errorf("no figures line in:\n%s", out.String())
	}
}
