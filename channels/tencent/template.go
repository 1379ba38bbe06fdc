package tencent

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"warngate/channels"
)

// Fields names what a template parameter may carry, from the message
// composed for a recipient (channels.Compose):
//
//	title        【演练】五华区暴雨红色预警
//	level        暴雨红色预警（Ⅰ级/特别严重）
//	body         the description
//	instruction  what to do
//	content      body, then " 防御指引：" and the instruction
//	text         the whole message (title：content, and an official's confirmation request)
//	ack_url      an official's confirmation link; empty for others
var Fields = []string{"title", "level", "body", "instruction", "content", "text", "ack_url"}

func field(name string, t channels.Text) string {
	switch name {
	case "title":
		return t.Title
	case "level":
		return t.Level
	case "body":
		return t.Body
	case "instruction":
		return t.Instruction
	case "content":
		if t.Instruction == "" {
			return t.Body
		}
		return t.Body + " 防御指引：" + t.Instruction
	case "text":
		return t.Plain()
	case "ack_url":
		return t.AckURL
	}
	return ""
}

var placeholder = regexp.MustCompile(`\{([0-9]+)\}`)

// template fills an approved template's {1}, {2}, … from a message and
// fits the result to the provider's limits.
type template struct {
	text     string   // the approved text, e.g. "{1}：{2}"
	params   []string // field of {1}, {2}, …
	sign     string
	maxChars int // the whole message, signature included
	maxParam int // one value; 0 means no limit
}

// newTemplate checks that text's placeholders are exactly {1}…{n} for n
// params naming known fields.
func newTemplate(text string, params []string, sign string, maxChars, maxParam int) (*template, []error) {
	var errs []error
	used := map[int]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		used[n] = true
	}
	for i, f := range params {
		if !slices.Contains(Fields, f) {
			errs = append(errs, fmt.Errorf("tencent.template_params[%d]: unknown field %q: use one of %s", i, f, strings.Join(Fields, ", ")))
		}
		if !used[i+1] {
			errs = append(errs, fmt.Errorf("tencent.template_params[%d]: the template has no {%d}: remove it or correct tencent.template", i, i+1))
		}
	}
	for n := range used {
		if n < 1 || n > len(params) {
			errs = append(errs, fmt.Errorf("tencent.template: {%d} is not filled: template_params has %d entries, one per {1}, {2}, …", n, len(params)))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return &template{text: text, params: params, sign: sign, maxChars: maxChars, maxParam: maxParam}, errs
}

// render returns the TemplateParamSet for a message and the full text the
// phone shows, signature included. Values are cut (ending in "…") to
// maxParam characters each, then the longest is cut until the whole
// message fits maxChars.
func (t *template) render(msg channels.Text) ([]string, string) {
	vals := make([]string, len(t.params))
	for i, f := range t.params {
		s := field(f, msg)
		if t.maxParam > 0 {
			s = channels.Truncate(s, t.maxParam)
		}
		vals[i] = s
	}
	full := t.fill(vals)
	for over := utf8.RuneCountInString(full) - t.maxChars; over > 0; over = utf8.RuneCountInString(full) - t.maxChars {
		longest, n := -1, 0
		for i, v := range vals {
			if c := utf8.RuneCountInString(v); c > n {
				longest, n = i, c
			}
		}
		if n <= 1 {
			break
		}
		vals[longest] = channels.Truncate(vals[longest], max(1, n-over))
		full = t.fill(vals)
	}
	return vals, full
}

func (t *template) fill(vals []string) string {
	return "【" + t.sign + "】" + placeholder.ReplaceAllStringFunc(t.text, func(m string) string {
		n, _ := strconv.Atoi(m[1 : len(m)-1])
		if n < 1 || n > len(vals) {
			return m
		}
		return vals[n-1]
	})
}
