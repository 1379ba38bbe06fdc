package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/warning"
)

// Redis runs a script alone, every other client waiting: a provider's
// request of hundreds of reports must reach it as several short report
// scripts, each applying at most ledger.ReportsPerScript, not as one that
// holds Redis for milliseconds while a new warning's commands wait. Every
// report is still applied once, and each answer names its own ref.
func TestReportsGoInShortScripts(t *testing.T) {
	opts, mini := redistest.Options(t, redistest.DBLedger)
	if mini {
		t.Skip("MONITOR needs a real Redis")
	}
	c := &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	rdb := redistest.Client(t, redistest.DBLedger)
	prefix := redistest.Prefix(t, "short")
	l := ledger.New(rdb, prefix, c.now)
	ctx := context.Background()
	const wid = "wshort"
	entries := bucketed(t, l, wid, 330, "530102001001", "530102001002")
	sendChunks(t, l, wid, warning.SMS, entries[:600])

	hash, err := ledger.LoadReportScript(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	mon := monitor(t, opts)
	var reps []warning.Report
	for _, e := range entries {
		reps = append(reps, warning.Report{Ref: refOf(wid, warning.SMS, e), State: warning.Delivered, At: c.t})
	}
	res, err := l.ApplyReports(ctx, reps)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 600 || len(res.Unknown) != 60 || len(res.Duplicates) != 0 {
		t.Fatalf("applied %d, %d unknown, %d duplicates; want 600, 60, 0", res.Applied, len(res.Unknown), len(res.Duplicates))
	}
	never := map[warning.Ref]bool{}
	for _, e := range entries[600:] {
		never[refOf(wid, warning.SMS, e)] = true
	}
	for _, ref := range res.Unknown {
		if !never[ref] {
			t.Errorf("%s answered unknown; only the 60 never handed over are", ref)
		}
	}

	deliveries := prefix + ":{" + wid + "}:d:sms"
	calls, reports := 0, 0
	for _, line := range mon.until(t, rdb) {
		args := monitorArgs(line)
		if len(args) < 4 || !strings.EqualFold(args[0], "evalsha") || args[1] != hash || args[3] != deliveries {
			continue
		}
		nkeys, _ := strconv.Atoi(args[2])
		argv := args[3+nkeys:]
		n := 0
		// channel, then per group: bucket, n, states, n ids, n times.
		for i := 1; i+2 < len(argv); {
			k, err := strconv.Atoi(argv[i+1])
			if err != nil {
				t.Fatalf("report script arguments %q: group size %q", argv, argv[i+1])
			}
			n += k
			i += 3 + 2*k
		}
		if n > ledger.ReportsPerScript {
			t.Errorf("one report script applied %d reports; want at most %d", n, ledger.ReportsPerScript)
		}
		calls++
		reports += n
	}
	if want := (len(reps) + ledger.ReportsPerScript - 1) / ledger.ReportsPerScript; calls != want || reports != len(reps) {
		t.Errorf("%d report scripts carried %d reports; want %d carrying %d", calls, reports, want, len(reps))
	}
}

// monitored is a MONITOR connection's lines.
type monitored struct {
	lines chan string
}

// monitor opens a MONITOR connection to the test's Redis, closed when the
// test ends.
func monitor(t *testing.T, o *redis.Options) *monitored {
	t.Helper()
	conn, err := net.Dial("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		conn.Close()
	})
	r := bufio.NewReader(conn)
	if o.Password != "" {
		if o.Username != "" {
			fmt.Fprintf(conn, "AUTH %s %s\r\n", o.Username, o.Password)
		} else {
			fmt.Fprintf(conn, "AUTH %s\r\n", o.Password)
		}
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
			t.Fatalf("AUTH: %q", line)
		}
	}
	fmt.Fprint(conn, "MONITOR\r\n")
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("MONITOR: %q", line)
	}
	m := &monitored{lines: make(chan string, 1024)}
	go func() {
		defer close(m.lines)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case m.lines <- line:
			case <-done:
				return
			}
		}
	}()
	return m
}

// until returns the lines seen until now: it sends a mark through rdb and
// reads up to it.
func (m *monitored) until(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	mark := "mark-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := rdb.Echo(context.Background(), mark).Err(); err != nil {
		t.Fatal(err)
	}
	var out []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-m.lines:
			if !ok {
				t.Fatal("the MONITOR connection closed")
			}
			if strings.Contains(line, mark) {
				return out
			}
			out = append(out, line)
		case <-timeout:
			t.Fatal("MONITOR never showed the mark sent after the reports")
		}
	}
}

// monitorArgs splits a MONITOR line, `+<time> [<db> <client>] "arg" …`,
// into its arguments, unescaped.
func monitorArgs(line string) []string {
	var out []string
	for _, m := range quotedArg.FindAllStringSubmatch(line, -1) {
		s, err := strconv.Unquote(`"` + m[1] + `"`)
		if err != nil {
			s = m[1]
		}
		out = append(out, s)
	}
	return out
}

var quotedArg = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
