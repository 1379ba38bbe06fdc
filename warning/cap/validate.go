package cap

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate checks an alert against CAP 1.2: required elements present,
// enumerations spelled as CAP spells them, identifiers without spaces or
// commas, times CAP can write, shapes closed and on the globe, and text that
// XML can carry. It reports every problem at once, each an *Error.
func (a *Alert) Validate() error {
	var p problems
	return a.validate(nil, &p)
}

type validator struct {
	bad map[string]bool // paths Parse has already reported
	p   *problems
}

func (v validator) add(path, format string, args ...any) {
	if v.bad[path] {
		return
	}
	v.p.add(path, format, args...)
}

func (v validator) required(path, s string) bool {
	if s == "" {
		v.add(path, "required element missing or empty")
		return false
	}
	return true
}

// text checks that s can be written as XML character data.
func (v validator) text(path, s string) {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				v.add(path, "text is not valid UTF-8")
				return
			}
		}
		if !xmlChar(r) {
			v.add(path, "text holds character U+%04X, which XML cannot carry", r)
			return
		}
	}
}

func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || (r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// token checks an identifier or sender: CAP forbids spaces, commas, < and &.
func (v validator) token(path, s string) {
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r == ',' || r == '<' || r == '&' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}); i >= 0 {
		v.add(path, "%q holds %q, which CAP forbids here (no spaces, commas, < or &)", clip(s), s[i:i+1])
		return
	}
	v.text(path, s)
}

func (v validator) enum(path, what string, enum []string, s string, need bool) {
	if s == "" {
		if need {
			v.required(path, s)
		}
		return
	}
	if canonical(enum, s) != s {
		v.add(path, "%q is not a CAP %s (want %s)", clip(s), what, orList(enum))
	}
}

func (v validator) time(path string, t time.Time, need bool) {
	if t.IsZero() {
		if need {
			v.required(path, "")
		}
		return
	}
	if err := checkTime(t); err != nil {
		v.add(path, "%v", err)
	}
}

// checkTime reports a time that TimeLayout cannot write as a valid
// xs:dateTime.
func checkTime(t time.Time) error {
	_, off := t.Zone()
	if y := t.Year(); y < 1 || y > 9999 {
		return fmt.Errorf("year %d is outside 0001..9999", y)
	}
	if off%60 != 0 || off > 14*3600 || off < -14*3600 {
		return fmt.Errorf("offset %s is not whole minutes within ±14:00", t.Format("-07:00:00"))
	}
	return nil
}

var languageRE = regexp.MustCompile(`^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$`)
var integerRE = regexp.MustCompile(`^[+-]?[0-9]+$`)

func (a *Alert) validate(bad map[string]bool, p *problems) error {
	v := validator{bad: bad, p: p}
	const at = "alert"
	if v.required(at+"/identifier", a.Identifier) {
		v.token(at+"/identifier", a.Identifier)
	}
	if v.required(at+"/sender", a.Sender) {
		v.token(at+"/sender", a.Sender)
	}
	v.time(at+"/sent", a.Sent, true)
	v.enum(at+"/status", "status", statuses, a.Status, true)
	v.enum(at+"/msgType", "msgType", msgTypes, a.MsgType, true)
	v.enum(at+"/scope", "scope", scopes, a.Scope, true)
	v.text(at+"/source", a.Source)
	v.text(at+"/restriction", a.Restriction)
	v.text(at+"/addresses", a.Addresses)
	for i, c := range a.Codes {
		v.text(indexed(at, "code", i+1), c)
	}
	v.text(at+"/note", a.Note)
	for _, r := range a.References {
		path := at + "/references"
		if r.Identifier == "" {
			v.add(path, "a reference has no identifier")
			continue
		}
		v.token(path, r.Identifier)
		if r.Sender != "" || !r.Sent.IsZero() {
			if r.Sender == "" || r.Sent.IsZero() {
				v.add(path, "reference %q: want sender,identifier,sent", r.Identifier)
				continue
			}
			v.token(path, r.Sender)
			v.time(path, r.Sent, true)
		}
	}
	v.text(at+"/incidents", a.Incidents)
	for i := range a.Infos {
		a.Infos[i].validate(v, indexed(at, "info", i+1))
	}
	return p.err()
}

