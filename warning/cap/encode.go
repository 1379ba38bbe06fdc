package cap

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"warngate/warning"
)

// Encode writes the alert as a CAP 1.2 document in UTF-8, whatever version it
// was read as. It refuses an alert that Validate refuses, so what it writes
// validates against the OASIS schema. XML signatures are not kept: re-encoding
// would break them anyway.
func (a *Alert) Encode() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := xmlWriter{&b}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<alert xmlns="` + Namespace12 + `">` + "\n")
	w.el(1, "identifier", a.Identifier)
	w.el(1, "sender", a.Sender)
	w.time(1, "sent", a.Sent)
	w.el(1, "status", a.Status)
	w.el(1, "msgType", a.MsgType)
	w.el(1, "source", a.Source)
	w.el(1, "scope", a.Scope)
	w.el(1, "restriction", a.Restriction)
	w.el(1, "addresses", a.Addresses)
	for _, c := range a.Codes {
		w.el(1, "code", c)
	}
	w.el(1, "note", a.Note)
	if len(a.References) > 0 {
		refs := make([]string, len(a.References))
		for i, r := range a.References {
			refs[i] = r.String()
		}
		w.el(1, "references", strings.Join(refs, " "))
	}
	w.el(1, "incidents", a.Incidents)
	for _, in := range a.Infos {
		w.open(1, "info")
		w.el(2, "language", in.Language)
		for _, c := range in.Categories {
			w.el(2, "category", c)
		}
		w.el(2, "event", in.Event)
		for _, r := range in.ResponseTypes {
			w.el(2, "responseType", r)
		}
		w.el(2, "urgency", in.Urgency)
		w.el(2, "severity", in.Severity)
		w.el(2, "certainty", in.Certainty)
		w.el(2, "audience", in.Audience)
		for _, v := range in.EventCodes {
			w.pair(2, "eventCode", v)
		}
		w.time(2, "effective", in.Effective)
		w.time(2, "onset", in.Onset)
		w.time(2, "expires", in.Expires)
		w.el(2, "senderName", in.SenderName)
		w.el(2, "headline", in.Headline)
		w.el(2, "description", in.Description)
		w.el(2, "instruction", in.Instruction)
		w.el(2, "web", in.Web)
		w.el(2, "contact", in.Contact)
		for _, v := range in.Parameters {
			w.pair(2, "parameter", v)
		}
		for _, r := range in.Resources {
			w.open(2, "resource")
			w.el(3, "resourceDesc", r.Desc)
			w.el(3, "mimeType", r.MimeType)
			w.el(3, "size", r.Size)
			w.el(3, "uri", r.URI)
			w.el(3, "derefUri", r.DerefURI)
			w.el(3, "digest", r.Digest)
			w.close(2, "resource")
		}
		for _, ar := range in.Areas {
			w.open(2, "area")
			w.el(3, "areaDesc", ar.Desc)
			for _, poly := range ar.Polygons {
				pts := make([]string, len(poly))
				for i, p := range poly {
					pts[i] = num(p[0]) + "," + num(p[1])
				}
				w.el(3, "polygon", strings.Join(pts, " "))
			}
			for _, c := range ar.Circles {
				w.el(3, "circle", num(c.Lat)+","+num(c.Lon)+" "+num(c.RadiusKm))
			}
			for _, g := range ar.Geocodes {
				w.pair(3, "geocode", g)
			}
			w.el(3, "altitude", ar.Altitude)
			w.el(3, "ceiling", ar.Ceiling)
			w.close(2, "area")
		}
		w.close(1, "info")
	}
	b.WriteString("</alert>\n")
	return b.Bytes(), nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// xmlText drops from s what XML 1.0 cannot carry: most control characters,
// U+FFFE and U+FFFF, and bytes that are not UTF-8.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		if xmlChar(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
}

type xmlWriter struct{ b *bytes.Buffer }

func (w xmlWriter) indent(depth int) {
	for range depth {
		w.b.WriteString("  ")
	}
}

func (w xmlWriter) open(depth int, name string) {
	w.indent(depth)
	w.b.WriteString("<" + name + ">\n")
}

func (w xmlWriter) close(depth int, name string) {
	w.indent(depth)
	w.b.WriteString("</" + name + ">\n")
}

// el writes a text element, or nothing when s is empty.
func (w xmlWriter) el(depth int, name, s string) {
	if s == "" {
		return
	}
	w.indent(depth)
	w.b.WriteString("<" + name + ">")
	escape(w.b, s)
	w.b.WriteString("</" + name + ">\n")
}

// pair writes a valueName/value element; an empty value is written, since
// the schema wants the element.
func (w xmlWriter) pair(depth int, name string, v Value) {
	w.open(depth, name)
	w.el(depth+1, "valueName", v.Name)
	w.indent(depth + 1)
	w.b.WriteString("<value>")
	escape(w.b, v.Value)
	w.b.WriteString("</value>\n")
	w.close(depth, name)
}

func (w xmlWriter) time(depth int, name string, t time.Time) {
	if !t.IsZero() {
		w.el(depth, name, t.Format(TimeLayout))
	}
}

// escape writes s as character data. Unlike xml.EscapeText it leaves line
// breaks and tabs readable; a carriage return is escaped so that it survives
// XML's line-end normalisation.
func escape(b *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}

// EncodeOptions say how Encode names the bureau and its areas.
type EncodeOptions struct {
	// Sender is the CAP sender, e.g. "kmyjj@km.gov.cn"; no spaces or commas.
	// Empty means the warning's own Sender.
	Sender string
	// IdentifierPrefix goes before the warning's id to make the CAP
	// identifier, e.g. "CN-KM-YJJ-".
	IdentifierPrefix string
	// SenderName is the bureau's name as people read it, e.g. 昆明市应急管理局.
	// Empty means none is written.
	SenderName string
	// AreaName names a division for <areaDesc>. Nil, or an empty answer,
	// means the code itself.
	AreaName func(code string) string
	// Reference finds how CAP names an earlier warning that this one
	// updates or cancels, given its id from Warning.References. It is needed
	// only for references that are not already "sender,identifier,sent".
	Reference func(id string) (Reference, bool)
}

// ChinaTime is the offset every time is written in: Beijing time, +08:00.
var ChinaTime = time.FixedZone("CST", 8*3600)

// GeocodeName is the valueName under which China's warning system (CMA's
// CAP included) carries 12-digit division codes.
const GeocodeName = "CPEAS Geographic Code"

// The valueNames warngate writes, and reads first, for its own fields.
const (
	HazardCodeName = "warngate:hazard"
	LevelParamName = "warngate:level"
)

// Encode writes a warning as a CAP 1.2 alert: one zh-CN <info> with the
// Chinese text (its headline led by 【演练】 or 【测试】 unless the warning is
// actual), then one <info> per translation, each with the same single <area>
// that carries one geocode per division code. Times are in +08:00.
//
// A cancelled warning (State cancelled) is written as the message that lifts
// it, so that a consumer polling its document takes the warning down: msgType
// Cancel, identifier IdentifierPrefix + id + CancelSuffix, sent when it was
// lifted, references naming the warning's own message, urgency Past,
// responseType AllClear, headlines led by 【已解除】 ("Lifted: " in English)
// and no instruction.
func Encode(w *warning.Warning, opts EncodeOptions) ([]byte, error) {
	a, err := fromWarning(w, opts)
	if err != nil {
		return nil, err
	}
	return a.Encode()
}

func fromWarning(w *warning.Warning, opts EncodeOptions) (*Alert, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &warning.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if w.ID == "" {
		bad("id", "required: the identifier is IdentifierPrefix + id")
	}
	sender := opts.Sender
	if sender == "" {
		sender = w.Sender
	}
	if sender == "" {
		bad("sender", "required: set EncodeOptions.Sender")
	}
	if w.Hazard.Chinese() == "" {
		bad("hazard", "unknown hazard %q", w.Hazard)
	}
	if !w.Level.Valid() {
		bad("level", "required: blue, yellow, orange or red")
	}
	status := map[warning.Status]string{warning.StatusActual: "Actual", warning.StatusExercise: "Exercise", warning.StatusTest: "Test"}[w.Status]
	if status == "" {
		bad("status", "%q: want actual, exercise or test", w.Status)
	}
	msgType := map[warning.MsgType]string{"": "Alert", warning.MsgAlert: "Alert", warning.MsgUpdate: "Update", warning.MsgCancel: "Cancel"}[w.MsgType]
	if msgType == "" {
		bad("msg_type", "%q: want alert, update or cancel", w.MsgType)
	}
	if len(w.Areas) == 0 {
		bad("areas", "required: at least one 12-digit division code")
	}
	for i, c := range w.Areas {
		if !warning.IsDivisionCode(c) {
			bad(fmt.Sprintf("areas[%d]", i), "%q is not a 12-digit division code", c)
		}
	}
	issued := w.Issued
	if issued.IsZero() {
		issued = w.Accepted
	}
	if issued.IsZero() {
		bad("issued", "required: when the warning was issued")
	}
	if w.Expires.IsZero() {
		bad("expires", "required: when the warning stops applying")
	}
	cancel := w.State == warning.StateCancelled
	var refs []Reference
	for i, id := range w.References {
		if cancel {
			break // a Cancel references the message it lifts, below
		}
		if r, ok := lookupReference(id, opts); ok {
			refs = append(refs, r)
		} else {
			bad(fmt.Sprintf("references[%d]", i), "%q is not \"sender,identifier,sent\" and EncodeOptions.Reference does not know it", id)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cap: encode warning %q: %w", w.ID, err)
	}

	identifier := opts.IdentifierPrefix + w.ID
	sent := issued.In(ChinaTime).Truncate(time.Second)
	if cancel {
		refs = []Reference{{Sender: sender, Identifier: identifier, Sent: sent}}
		identifier += CancelSuffix
		// A warning lifted before the time was kept has none: its Cancel
		// then says it was sent with the alert, which still orders after it.
		if !w.Cancelled.IsZero() && w.Cancelled.After(issued) {
			sent = w.Cancelled.In(ChinaTime).Truncate(time.Second)
		}
	}
	expires := w.Expires.In(ChinaTime).Truncate(time.Second)
	for _, t := range []time.Time{sent, expires} {
		if err := checkTime(t); err != nil {
			return nil, fmt.Errorf("cap: encode warning %q: %w", w.ID, err)
		}
	}
	names := make([]string, len(w.Areas))
	geocodes := make([]Value, len(w.Areas))
	for i, c := range w.Areas {
		names[i] = c
		if opts.AreaName != nil {
			if n := opts.AreaName(c); n != "" {
				names[i] = n
			}
		}
		geocodes[i] = Value{Name: GeocodeName, Value: c}
	}
	area := Area{Desc: strings.Join(names, "、"), Geocodes: geocodes}

	urgency := "Expected"
	if w.Level >= warning.Orange {
		urgency = "Immediate"
	}
	var response []string
	if w.MsgType == warning.MsgCancel || cancel {
		urgency, response = "Past", []string{"AllClear"}
	}
	msgType, title, instruction := msgType, w.Title(), w.Instruction
	if cancel {
		msgType, title, instruction = "Cancel", LiftedTitle(w), ""
	}
	// Text goes out as XML can carry it: a warning stored before its text
	// was checked (or by other means) still exports.
	info := func(lang, event, headline, description, instruction string) Info {
		headline, description, instruction = xmlText(headline), xmlText(description), xmlText(instruction)
		return Info{
			Language:      lang,
			Categories:    []string{category(w.Hazard)},
			Event:         event,
			ResponseTypes: response,
			Urgency:       urgency,
			Severity:      w.Level.Severity(),
			Certainty:     "Likely",
			EventCodes:    []Value{{Name: HazardCodeName, Value: string(w.Hazard)}},
			Expires:       expires,
			SenderName:    opts.SenderName,
			Headline:      headline,
			Description:   description,
			Instruction:   instruction,
			Parameters:    []Value{{Name: LevelParamName, Value: w.Level.Roman()}},
			Areas:         []Area{area},
		}
	}
	a := &Alert{
		Version:    "1.2",
		Identifier: identifier,
		Sender:     sender,
		Sent:       sent,
		Status:     status,
		MsgType:    msgType,
		Scope:      "Public",
		References: refs,
		// The Chinese headline carries 【演练】 or 【测试】, as every message must.
		Infos: []Info{info("zh-CN", w.Hazard.Chinese()+"预警", title, w.Description, instruction)},
	}
	for _, t := range w.Translations {
		event, headline, instruction := w.Hazard.Chinese()+"预警", t.Headline, t.Instruction
		english := strings.HasPrefix(strings.ToLower(t.Language), "en")
		if english {
			event = hazardEnglish[w.Hazard] + " warning"
		}
		if cancel {
			headline, instruction = liftedMark+headline, ""
			if english {
				headline = "Lifted: " + t.Headline
			}
		}
		a.Infos = append(a.Infos, info(t.Language, event, headline, t.Description, instruction))
	}
	return a, nil
}

// CancelSuffix follows a warning's identifier in the identifier of the
// Cancel that lifts it: every CAP message has its own identifier.
const CancelSuffix = "-cancel"

// liftedMark leads the headline of a lifted warning's Cancel.
const liftedMark = "【已解除】"

// LiftedTitle is the headline of a lifted warning's Cancel, after the drill
// or test marker: 【演练】【已解除】五华区暴雨红色预警.
func LiftedTitle(w *warning.Warning) string { return w.Status.Label() + liftedMark + w.Headline }

func lookupReference(id string, opts EncodeOptions) (Reference, bool) {
	if opts.Reference != nil {
		if r, ok := opts.Reference(id); ok {
			return r, true
		}
	}
	if strings.Count(id, ",") == 2 {
		if refs, err := ParseReferences(id); err == nil && len(refs) == 1 {
			return refs[0], true
		}
	}
	return Reference{}, false
}

// category is the CAP category of a hazard: CAP counts floods as
// meteorological.
func category(h warning.Hazard) string {
	switch h {
	case warning.GeoHazard, warning.Earthquake:
		return "Geo"
	case warning.ForestFire:
		return "Fire"
	case warning.OtherHazard:
		return "Other"
	}
	return "Met"
}
