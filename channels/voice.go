package channels

import (
	"context"
	"errors"
	"strings"

	"warngate/warning"
)

// A voice call is one more adapter of the Notifier shape: Notify places the
// calls of a batch (receipts say which were placed), and how each call
// ended comes back later as a warning.Report carrying a warning.Call. What
// a call adds is the key press: an official who presses 1 has confirmed
// receipt (叫应), exactly as by the confirmation link, and the adapter hands
// that to a Confirmer at once, while the call is still on.

// Confirmer records an official's confirmation of receipt (叫应) made by a
// key press on a phone call, with the same audit trail and the same end of
// escalation as the confirmation link. The dispatcher implements it by
// calling its Acknowledge with method "voice".
//
// The contract:
//
//   - ref is the delivery the call was placed for: ref.Channel is
//     warning.Voice and ref.RecipientID is the official's person id.
//   - method says how the official confirmed ("voice"); from says from
//     where, for the audit trail: the masked number and the provider's call
//     id (138****0001 aliyun_voice 1167^2345), never a whole phone number.
//   - Confirming again is harmless: it changes nothing, though it may be
//     audited as "confirmed again".
//   - When the confirmation must not count, Confirm changes nothing and
//     returns an error wrapping ErrNotConfirmable: the warning was lifted
//     (cancelled), superseded or has expired, or the person was not asked
//     to confirm it. The adapter logs it and does not try again.
//   - Any other error is passing (Redis does not answer): the adapter tries
//     again, or has the provider push the key press again.
type Confirmer interface {
	Confirm(ctx context.Context, ref warning.Ref, method, from string) error
}

// ErrNotConfirmable is what a Confirmer's error wraps when a key press must
// not confirm: the warning is no longer live, or the person was not asked.
var ErrNotConfirmable = errors.New("confirmation refused")

// ConfirmMethod is the method a voice adapter confirms with.
const ConfirmMethod = "voice"

// CallSink is where voice adapters hand what their calls come to: how each
// call ended (Record, one report per call) and an official's key press "1"
// (Confirm). The dispatcher is one.
//
// A voice adapter's ReportReceiver is given the sink as a ReportSink, like
// every receiver; it confirms through it when the sink is a CallSink
// (AsCallSink), and otherwise answers the provider "not taken, push again"
// for a key press, so that nothing is lost, and logs it.
type CallSink interface {
	ReportSink
	Confirmer
}

// AsCallSink returns sink as a CallSink, when it is one.
func AsCallSink(sink ReportSink) (CallSink, bool) {
	cs, ok := sink.(CallSink)
	return cs, ok
}

// SelfReporting is implemented by notifiers that report by themselves
// rather than through an HTTP callback: the SIP adapter, on whose calls the
// gateway itself listens for key presses, and Kannel's box transport, whose
// reports come on its connection to bearerbox. Attach starts what listens
// (the SIP user agent, the connection) and says where reports and
// confirmations go; it is called once at start-up, by the process that
// sends (a worker), and its error stops the start. Notify refuses to send
// before it (retry).
type SelfReporting interface {
	Attach(sink CallSink) error
}

// The keys a call's menu takes.
const (
	KeyConfirm = '1' // 确认收到
	KeyReplay  = '2' // 重听
)

// What a call says around the warning.
const (
	// VoiceMenu ends every call that asks for confirmation.
	VoiceMenu = "确认收到请按1，重听请按2。"
	// VoiceThanks answers the key press "1".
	VoiceThanks = "已确认收到，谢谢，再见。"
)

// MaxSpokenInstruction bounds the instruction a call reads out, in
// characters: a call is for getting the official to the full text, not for
// reading a document over the phone.
const MaxSpokenInstruction = 150

// Speech is what a phone call says, part by part, before a synthesiser or a
// provider's approved template joins the parts.
type Speech struct {
	// Label marks a drill or a test: 【演练】, 【测试】; empty otherwise.
	Label string
	// Notice says what kind of message the call is when it is not the
	// warning itself: 预警变更, 请确认收到, 预警解除, 未签收督办.
	Notice string
	// Level is the hazard and the level as spoken: 暴雨红色预警，一级，特别严重.
	Level string
	// Area is where the warning applies (五华区), when the batch says.
	Area string
	// Headline is the warning's headline.
	Headline string
	// Body is what a lifted notice or an escalation says instead of the
	// instruction.
	Body string
	// Instruction is what to do, cut to MaxSpokenInstruction characters.
	Instruction string
	// Menu is VoiceMenu when the call asks for a key press, else empty.
	Menu string
}

// spokenNumeral reads a roman level numeral as a Chinese numeral: a
// synthesiser reads 一级, not Ⅰ级.
var spokenNumeral = map[string]string{"Ⅰ": "一", "Ⅱ": "二", "Ⅲ": "三", "Ⅳ": "四"}

// Speak returns what a call of batch b says to recipient r. The warning
// itself, a change and a reminder ask the official to press 1; a lifted
// notice and an escalation (which tells a superior who has not confirmed)
// ask nothing.
func Speak(b *Batch, r warning.Recipient) Speech {
	w := b.Warning
	s := Speech{
		Label: w.Status.Label(),
		Level: w.Hazard.Chinese() + w.Level.Colour() + "预警，" + spokenNumeral[w.Level.Roman()] + "级，" + w.Level.Grade(),
		Area:  b.Area, Headline: w.Headline,
		Instruction: Truncate(w.Instruction, MaxSpokenInstruction),
		Menu:        VoiceMenu,
	}
	switch b.Notice {
	case NoticeChange:
		s.Notice = "预警变更"
	case NoticeReminder:
		s.Notice = "请确认收到"
	case NoticeLifted:
		s.Notice, s.Body, s.Instruction, s.Menu = "预警解除", "该预警已解除。", "", ""
	case NoticeEscalation:
		s.Notice, s.Body, s.Instruction, s.Menu = "未签收督办", b.Note, "", ""
	}
	if !r.Audience.Official() {
		s.Menu = ""
	}
	return s
}

// AsksKey reports whether the call waits for a key press.
func (s Speech) AsksKey() bool { return s.Menu != "" }

// Text joins the parts as one text for a synthesiser:
// 【演练】暴雨红色预警，一级，特别严重。预警区域：五华区。五华区暴雨红色预警。
// 防御指引：停止户外活动。确认收到请按1，重听请按2。
func (s Speech) Text() string {
	var sb strings.Builder
	sb.WriteString(s.Label)
	if s.Notice != "" {
		sb.WriteString(s.Notice + "：")
	}
	sentence := func(prefix, text string) {
		text = strings.TrimRight(strings.TrimSpace(text), "。.！!；; ")
		if text != "" {
			sb.WriteString(prefix + text + "。")
		}
	}
	sentence("", s.Level)
	sentence("预警区域：", s.Area)
	sentence("", s.Headline)
	sentence("", s.Body)
	sentence("防御指引：", s.Instruction)
	sb.WriteString(s.Menu)
	return sb.String()
}