func (in *Info) validate(v validator, at string) {
	if in.Language != "" && !languageRE.MatchString(in.Language) {
		v.add(at+"/language", "%q is not a language tag (want e.g. zh-CN)", clip(in.Language))
	}
	if len(in.Categories) == 0 {
		v.required(at+"/category", "")
	}
	for _, c := range in.Categories {
		v.enum(at+"/category", "category", categories, c, true)
	}
	if v.required(at+"/event", in.Event) {
		v.text(at+"/event", in.Event)
	}
	for _, r := range in.ResponseTypes {
		v.enum(at+"/responseType", "responseType", responseTypes, r, true)
	}
	v.enum(at+"/urgency", "urgency", urgencies, in.Urgency, true)
	v.enum(at+"/severity", "severity", severities, in.Severity, true)
	v.enum(at+"/certainty", "certainty", certainties, in.Certainty, true)
	v.text(at+"/audience", in.Audience)
	for i, c := range in.EventCodes {
		v.pair(indexed(at, "eventCode", i+1), c)
	}
	v.time(at+"/effective", in.Effective, false)
	v.time(at+"/onset", in.Onset, false)
	v.time(at+"/expires", in.Expires, false)
	for _, f := range []struct{ name, s string }{{"senderName", in.SenderName}, {"headline", in.Headline},
		{"description", in.Description}, {"instruction", in.Instruction}, {"web", in.Web}, {"contact", in.Contact}} {
		v.text(at+"/"+f.name, f.s)
	}
	for i, pv := range in.Parameters {
		v.pair(indexed(at, "parameter", i+1), pv)
	}
	for i, r := range in.Resources {
		path := indexed(at, "resource", i+1)
		if v.required(path+"/resourceDesc", r.Desc) {
			v.text(path+"/resourceDesc", r.Desc)
		}
		if v.required(path+"/mimeType", r.MimeType) {
			v.text(path+"/mimeType", r.MimeType)
		}
		if r.Size != "" && !integerRE.MatchString(r.Size) {
			v.add(path+"/size", "%q is not an integer", clip(r.Size))
		}
		v.text(path+"/uri", r.URI)
		v.text(path+"/derefUri", r.DerefURI)
		v.text(path+"/digest", r.Digest)
	}
	for i := range in.Areas {
		in.Areas[i].validate(v, indexed(at, "area", i+1))
	}
}

func (v validator) pair(at string, pv Value) {
	if v.required(at+"/valueName", pv.Name) {
		v.text(at+"/valueName", pv.Name)
	}
	v.text(at+"/value", pv.Value)
}

func (ar *Area) validate(v validator, at string) {
	if v.required(at+"/areaDesc", ar.Desc) {
		v.text(at+"/areaDesc", ar.Desc)
	}
	for i, poly := range ar.Polygons {
		path := indexed(at, "polygon", i+1)
		if len(poly) < 4 || poly[0] != poly[len(poly)-1] {
			v.add(path, "a polygon needs at least 4 points, the last equal to the first")
			continue
		}
		for _, pt := range poly {
			if err := checkLatLon(pt[0], pt[1]); err != nil {
				v.add(path, "%v", err)
				break
			}
		}
	}
	for i, c := range ar.Circles {
		path := indexed(at, "circle", i+1)
		if err := checkLatLon(c.Lat, c.Lon); err != nil {
			v.add(path, "%v", err)
		} else if !(c.RadiusKm >= 0 && c.RadiusKm <= 20040) || math.IsInf(c.RadiusKm, 0) {
			v.add(path, "radius %v km is outside 0..20040", c.RadiusKm)
		}
	}
	for i, g := range ar.Geocodes {
		v.pair(indexed(at, "geocode", i+1), g)
	}
	if ar.Altitude != "" && !decimalRE.MatchString(ar.Altitude) {
		v.add(at+"/altitude", "%q is not a decimal number of feet", clip(ar.Altitude))
	}
	if ar.Ceiling != "" && !decimalRE.MatchString(ar.Ceiling) {
		v.add(at+"/ceiling", "%q is not a decimal number of feet", clip(ar.Ceiling))
	}
}
