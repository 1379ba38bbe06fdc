package channels

import (
	"strings"
	"unicode/utf8"

	"warngate/warning"
)

// Text is what a message says, before a channel fits it to its limits.
type Text struct {
	Title       string // 【演练】五华区暴雨红色预警
	Body        string // the description
	Instruction string // what to do
	Level       string // 红色预警（Ⅰ级/特别严重）
	AckURL      string // for officials: the confirmation link
}

// Compose builds the text of a batch's message for one recipient. Change and
// lifted notices are short: recipients already hold the full warning.
func Compose(b *Batch, r warning.Recipient) Text {
	w := b.Warning
	t := Text{
		Title: w.Title(),
		Level: w.Hazard.Chinese() + w.Level.Colour() + "预警（" + w.Level.Roman() + "级/" + w.Level.Grade() + "）",
	}
	switch b.Notice {
	case NoticeLifted:
		t.Title = w.Status.Label() + "【解除】" + w.Headline
		t.Body = "该预警已解除。"
	case NoticeReminder:
		t.Title = w.Status.Label() + "【请确认收到】" + w.Headline
		t.Body = w.Description
		t.Instruction = w.Instruction
	case NoticeEscalation:
		t.Title = w.Status.Label() + "【未签收督办】" + w.Headline
		t.Body = b.Note
	case NoticeChange:
		t.Title = w.Status.Label() + "【变更】" + w.Headline
		t.Body = w.Description
		t.Instruction = w.Instruction
	default:
		t.Body = w.Description
		t.Instruction = w.Instruction
	}
	if b.AckURL != nil && r.Audience.Official() {
		t.AckURL = b.AckURL(r)
	}
	return t
}

// Plain joins the text for channels without structure (SMS, TTS, screens).
// An official's text ends with the confirmation request.
func (t Text) Plain() string {
	var sb strings.Builder
	sb.WriteString(t.Title)
	if t.Body != "" {
		sb.WriteString("：")
		sb.WriteString(t.Body)
	}
	if t.Instruction != "" {
		sb.WriteString(" 防御指引：")
		sb.WriteString(t.Instruction)
	}
	if t.AckURL != "" {
		sb.WriteString(" 请点击确认收到：")
		sb.WriteString(t.AckURL)
		sb.WriteString(" 或回复1")
	}
	return sb.String()
}

// SMSText is the text an SMS to r shows on the phone: the provider's
// 【signature】, then the composed message (title, text, instruction and,
// for an official, the confirmation link). It is what an SMS adapter sends
// and what its provider bills, SMSSegments of it.
func SMSText(signature string, b *Batch, r warning.Recipient) string {
	prefix := "【" + signature + "】"
	return prefix + Compose(b, r).Fit(MaxSMSParts*SegmentMulti-utf8.RuneCountInString(prefix))
}

// MaxSMSParts is the most parts one SMS is sent in. Carriers and SMS
// gateways cut a longer message (Kannel's sendsms max-messages, 10 in the
// shipped configuration), and the cut would take the end of the text: the
// confirmation link. A longer text is shortened instead (Text.Fit).
const MaxSMSParts = 10

// Fit is Plain in at most n characters: when the whole does not fit, the
// description is shortened first and then the instruction, each cut marked
// with "…", so that the title, the level and an official's confirmation
// link are always whole. (A title longer than n is cut last.)
func (t Text) Fit(n int) string {
	full := t.Plain()
	over := utf8.RuneCountInString(full) - n
	if over <= 0 {
		return full
	}
	for _, part := range []*string{&t.Body, &t.Instruction} {
		have := utf8.RuneCountInString(*part)
		if have == 0 {
			continue
		}
		if keep := have - over - 1; keep > 0 {
			*part = string([]rune(*part)[:keep]) + "…"
			return t.Plain()
		}
		over -= have - 1
		*part = "…"
	}
	return Truncate(t.Plain(), n)
}

// DefaultSignature is the signature of SMS whose provider names none: the
// simulator's, and a preview's without an SMS provider.
const DefaultSignature = "昆明市应急管理局"

// SMSTexter is an SMS provider that says what its message to a recipient
// shows, signature included, so that what is previewed and billed is what
// the phone gets.
type SMSTexter interface {
	SMSText(b *Batch, r warning.Recipient) string
}

// SMS segment sizes in characters, for text with Chinese in it (UCS-2).
const (
	SegmentSingle = 70
	SegmentMulti  = 67
)

// SMSSegments returns how many billed parts a text takes: one up to 70
// characters, then 67 each. Carriers count characters, not bytes.
func SMSSegments(text string) int {
	n := utf8.RuneCountInString(text)
	switch {
	case n == 0:
		return 0
	case n <= SegmentSingle:
		return 1
	}
	return (n + SegmentMulti - 1) / SegmentMulti
}

// FirstLine returns the first line of a provider's answer, trimmed and cut
// to 200 characters, to quote in an error; "(empty answer)" when it has
// none.
func FirstLine(answer string) string {
	s := strings.TrimSpace(answer)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if utf8.RuneCountInString(s) > 200 {
		s = string([]rune(s)[:200])
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// Truncate cuts text to at most n characters, ending with "…" when cut.
func Truncate(text string, n int) string {
	if utf8.RuneCountInString(text) <= n {
		return text
	}
	r := []rune(text)
	return string(r[:n-1]) + "…"
}
