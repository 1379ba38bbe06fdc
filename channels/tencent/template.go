package tencent

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"warngate/channels"
	"warngate/channels/internal/cloudsms"
)

// Fields names what a template parameter may carry: title, level, body,
// instruction, content (body and instruction), text (the whole message)
// and ack_url (an official's confirmation link), each from the message
// composed for a recipient (channels.Compose).
var Fields = slices.Clone(cloudsms.Fields)

var placeholder = regexp.MustCompile(`\{([0-9]+)\}`)

// template fills an approved template's {1}, {2}, … from a message and
// fits the result to the provider's limits.
type template struct{ cloudsms.Template }

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
	return &template{cloudsms.Template{Text: text, Fields: params, Placeholder: placeholder, Value: value,
		Sign: sign, MaxChars: maxChars, MaxParam: maxParam}}, errs
}

// value is what stands for the placeholder {n}: the n-th value, or the
// placeholder itself when there is none.
func value(m string, vals []string) string {
	n, _ := strconv.Atoi(m[1 : len(m)-1])
	if n < 1 || n > len(vals) {
		return m
	}
	return vals[n-1]
}

// render returns the TemplateParamSet for a message and the full text the
// phone shows, signature included (see cloudsms.Template.Render).
func (t *template) render(msg channels.Text) ([]string, string) { return t.Render(msg) }
