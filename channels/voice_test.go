package channels_test

import (
	"strings"
	"testing"

	"warngate/channels"
	"warngate/warning"
)

func TestSpeakTheWarningThenTheMenu(t *testing.T) {
	w := &warning.Warning{ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual,
		Headline: "五华区暴雨红色预警", Description: "预计未来3小时有大暴雨。", Instruction: "停止户外活动，远离河道。"}
	official := warning.Recipient{ID: "p1", Audience: warning.TownshipOfficials}
	tests := []struct {
		name   string
		status warning.Status
		notice channels.Notice
		area   string
		note   string
		want   string
		asks   bool
	}{
		{"full", warning.StatusActual, channels.NoticeFull, "五华区", "",
			"暴雨红色预警，一级，特别严重。预警区域：五华区。五华区暴雨红色预警。防御指引：停止户外活动，远离河道。确认收到请按1，重听请按2。", true},
		{"drill", warning.StatusExercise, "", "", "",
			"【演练】暴雨红色预警，一级，特别严重。五华区暴雨红色预警。防御指引：停止户外活动，远离河道。确认收到请按1，重听请按2。", true},
		{"change", warning.StatusActual, channels.NoticeChange, "", "",
			"预警变更：暴雨红色预警，一级，特别严重。五华区暴雨红色预警。防御指引：停止户外活动，远离河道。确认收到请按1，重听请按2。", true},
		{"reminder", warning.StatusTest, channels.NoticeReminder, "", "",
			"【测试】请确认收到：暴雨红色预警，一级，特别严重。五华区暴雨红色预警。防御指引：停止户外活动，远离河道。确认收到请按1，重听请按2。", true},
		{"lifted", warning.StatusExercise, channels.NoticeLifted, "", "",
			"【演练】预警解除：暴雨红色预警，一级，特别严重。五华区暴雨红色预警。该预警已解除。", false},
		{"escalation", warning.StatusActual, channels.NoticeEscalation, "", "西翥街道张三（值班人员）5分钟未签收",
			"未签收督办：暴雨红色预警，一级，特别严重。五华区暴雨红色预警。西翥街道张三（值班人员）5分钟未签收。", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := *w
			w.Status = tt.status
			b := &channels.Batch{Warning: &w, Channel: warning.Voice, Notice: tt.notice, Area: tt.area, Note: tt.note}
			s := channels.Speak(b, official)
			if got := s.Text(); got != tt.want {
				t.Errorf("says\n%s\nwant\n%s", got, tt.want)
			}
			if s.AsksKey() != tt.asks {
				t.Errorf("asks for a key: %v", s.AsksKey())
			}
		})
	}
}

func TestSpeakLevelsAndLongInstructions(t *testing.T) {
	w := &warning.Warning{Hazard: warning.Heat, Level: warning.Blue, Headline: "高温蓝色预警", Instruction: strings.Repeat("注意防暑", 100)}
	b := &channels.Batch{Warning: w, Channel: warning.Voice}
	s := channels.Speak(b, warning.Recipient{Audience: warning.VillageOfficials})
	if s.Level != "高温蓝色预警，四级，一般" {
		t.Errorf("level %q", s.Level)
	}
	if n := len([]rune(s.Instruction)); n != channels.MaxSpokenInstruction || !strings.HasSuffix(s.Instruction, "…") {
		t.Errorf("instruction of %d characters: %q", n, s.Instruction)
	}
	if channels.Speak(b, warning.Recipient{Audience: warning.Residents}).AsksKey() {
		t.Error("a resident is asked to press 1")
	}
}
