package voice

import "warngate/channels"

// Fields names what a cloud provider's template variable may carry, from
// what the call says (channels.Speech):
//
//	text         the whole warning as spoken, without the key menu
//	label        【演练】 or 【测试】, or empty
//	notice       预警变更, 请确认收到, 预警解除, 未签收督办, or empty
//	level        暴雨红色预警，一级，特别严重
//	area         五华区
//	headline     the headline
//	body         what a lifted notice or an escalation says
//	instruction  what to do
//
// The approved template holds the menu itself (确认收到请按1，重听请按2).
var Fields = []string{"text", "label", "notice", "level", "area", "headline", "body", "instruction"}

// Field returns the part of s that name (one of Fields) stands for, or ""
// for a name not in Fields.
func Field(name string, s channels.Speech) string {
	switch name {
	case "text":
		s.Menu = ""
		return s.Text()
	case "label":
		return s.Label
	case "notice":
		return s.Notice
	case "level":
		return s.Level
	case "area":
		return s.Area
	case "headline":
		return s.Headline
	case "body":
		return s.Body
	case "instruction":
		return s.Instruction
	}
	return ""
}
