package sim_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/internal/redistest"
	"warngate/warning"
)

// The test binary doubles as a simulator process that accepts one batch and
// waits to be killed (SIM_TEST_CHILD set).
func TestMain(m *testing.M) {
	if os.Getenv("SIM_TEST_CHILD") != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

func batch() *channels.Batch { return batchOn(warning.SMS) }

// batchOn is a batch of four valid numbers and one invalid on ch; on voice
// to township officials, who are called.
func batchOn(ch warning.Channel) *channels.Batch {
	w := &warning.Warning{ID: "w1", Headline: "五华区暴雨红色预警", Level: warning.Red}
	b := &channels.Batch{ID: "w1/" + string(ch) + "/1", Key: "w1/" + string(ch) + "/1.a.0", Channel: ch, Warning: w}
	aud := warning.Residents
	if ch == warning.Voice {
		aud = warning.TownshipOfficials
	}
	for i := range 5 {
		addr := fmt.Sprintf("1380000000%d", i)
		if i == 4 {
			addr = "12345" // refused at once: no report
		}
		b.Recipients = append(b.Recipients, warning.Recipient{ID: "r" + strconv.Itoa(i), Address: addr, Audience: aud, Division: "530102001001"})
	}
	return b
}

func child() int {
	db, _ := strconv.Atoi(os.Getenv("SIM_TEST_DB"))
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("SIM_TEST_REDIS"), DB: db})
	// Nobody answers the calls: each call's end is reported after a second.
	p := sim.New(sim.Config{CallbackURL: os.Getenv("SIM_TEST_CALLBACK"), Secret: "s", ReportDelay: time.Second,
		Redis: rdb, Prefix: os.Getenv("SIM_TEST_PREFIX"), Voice: sim.VoiceConfig{NoAnswer: 1, Ring: time.Second}},
		http.DefaultClient, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, _, err := p.Notify(context.Background(), batchOn(warning.Channel(os.Getenv("SIM_TEST_CHANNEL")))); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("accepted")
	select {}
}

// sink keeps the reports the gateway would record.
type sink struct {
	mu   sync.Mutex
	refs []string
}

func (s *sink) Record(_ context.Context, reports []warning.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range reports {
		s.refs = append(s.refs, r.Ref.String())
	}
	return nil
}

func (s *sink) Resolve(context.Context, string, []string) (map[string]warning.Ref, error) {
	return nil, nil
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.refs)
	slices.Sort(out)
	return out
}

// A simulator process killed after accepting a batch, before its delivery
// reports were due, does not take them with it: another simulator on the
// same Redis sends them when due. And it answers, for the dead one, what
// was accepted. So with calls: a call's end is reported by another
// process, and the calls placed are answered as accepted (they were not,
// and a worker that took the batch over called everyone again).
func TestReportsOutliveTheirProcess(t *testing.T) {
	for _, ch := range []warning.Channel{warning.SMS, warning.Voice} {
		t.Run(string(ch), func(t *testing.T) { reportsOutliveTheirProcess(t, ch) })
	}
}

func reportsOutliveTheirProcess(t *testing.T, ch warning.Channel) {
	o, _ := redistest.Options(t, redistest.DBChannels)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	prefix := redistest.Prefix(t, "simtest")
	s := &sink{}
	recv := &sim.Receiver{Secret: "s"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { recv.ServeReports(w, r, s) }))
	defer srv.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SIM_TEST_CHILD=1", "SIM_TEST_REDIS="+o.Addr, "SIM_TEST_DB="+strconv.Itoa(o.DB),
		"SIM_TEST_CALLBACK="+srv.URL, "SIM_TEST_PREFIX="+prefix, "SIM_TEST_CHANNEL="+string(ch))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "accepted\n" {
		t.Fatalf("simulator process said %q", line)
	}

	other := sim.New(sim.Config{CallbackURL: srv.URL, Secret: "s", Redis: rdb, Prefix: prefix}, srv.Client(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer other.Close()
	var want []string
	for i := range 4 {
		want = append(want, fmt.Sprintf("w1/%s/r%d", ch, i))
	}
	deadline := time.Now().Add(15 * time.Second)
	for !slices.Equal(s.got(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("reports received %v, want %v", s.got(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := other.Accepted(context.Background(), batchOn(ch))
	if err != nil || len(got) != 4 || got[0].Index != 0 || got[3].Index != 3 || got[0].State != warning.Sent {
		t.Fatalf("accepted = %+v, %v; want the four valid numbers", got, err)
	}
	// The set is removed once the report's POST has been answered, a
	// moment after the receiver has it.
	for {
		n, _ := rdb.ZCard(context.Background(), prefix+":reports").Result()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d report sets left in Redis after sending", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// diesAfterFirstWrite is a Redis hook that lets one transaction through and
// fails every command after it (connection set-up's own pipelines aside),
// as a process killed right after its first write would leave Redis.
type diesAfterFirstWrite struct{ writes atomic.Int32 }

func (*diesAfterFirstWrite) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *diesAfterFirstWrite) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.writes.Load() > 0 {
			cmd.SetErr(errors.New("process killed"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (h *diesAfterFirstWrite) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.writes.Load() > 0 {
			for _, c := range cmds {
				c.SetErr(errors.New("process killed"))
			}
			return errors.New("process killed")
		}
		if cmds[0].Name() == "multi" {
			defer h.writes.Add(1)
		}
		return next(ctx, cmds)
	}
}

// A simulator that kept a record of the calls it placed has kept, in the
// same write, every report those calls owe: a process killed after the
// record leaves no call unreported (its worker's successor reads the record
// and waits for the reports, which another simulator sends).
func TestCallsKeptWithTheirReports(t *testing.T) {
	o, _ := redistest.Options(t, redistest.DBChannels)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	rdb.AddHook(&diesAfterFirstWrite{})
	check := redis.NewClient(o)
	defer check.Close()
	prefix := redistest.Prefix(t, "simcalls")
	p := sim.New(sim.Config{CallbackURL: "http://127.0.0.1:1/callbacks/sim", Secret: "s", Redis: rdb, Prefix: prefix,
		Voice: sim.VoiceConfig{NoAnswer: 0.5, KeyDelay: time.Minute, Ring: time.Minute}},
		http.DefaultClient, slog.New(slog.DiscardHandler))
	defer p.Close()
	b := batchOn(warning.Voice)
	if _, _, err := p.Notify(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, _ := check.Exists(ctx, prefix+":acc:"+b.Key).Result(); n != 1 {
		t.Fatal("the simulator kept no record of the calls it placed")
	}
	ids, err := check.ZRange(ctx, prefix+":reports", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	ended := map[string]bool{}
	for _, id := range ids {
		body, err := check.Get(ctx, prefix+":report:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			if f := strings.Split(line, "\t"); len(f) > 5 {
				ended[f[0]] = true // a call's end carries the call's fields
			}
		}
	}
	if len(ended) != 4 {
		t.Fatalf("Redis holds the end of %d calls of the 4 placed (%v): the others would never be reported", len(ended), ended)
	}
}
