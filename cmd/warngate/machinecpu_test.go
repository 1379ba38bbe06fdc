package main

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// The machine's time is the first line of /proc/stat, all cores together,
// in hundredths of a second: user, nice, system, idle, iowait, irq,
// softirq, steal, then a guest's time (already in user).
func TestParseProcStat(t *testing.T) {
	stat := "cpu  1000 20 300 5000 80 4 6 90 50 0\ncpu0 500 10 150 2500 40 2 3 45 25 0\nintr 1 2 3\n"
	got := parseProcStat(strings.NewReader(stat))
	want := machineCPU{busy: 13300 * time.Millisecond, idle: 50800 * time.Millisecond, stolen: 900 * time.Millisecond, ok: true}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 three 4 5 6 7 8\n", "cpu 1 2 3\n"} {
		if m := parseProcStat(strings.NewReader(bad)); m.ok {
			t.Errorf("%q read as %+v, want unknown", bad, m)
		}
	}
}

// A run's share of the machine: what was idle, stolen, and taken by
// processes other than the measured ones, each in percent of all cores'
// time; unknown for a machine without /proc/stat.
func TestMachineShare(t *testing.T) {
	c := cpuTimes{
		gateway: 6 * time.Second, redis: 5 * time.Second, kannel: 2 * time.Second,
		machine: machineCPU{busy: 15 * time.Second, idle: 4 * time.Second, stolen: time.Second, ok: true},
	}
	s := c.share(true)
	if s.idle != 20 || s.stolen != 5 || s.others != 10 || !s.othersKnown {
		t.Errorf("share %+v, want 20%% idle, 5%% stolen, 10%% others", s)
	}
	if got := s.keys(); got != " cpu_idle_pct=20 cpu_steal_pct=5" {
		t.Errorf("keys %q", got)
	}
	if got := s.String(); !strings.HasSuffix(got, "cores, 20% idle, 5% stolen by the hypervisor, 10% busy with other processes") {
		t.Errorf("line %q", got)
	}
	// Redis elsewhere: its time is not this machine's, so the rest is not
	// only other processes'.
	if s := c.share(false); s.othersKnown || strings.Contains(s.String(), "other processes") {
		t.Errorf("Redis elsewhere: %+v, %q", s, s.String())
	}
	if s := (cpuTimes{}).share(true); s.ok || s.keys() != "" || !strings.Contains(s.String(), "unknown") {
		t.Errorf("no /proc/stat: %+v, %q, %q", s, s.keys(), s.String())
	}
	before, after := machineCPU{busy: time.Second, ok: true}, machineCPU{busy: 3 * time.Second, idle: time.Second, ok: true}
	if d := after.sub(before); d.busy != 2*time.Second || d.idle != time.Second || !d.ok {
		t.Errorf("sub %+v", d)
	}
	if d := after.sub(machineCPU{}); d.ok {
		t.Errorf("sub of an unknown reading %+v, want unknown", d)
	}
}

// On Linux the machine's time is read, and the test's Redis is found on
// this machine (it runs on loopback here and in CI).
func TestMachineCPUReadHere(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	m := readMachineCPU()
	if !m.ok || m.busy+m.idle <= 0 {
		t.Fatalf("/proc/stat read as %+v", m)
	}
	url, rdb := realRedis(t)
	if !strings.HasPrefix(url, "redis://127.0.0.1:") && !strings.HasPrefix(url, "redis://localhost:") {
		t.Skipf("the test's Redis (%s) is not on loopback", url)
	}
	if !redisHere(t.Context(), rdb) {
		t.Error("the test's Redis on loopback not found among this machine's processes")
	}
}
