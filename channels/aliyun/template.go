package aliyun

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"warngate/channels"
	"warngate/channels/internal/cloudsms"
)

// Fields names what a template variable may carry: title, level, body,
// instruction, content (body and instruction), text (the whole message)
// and ack_url (an official's confirmation link), each from the message
// composed for a recipient (channels.Compose).
var Fields = slices.Clone(cloudsms.Fields)

var variable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// template fills an approved template's ${variables} from a message and
// fits the result to the provider's limits.
type template struct {
	cloudsms.Template          // Fields[i] fills vars[i]
	vars              []string // the variables, sorted
}

// newTemplate checks that text's variables and params (variable → field)
// agree and name known fields.
func newTemplate(text string, params map[string]string, sign string, maxChars, maxParam int) (*template, []error) {
	var errs []error
	inText := map[string]bool{}
	for _, m := range variable.FindAllStringSubmatch(text, -1) {
		inText[m[1]] = true
	}
	t := &template{}
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
	fields := make([]string, len(t.vars))
	for i, v := range t.vars {
		fields[i] = params[v]
	}
	t.Template = cloudsms.Template{Text: text, Fields: fields, Placeholder: variable, Value: t.value,
		Sign: sign, MaxChars: maxChars, MaxParam: maxParam}
	return t, errs
}

// value is what stands for the placeholder ${v}: v's value, or nothing.
func (t *template) value(placeholder string, vals []string) string {
	if i, ok := slices.BinarySearch(t.vars, placeholder[2:len(placeholder)-1]); ok {
		return vals[i]
	}
	return ""
}

// render returns the TemplateParam values for a message and the full text
// the phone shows, signature included (see cloudsms.Template.Render).
func (t *template) render(msg channels.Text) (map[string]string, string) {
	vals, full := t.Render(msg)
	out := make(map[string]string, len(vals))
	for i, v := range t.vars {
		out[v] = vals[i]
	}
	return out, full
}
