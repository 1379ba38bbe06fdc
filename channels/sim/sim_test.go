package sim_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// simulator returns a simulator reporting to a gateway whose sink is sink.
func simulator(t *testing.T, sink channels.ReportSink, v sim.VoiceConfig) *sim.Provider {
	recv := &sim.Receiver{Secret: "sim-secret"}
	gw := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { recv.ServeReports(w, r, sink) }))
	p := sim.New(sim.Config{CallbackURL: gw.URL, Secret: "sim-secret", Voice: v}, gw.Client(), slog.New(slog.DiscardHandler))
	t.Cleanup(p.Close)
	return p
}

func TestSimulatedCallsAnswerAndPressOneOrNeverAnswer(t *testing.T) {
	sink := &channeltest.Sink{}
	p := simulator(t, sink, sim.VoiceConfig{KeyDelay: 10 * time.Millisecond, Ring: 20 * time.Millisecond, NoAnswer: 0.4})
	phones := make([]string, 20)
	for i := range phones {
		phones[i] = fmt.Sprintf("199800000%02d", i)
	}
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, append(phones, "12345")...)
	rcs, retry, err := p.Notify(t.Context(), b)
	if err != nil || retry {
		t.Fatal(retry, err)
	}
	channeltest.CheckReasons(t, rcs, map[int]string{20: "invalid number"})
	channeltest.WaitFor(t, "a report of every call", func() bool { return len(sink.Reports()) == 20 })
	confirmed := map[warning.Ref]bool{}
	for _, c := range sink.Confirmations() {
		if c.Method != "voice" || confirmed[c.Ref] {
			t.Errorf("confirmation %+v", c)
		}
		confirmed[c.Ref] = true
	}
	answered := 0
	for ref, r := range sink.ByRef() {
		switch {
		case r.Call == nil:
			t.Errorf("%s: no call in %+v", ref, r)
		case r.Call.Outcome == warning.CallAnswered:
			answered++
			if !confirmed[ref] || r.Call.Keys != "1" || r.State != warning.Delivered || r.Call.Billed != 1 || r.Call.Talk <= 0 {
				t.Errorf("%s: %+v %+v, confirmed %v", ref, r, *r.Call, confirmed[ref])
			}
		case r.Call.Outcome == warning.CallNoAnswer:
			if confirmed[ref] || r.State != warning.Failed || r.Reason != "无人接听" || r.Call.Talk != 0 {
				t.Errorf("%s: %+v %+v", ref, r, *r.Call)
			}
		default:
			t.Errorf("%s: outcome %s", ref, r.Call.Outcome)
		}
	}
	if answered == 0 || answered == 20 || len(confirmed) != answered {
		t.Errorf("%d answered, %d confirmed: want some of 20 to answer and each to confirm", answered, len(confirmed))
	}
}

func TestSimulatedKeyPressOnALiftedWarningChangesNothing(t *testing.T) {
	sink := &channeltest.Sink{Lifted: map[string]bool{"w1": true}}
	p := simulator(t, sink, sim.VoiceConfig{KeyDelay: time.Millisecond, NoAnswer: -1})
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "19980000001")
	if _, _, err := p.Notify(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	channeltest.WaitFor(t, "the call's report", func() bool { return len(sink.Reports()) == 1 })
	if len(sink.Confirmations()) != 0 || sink.Refused() != 1 {
		t.Errorf("%d confirmations, %d refused", len(sink.Confirmations()), sink.Refused())
	}
}

// The simulator bills each SMS as a provider does: the parts of the text
// the phone shows, 【signature】, instruction and an official's link
// included, the same text channels.SMSText gives.
func TestSimulatedSMSBillsThePartsOfTheTextSent(t *testing.T) {
	p := simulator(t, &channeltest.Sink{}, sim.VoiceConfig{})
	b := channeltest.ChannelBatch(warning.SMS, warning.Residents, "13800000001", "13800000002")
	b.Warning.Description = "预计未来3小时五华区将出现100毫米以上降雨，局地伴有雷电和短时大风。"
	b.Warning.Instruction = "停止户外活动，远离河道和低洼地带，危险区域人员立即转移。"
	b.Recipients[1].Audience = warning.VillageOfficials
	b.AckURL = func(r warning.Recipient) string {
		return "https://warn.km.gov.cn/a/w1.sms." + r.ID + ".tq1m2k.AbCdEfGhIjKlMnOp"
	}
	resident, official := p.SMSText(b, b.Recipients[0]), p.SMSText(b, b.Recipients[1])
	if resident != channels.SMSText(sim.DefaultSignature, b, b.Recipients[0]) || !strings.HasPrefix(resident, "【昆明市应急管理局】五华区暴雨红色预警：") {
		t.Errorf("resident's text %q", resident)
	}
	rcs, _, err := p.Notify(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{channels.SMSSegments(resident), channels.SMSSegments(official)}
	if want[0] != 2 || want[1] != 3 {
		t.Fatalf("the texts take %v parts; the test wants 2 and 3", want)
	}
	for i, rc := range rcs {
		if rc.Segments != want[i] {
			t.Errorf("recipient %d billed %d parts, want %d", i, rc.Segments, want[i])
		}
	}
}

// The simulator does not report on a notice about a warning (a lifted
// notice, a reminder): its reports name the ref, which is the recipient's
// delivery of the warning itself, and would settle it.
func TestSimulatorReportsNoNotices(t *testing.T) {
	sink := &channeltest.Sink{}
	p := simulator(t, sink, sim.VoiceConfig{})
	notice := channeltest.ChannelBatch(warning.SMS, warning.Residents, "13800000001", "13800000002")
	notice.Warning.ID, notice.ID, notice.Notice = "w-lifted", "lift/w-lifted/sms/0", channels.NoticeLifted
	rcs, _, err := p.Notify(t.Context(), notice)
	if err != nil || len(rcs) != 2 || rcs[0].State != warning.Sent || rcs[0].ProviderID == "" {
		t.Fatalf("lifted notice: %+v %v", rcs, err)
	}
	tracked := channeltest.ChannelBatch(warning.SMS, warning.Residents, "13800000003")
	if _, _, err := p.Notify(t.Context(), tracked); err != nil {
		t.Fatal(err)
	}
	// Reports leave in the order they were due: once the warning's came,
	// the notice's would have.
	for deadline := time.Now().Add(10 * time.Second); len(sink.Reports()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no report for the warning's batch")
		}
	}
	for _, r := range sink.Reports() {
		if r.Ref.WarningID == "w-lifted" {
			t.Errorf("a report for the lifted notice: %+v", r)
		}
	}
}
