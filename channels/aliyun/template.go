package aliyun

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"warngate/channels"
)

// Fields names what a template variable may carry, from the message
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

var variable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// template fills an approved template's ${variables} from a message and
// fits the result to the provider's limits.
type template struct {
	text     string            // the approved text, e.g. "${title}：${content}"
	params   map[string]string // variable → field
	vars     []string          // the variables, sorted
	sign     string            // the signature, shown as 【sign】
	maxChars int               // the whole message, signature included
	maxParam int               // one variable's value; 0 means no limit
}

// newTemplate checks that text's variables and params agree and name known
// fields.
func newTemplate(text string, params map[string]string, sign string, maxChars, maxParam int) (*template, []error) {
	var errs []error
	inText := map[string]bool{}
	for _, m := range variable.FindAllStringSubmatch(text, -1) {
		inText[m[1]] = true
	}
	t := &template{text: text, params: params, sign: sign, maxChars: maxChars, maxParam: maxParam}
	for v, f := range params {
		t.vars = append(t.vars, v)
		if !slices.Contains(Fields, f) {
			errs = append(errs, fmt.Errorf("aliyun.template_params.%s: unknown field %q: use one of %s", v, f, strings.Join(Fields, ", ")))
		}
		if !inText[v] {
			errs = append(errs, fmt.Errorf("aliyun.template_params.%s: the template has no ${%s}: remove it or correct aliyun.template", v, v))
		}
	}
	sort.Strings(t.vars)
	var missing []string
	for v := range inText {
		if _, ok := params[v]; !ok {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	for _, v := range missing {
		errs = append(errs, fmt.Errorf("aliyun.template_params: the template's ${%s} is not filled: add %s: <field> (one of %s)", v, v, strings.Join(Fields, ", ")))
	}
	return t, errs
}

// render returns the TemplateParam values for a message and the full text
// the phone shows, signature included. Values are cut (ending in "…") to
// maxParam characters each, then the longest value is cut until the whole
// message fits maxChars.
func (t *template) render(msg channels.Text) (map[string]string, string) {
	vals := make(map[string]string, len(t.params))
	for v, f := range t.params {
		s := field(f, msg)
		if t.maxParam > 0 {
			s = channels.Truncate(s, t.maxParam)
		}
		vals[v] = s
	}
	full := t.fill(vals)
	for over := utf8.RuneCountInString(full) - t.maxChars; over > 0; over = utf8.RuneCountInString(full) - t.maxChars {
		longest, n := "", 0
		for _, v := range t.vars {
			if c := utf8.RuneCountInString(vals[v]); c > n {
				longest, n = v, c
			}
		}
		if n <= 1 {
			break // only the template's own text is left: nothing more to cut
		}
		vals[longest] = channels.Truncate(vals[longest], max(1, n-over))
		full = t.fill(vals)
	}
	return vals, full
}

func (t *template) fill(vals map[string]string) string {
	return "【" + t.sign + "】" + variable.ReplaceAllStringFunc(t.text, func(m string) string {
		return vals[m[2:len(m)-1]]
	})
}
