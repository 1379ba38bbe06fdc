package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// userHZ is Linux's unit of /proc's times (USER_HZ): 100 on every platform
// the gateway is built for.
const userHZ = 100

// machineCPU is the whole machine's processor time so far, all cores
// together, from /proc/stat: busy (user, nice, system, irq, softirq; a
// guest's time is counted in user), idle (idle and iowait) and stolen (the
// hypervisor ran other guests while this one wanted to run). A bench's
// figures mean little when its run was short of processor time it did not
// use itself: the machine's own line says so.
type machineCPU struct {
	busy, idle, stolen time.Duration
	ok                 bool
}

// readMachineCPU reads /proc/stat; off Linux it returns a zero machineCPU.
func readMachineCPU() machineCPU {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	defer f.Close()
	return parseProcStat(f)
}

// parseProcStat reads the first line of /proc/stat, the sum over all
// cores: "cpu user nice system idle iowait irq softirq steal …".
func parseProcStat(r io.Reader) machineCPU {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var v [8]time.Duration
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || n < 0 {
				return machineCPU{}
			}
			v[i] = time.Duration(n) * (time.Second / userHZ)
		}
		const user, nice, system, idle, iowait, irq, softirq, steal = 0, 1, 2, 3, 4, 5, 6, 7
		return machineCPU{
			busy:   v[user] + v[nice] + v[system] + v[irq] + v[softirq],
			idle:   v[idle] + v[iowait],
			stolen: v[steal],
			ok:     true,
		}
	}
	return machineCPU{}
}

func (m machineCPU) sub(o machineCPU) machineCPU {
	if !m.ok || !o.ok {
		return machineCPU{}
	}
	return machineCPU{busy: m.busy - o.busy, idle: m.idle - o.idle, stolen: m.stolen - o.stolen, ok: true}
}

// machineShare is how a run's machine spent its cores' time, in percent of
// it: idle, stolen by the hypervisor, and busy with processes other than
// the ones measured (the gateway, Redis and Kannel), such as a demo left
// running or another bench.
type machineShare struct {
	idle, stolen, others float64
	// othersKnown is false when Redis runs elsewhere: its time is then not
	// the machine's, and what is left is not only other processes'.
	othersKnown bool
	ok          bool
}

// share works the machine's time out of a run's processor times.
func (c cpuTimes) share(redisHere bool) machineShare {
	m := c.machine
	total := m.busy + m.idle + m.stolen
	if !m.ok || total <= 0 {
		return machineShare{}
	}
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(total) }
	s := machineShare{idle: pct(m.idle), stolen: pct(m.stolen), othersKnown: redisHere, ok: true}
	if redisHere {
		s.others = max(0, pct(m.busy-c.gateway-c.kannel-c.redis))
	}
	return s
}

// String says it for a bench's report.
func (s machineShare) String() string {
	if !s.ok {
		return "the machine's use unknown (no /proc/stat)"
	}
	out := fmt.Sprintf("%d cores, %.0f%% idle, %.0f%% stolen by the hypervisor", runtime.NumCPU(), s.idle, s.stolen)
	if s.othersKnown {
		out += fmt.Sprintf(", %.0f%% busy with other processes", s.others)
	}
	return out
}

// keys are the summary line's: cpu_idle_pct and cpu_steal_pct, empty when
// unknown.
func (s machineShare) keys() string {
	if !s.ok {
		return ""
	}
	return fmt.Sprintf(" cpu_idle_pct=%.0f cpu_steal_pct=%.0f", s.idle, s.stolen)
}

// redisHere says whether Redis runs on this machine: the process it names
// (INFO server) is one of this machine's.
func redisHere(ctx context.Context, rdb redis.UniversalClient) bool {
	pid := rdb.InfoMap(ctx, "server").Item("Server", "process_id")
	if pid == "" {
		return false
	}
	comm, err := os.ReadFile("/proc/" + pid + "/comm")
	return err == nil && strings.HasPrefix(string(comm), "redis")
}

// redisCPU is the processor time Redis has used, system and user, from
// INFO's CPU section.
func redisCPU(cpu map[string]string) time.Duration {
	var d time.Duration
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		f, _ := strconv.ParseFloat(cpu[k], 64)
		d += time.Duration(f * float64(time.Second))
	}
	return d
}
