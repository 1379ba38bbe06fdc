package channels_test

import (
	"strings"
	"testing"

	"warngate/channels"
	"warngate/warning"
)

func TestSMSSegments(t *testing.T) {
	tests := []struct {
		n    int
		want int
	}{{0, 0}, {1, 1}, {70, 1}, {71, 2}, {134, 2}, {135, 3}, {201, 3}, {202, 4}}
	for _, tt := range tests {
		if got := channels.SMSSegments(strings.Repeat("暴", tt.n)); got != tt.want {
			t.Errorf("%d characters: %d segments, want %d", tt.n, got, tt.want)
		}
	}
}

func TestComposeMarksDrillsAndAsksOfficials(t *testing.T) {
	w := &warning.Warning{ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusExercise,
		Headline: "五华区暴雨红色预警", Description: "预计未来3小时有大暴雨。", Instruction: "远离河道。"}
	b := &channels.Batch{Warning: w, Channel: warning.SMS, AckURL: func(r warning.Recipient) string { return "https://k.example/a/" + r.ID }}
	official := channels.Compose(b, warning.Recipient{ID: "o1", Audience: warning.TownshipOfficials}).Plain()
	if !strings.HasPrefix(official, "【演练】五华区暴雨红色预警：") || !strings.Contains(official, "https://k.example/a/o1") || !strings.HasSuffix(official, "或回复1") {
		t.Errorf("official text: %s", official)
	}
	resident := channels.Compose(b, warning.Recipient{ID: "r1", Audience: warning.Residents}).Plain()
	if strings.Contains(resident, "确认") {
		t.Errorf("a resident is asked to confirm: %s", resident)
	}
	b.Notice = channels.NoticeLifted
	if got := channels.Compose(b, warning.Recipient{ID: "r1", Audience: warning.Residents}).Title; got != "【演练】【解除】五华区暴雨红色预警" {
		t.Errorf("lifted title %q", got)
	}
	if got := channels.Truncate("一二三四五", 3); got != "一二…" {
		t.Errorf("truncate: %q", got)
	}
}

// A description as long as the API takes (4,000 characters) would make an
// SMS of 60 parts; carriers and Kannel cut it at 10, and with it the
// confirmation link at its end. The text is shortened instead: title,
// instruction and link stay whole, and the SMS fits in 10 parts.
func TestLongSMSKeepsTheConfirmationLink(t *testing.T) {
	w := &warning.Warning{ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red,
		Headline: "五华区暴雨红色预警", Description: strings.Repeat("雨", warning.MaxDescription), Instruction: "远离河道，转移到安全地带。"}
	b := &channels.Batch{Warning: w, Channel: warning.SMS, AckURL: func(r warning.Recipient) string { return "https://k.example/a/" + r.ID }}
	official := channels.SMSText("昆明市应急管理局", b, warning.Recipient{ID: "o1", Audience: warning.TownshipOfficials})
	if n := channels.SMSSegments(official); n > channels.MaxSMSParts {
		t.Errorf("official SMS in %d parts, more than %d", n, channels.MaxSMSParts)
	}
	if !strings.HasPrefix(official, "【昆明市应急管理局】五华区暴雨红色预警：雨") || !strings.Contains(official, "雨… 防御指引：远离河道，转移到安全地带。") ||
		!strings.HasSuffix(official, "https://k.example/a/o1 或回复1") {
		t.Errorf("official SMS cut badly: …%s", string([]rune(official)[600:]))
	}
	if n := channels.SMSSegments(official); n != channels.MaxSMSParts {
		t.Errorf("official SMS in %d parts: shortened more than needed", n)
	}
	// Instruction too long as well: both are cut, the link still whole.
	w.Instruction = strings.Repeat("撤", 2000)
	official = channels.SMSText("昆明市应急管理局", b, warning.Recipient{ID: "o1", Audience: warning.TownshipOfficials})
	if channels.SMSSegments(official) > channels.MaxSMSParts || !strings.HasSuffix(official, "https://k.example/a/o1 或回复1") || !strings.Contains(official, "：… 防御指引：撤") {
		t.Errorf("official SMS with a long instruction: %s", official)
	}
	// A short text is untouched.
	w.Description, w.Instruction = "预计未来3小时有大暴雨。", "远离河道。"
	if got := channels.SMSText("昆明市应急管理局", b, warning.Recipient{ID: "r1", Audience: warning.Residents}); got != "【昆明市应急管理局】五华区暴雨红色预警：预计未来3小时有大暴雨。 防御指引：远离河道。" {
		t.Errorf("short SMS changed: %s", got)
	}
}

func TestFirstLine(t *testing.T) {
	long := strings.Repeat("错", 250)
	for in, want := range map[string]string{
		"  isv.BUSINESS_LIMIT_CONTROL\r\ntrace 1\n": "isv.BUSINESS_LIMIT_CONTROL",
		"\n\n":      "(empty answer)",
		"":          "(empty answer)",
		long:        strings.Repeat("错", 200),
		"3: Queued": "3: Queued",
	} {
		if got := channels.FirstLine(in); got != want {
			t.Errorf("FirstLine(%.20q) = %.20q, want %.20q", in, got, want)
		}
	}
}

func TestDigits(t *testing.T) {
	for in, want := range map[string]bool{"12379": true, "": false, "12a": false, "+86": false, "１２": false} {
		if got := channels.Digits(in); got != want {
			t.Errorf("Digits(%q) = %v", in, got)
		}
	}
}

func TestMainlandNumbers(t *testing.T) {
	for in, want := range map[string]string{
		"13800000001": "13800000001", "+8613800000001": "13800000001", "087163000000": "087163000000",
		"0871-6300 0000": "087163000000", "+86 871 63000000": "087163000000", "01012345678": "01012345678",
		"+1 555 0100": "", "12345": "", "0012025550100": "", "87163000000": "", "00871630000": "", "10086": "",
	} {
		got, ok := channels.MainlandNumber(in)
		if got != want || ok != (want != "") {
			t.Errorf("MainlandNumber(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
