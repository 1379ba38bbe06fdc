package sipvoice_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sipvoice"
	"warngate/channels/voice"
	"warngate/internal/channeltest"
	"warngate/internal/redistest"
	"warngate/warning"
)

// gateway is the SIP adapter under test, calling through trunk, with its
// sink and its log.
type gateway struct {
	*sipvoice.SIP
	sink    *channeltest.Sink
	lines   *voice.Lines
	account string
	log     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newGateway(t *testing.T, trunk string, change func(*sipvoice.Config)) *gateway {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBSIPVoice)
	g := &gateway{sink: &channeltest.Sink{}, account: "trunk-" + voice.NewID(), log: &syncBuffer{}}
	g.lines = voice.NewLines(rdb, "t-sipvoice", nil)
	cfg := sipvoice.Config{Trunk: trunk, Listen: "127.0.0.1:0", Lines: 2, CallerID: "087163000000",
		RingTimeout: 5 * time.Second, KeyTimeout: 2 * time.Second, Plays: 1, TTSCacheDir: t.TempDir()}
	if change != nil {
		change(&cfg)
	}
	log := slog.New(slog.NewTextHandler(g.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := sipvoice.New(cfg, g.account, g.lines, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(g.log.String(), 4000))
		}
	})
	if err := s.Attach(g.sink); err != nil {
		t.Fatal(err)
	}
	g.SIP = s
	return g
}

// call calls the phone number with a red rainstorm warning and returns
// the receipts.
func (g *gateway) call(t *testing.T, number string) (*channels.Batch, []channels.Receipt) {
	t.Helper()
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, number)
	b.Area = "五华区"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcs, retry, err := g.Notify(ctx, b)
	if err != nil || retry {
		t.Fatalf("notify: retry %v, %v", retry, err)
	}
	channeltest.CheckReceipts(t, rcs, "S", nil)
	return b, rcs
}

// report waits for the one report of the call.
func (g *gateway) report(t *testing.T) warning.Report {
	t.Helper()
	waitFor(t, "the call's report", func() bool { return len(g.sink.Reports()) > 0 })
	reps := g.sink.Reports()
	if len(reps) != 1 || reps[0].Call == nil {
		t.Fatalf("reports %+v", reps)
	}
	return reps[0]
}

// waitFor polls cond until it holds, for a minute at most: calls ring and
// play for seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// playing waits until the gateway plays the warning on the call. (What
// the phone heard is on file only once the call ends.)
func (g *gateway) playing(t *testing.T) {
	t.Helper()
	waitFor(t, "the warning to play", func() bool { return strings.Contains(g.log.String(), "sip: playing") })
}

// heardTheWarning fails t unless the phone heard sound on its call.
func (p *phone) heardTheWarning(t *testing.T) {
	t.Helper()
	if a := p.heard(); rms(a.Samples) < 300 || a.Duration() < 1 {
		t.Errorf("the phone heard %.1f s of sound at RMS %.0f: no warning", a.Duration(), rms(a.Samples))
	}
}

// checkCall fails t unless the report is of the call with the receipt,
// ended as want with keys.
func checkCall(t *testing.T, r warning.Report, b *channels.Batch, rc channels.Receipt, want warning.CallOutcome, keys string) {
	t.Helper()
	c := r.Call
	if r.Ref != b.Ref(0) || r.ProviderID != rc.ProviderID || rc.ProviderID == "" || c.Outcome != want || c.Keys != keys {
		t.Errorf("report %+v %+v, want %s with keys %q for %s", r, *c, want, keys, rc.ProviderID)
	}
	if want.Answered() != (r.State == warning.Delivered) || (r.State == warning.Failed) != strings.HasPrefix(r.Reason, want.Chinese()) {
		t.Errorf("state %s reason %q for %s", r.State, r.Reason, want)
	}
	if c.Ring <= 0 || (c.Talk > 0) != want.Answered() || (c.Billed > 0) != want.Answered() || c.Billed != warning.BilledMinutes(c.Talk) {
		t.Errorf("ring %s talk %s billed %d for %s", c.Ring, c.Talk, c.Billed, want)
	}
}

// checkLog fails t when the log shows a whole phone number.
func (g *gateway) checkLog(t *testing.T, number string) {
	t.Helper()
	if strings.Contains(g.log.String(), number) {
		t.Errorf("%s shows in the log", number)
	}
}

func TestPhoneAnswersHearsTheWarningAndConfirmsWithOne(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000001", true)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000001")
	if !p.waitEvent("CALL_ESTABLISHED", 10*time.Second) {
		t.Fatal("the phone did not answer")
	}
	g.playing(t)
	p.send("sndcode", "1")
	r := g.report(t)
	checkCall(t, r, b, rcs[0], warning.CallAnswered, "1")
	p.waitEvent("CALL_CLOSED", 10*time.Second)
	p.heardTheWarning(t)
	got := g.sink.Confirmations()
	if len(got) != 1 || got[0].Ref != b.Ref(0) || got[0].Method != "voice" || !strings.Contains(got[0].From, "138****0001") || !strings.Contains(got[0].From, rcs[0].ProviderID) {
		t.Errorf("confirmations %+v", got)
	}
	if n, _ := g.lines.InUse(context.Background(), g.account); n != 0 {
		t.Errorf("%d lines still held after the call", n)
	}
	g.checkLog(t, "13800000001")
}

