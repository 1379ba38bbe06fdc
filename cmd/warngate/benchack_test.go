package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
)

// The 叫应 bench prints its figures and their machine-readable line; on a
// small run every step is taken on time: none early, none a second late.
func TestBenchAck(t *testing.T) {
	url, _ := realRedis(t)
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--ack", "--redis", url, "--flush", "--ack-warnings", "4", "--ack-spread", "1s",
		"--ack-deadline", "2s", "--ack-citywide=false"}, func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench --ack exited %d: %s%s", code, out.String(), errs.String())
	}
	m := regexp.MustCompile(`(?m)^ack_lateness_p99_ms=(\d+) ack_lateness_max_ms=(\d+) ack_sent_lateness_p99_ms=\d+ ack_early=(\d+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no figures line in:\n%s", out.String())
	}
	if max, _ := strconv.Atoi(m[2]); max > 1000 || m[3] != "0" {
		t.Errorf("steps up to %s ms late, %s early; want all within the second after they were due:\n%s", m[2], m[3], out.String())
	}
	// Each village warning asks 8 officials: 4 of the village, 2 of its
	// township, 2 of its county. Nobody confirms.
	if !regexp.MustCompile(`steps: +32 reminders, 32 escalations over 4 warnings, 0 early`).MatchString(out.String()) {
		t.Errorf("want 32 reminders and 32 escalations in:\n%s", out.String())
	}
}
