package cloudsms

import (
	"regexp"
	"unicode/utf8"

	"warngate/channels"
)

// Fields names what a template value may carry, from the message composed
// for a recipient (channels.Compose):
//
//	title        【演练】五华区暴雨红色预警
//	level        暴雨红色预警（Ⅰ级/特别严重）
//	body         the description
//	instruction  what to do
//	content      body, then " 防御指引：" and the instruction
//	text         the whole message (title：content, and an official's confirmation request)
//	ack_url      an official's confirmation link; empty for others
var Fields = []string{"title", "level", "body", "instruction", "content", "text", "ack_url"}

// Field returns the field of msg that name (one of Fields) stands for, or
// "" for a name not in Fields.
func Field(name string, msg channels.Text) string {
	switch name {
	case "title":
		return msg.Title
	case "level":
		return msg.Level
	case "body":
		return msg.Body
	case "instruction":
		return msg.Instruction
	case "content":
		if msg.Instruction == "" {
			return msg.Body
		}
		return msg.Body + " 防御指引：" + msg.Instruction
	case "text":
		return msg.Plain()
	case "ack_url":
		return msg.AckURL
	}
	return ""
}

// Template is an approved template, the fields of the message that fill
// its values, and the limits the message must fit. The provider's
// placeholder syntax is Placeholder and Value.
type Template struct {
	// Text is the approved text, e.g. "${title}：${content}".
	Text string
	// Fields names the field (one of Fields) that fills each value.
	Fields []string
	// Placeholder matches one placeholder in Text.
	Placeholder *regexp.Regexp
	// Value returns what stands in the text for a placeholder, given the
	// values in the order of Fields.
	Value func(placeholder string, vals []string) string
	// Sign is the signature, shown first as 【Sign】.
	Sign string
	// MaxChars bounds the whole message, signature included.
	MaxChars int
	// MaxParam bounds each value; 0 means no limit.
	MaxParam int
}

// Render returns the values for msg, in the order of Fields, and the full
// text the phone shows, signature included. Values are cut (ending in "…")
// to MaxParam characters each, then the longest value (the first of the
// longest) is cut until the whole message fits MaxChars.
func (t *Template) Render(msg channels.Text) ([]string, string) {
	vals := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		s := Field(f, msg)
		if t.MaxParam > 0 {
			s = channels.Truncate(s, t.MaxParam)
		}
		vals[i] = s
	}
	full := t.Fill(vals)
	for over := utf8.RuneCountInString(full) - t.MaxChars; over > 0; over = utf8.RuneCountInString(full) - t.MaxChars {
		longest, n := -1, 0
		for i, v := range vals {
			if c := utf8.RuneCountInString(v); c > n {
				longest, n = i, c
			}
		}
		if n <= 1 {
			break // only the template's own text is left: nothing more to cut
		}
		vals[longest] = channels.Truncate(vals[longest], max(1, n-over))
		full = t.Fill(vals)
	}
	return vals, full
}

// Fill returns the text the phone shows for vals (in the order of Fields):
// the signature, then Text with each placeholder replaced by its value.
func (t *Template) Fill(vals []string) string {
	return "【" + t.Sign + "】" + t.Placeholder.ReplaceAllStringFunc(t.Text, func(m string) string {
		return t.Value(m, vals)
	})
}