func TestPhoneAsksToHearItAgainThenConfirms(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000002", true)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000002")
	p.waitEvent("CALL_ESTABLISHED", 10*time.Second)
	g.playing(t)
	p.send("sndcode", "2")
	waitFor(t, "the replay", func() bool { return strings.Contains(g.log.String(), "playing the warning again") })
	p.send("sndcode", "1")
	checkCall(t, g.report(t), b, rcs[0], warning.CallAnswered, "21")
	if len(g.sink.Confirmations()) != 1 {
		t.Errorf("confirmations %+v", g.sink.Confirmations())
	}
}

func TestPhoneThatDoesNotAnswer(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000003", false)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000003")
	if !p.waitEvent("CALL_INCOMING", 10*time.Second) {
		t.Fatal("the phone did not ring")
	}
	r := g.report(t)
	checkCall(t, r, b, rcs[0], warning.CallNoAnswer, "")
	if r.Call.Ring < 5*time.Second {
		t.Errorf("rang %s, less than the ring timeout", r.Call.Ring)
	}
	if len(g.sink.Confirmations()) != 0 {
		t.Error("a call not answered confirmed")
	}
	if !p.waitEvent("CALL_CLOSED", 10*time.Second) {
		t.Error("the phone kept ringing: no CANCEL")
	}
}

func TestPhoneThatRejects(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000004", false)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000004")
	if !p.waitEvent("CALL_INCOMING", 10*time.Second) {
		t.Fatal("the phone did not ring")
	}
	p.send("hangup", "")
	r := g.report(t)
	checkCall(t, r, b, rcs[0], warning.CallRejected, "")
	if !strings.Contains(r.Reason, "486") {
		t.Errorf("reason %q does not say what the phone answered", r.Reason)
	}
}

func TestPhoneThatListensAndPressesNothing(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000005", true)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000005")
	checkCall(t, g.report(t), b, rcs[0], warning.CallNoKey, "")
	if !p.waitEvent("CALL_CLOSED", 10*time.Second) {
		t.Error("the gateway did not hang up")
	}
	p.heardTheWarning(t)
}

func TestPhoneThatHangsUpBeforeAKey(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000006", true)
	g := newGateway(t, p.addr, nil)
	b, rcs := g.call(t, "13800000006")
	p.waitEvent("CALL_ESTABLISHED", 10*time.Second)
	g.playing(t)
	p.send("hangup", "")
	checkCall(t, g.report(t), b, rcs[0], warning.CallHangup, "")
}

func TestKeyPressAfterTheWarningWasLiftedChangesNothing(t *testing.T) {
	needVoiceTools(t)
	t.Parallel()
	p := startPhone(t, "13800000007", true)
	g := newGateway(t, p.addr, nil)
	g.sink.Lifted = map[string]bool{"w1": true}
	b, rcs := g.call(t, "13800000007")
	p.waitEvent("CALL_ESTABLISHED", 10*time.Second)
	g.playing(t)
	p.send("sndcode", "1")
	checkCall(t, g.report(t), b, rcs[0], warning.CallAnswered, "1")
	if len(g.sink.Confirmations()) != 0 || g.sink.Refused() != 1 {
		t.Errorf("confirmations %+v, refused %d", g.sink.Confirmations(), g.sink.Refused())
	}
	if !strings.Contains(g.log.String(), "key press 1 changed nothing") {
		t.Error("the refused key press is not logged")
	}
}

func TestNumbersThatAreNotMainlandMobilesAreNotCalled(t *testing.T) {
	g := newGateway(t, "127.0.0.1:9", func(c *sipvoice.Config) { c.TTSCommand = []string{os.Args[0], "-w", "{wav}"} })
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "+1 555 0100", "12345")
	rcs, retry, err := g.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "FF", map[int]string{0: voice.InvalidNumber, 1: voice.InvalidNumber})
}

func TestNotifyWaitsToBeAttached(t *testing.T) {
	lines := voice.NewLines(redistest.Client(t, redistest.DBSIPVoice), "t-sipvoice", nil)
	s, err := sipvoice.New(sipvoice.Config{Trunk: "127.0.0.1:9", Listen: "127.0.0.1:0", Lines: 1, TTSCacheDir: t.TempDir(),
		TTSCommand: []string{os.Args[0], "-w", "{wav}"}}, "a", lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, retry, err := s.Notify(context.Background(), channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "13800000001"))
	if err == nil || !retry {
		t.Errorf("notify before Attach: retry %v, %v", retry, err)
	}
	if s.Addr() != "" {
		t.Errorf("listening at %s before Attach", s.Addr())
	}
}

func TestAttachSaysWhyItCannotListen(t *testing.T) {
	lines := voice.NewLines(redistest.Client(t, redistest.DBSIPVoice), "t-sipvoice", nil)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, err := sipvoice.New(sipvoice.Config{Trunk: "127.0.0.1:9", Listen: busy.LocalAddr().String(), Lines: 1, TTSCacheDir: t.TempDir(),
		TTSCommand: []string{os.Args[0], "-w", "{wav}"}}, "a", lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Attach(&channeltest.Sink{}); err == nil || !strings.Contains(err.Error(), "sip.listen: "+busy.LocalAddr().String()) {
		t.Errorf("attach on a port in use: %v", err)
	}
}
