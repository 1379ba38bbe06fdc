package cap

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"warngate/warning"
)

// Jurisdiction says which divisions a gateway serves; the caller decides what
// "in Kunming" means.
type Jurisdiction interface {
	// Known reports whether a 12-digit division code lies within the
	// jurisdiction.
	Known(code string) bool
	// Locate returns the 12-digit codes of the divisions within the
	// jurisdiction that the shape touches; none means it lies outside.
	Locate(shape Shape) ([]string, error)
}

// DefaultLifetime is how long a warning lasts when its alert gives no expiry.
const DefaultLifetime = 24 * time.Hour

// Warning maps the alert to a warning of the gateway.
//
// The text comes from the first info in Chinese (zh-CN, zh, zh-Hans), else
// the first info; infos in other languages become Translations, one per
// language. The hazard comes from event codes and event names (see hazardOf),
// "other" when none is known. The level comes from warngate's own level
// parameter, else the last colour or level the headline names (so 蓝色升级为
// 黄色 is yellow, and 高温红色预警信号[Ⅰ级/特别严重] red), else the event,
// else the severity (Extreme red … Minor blue); an alert with none of these is
// refused, except a Cancel.
//
// Areas are the 12-digit codes of geocodes named "CPEAS Geographic Code"
// (6-digit county codes padded with zeros) that pick knows; an area with no
// such code but with polygons or circles is located by pick. Areas outside
// the jurisdiction are dropped; when none is left the error wraps
// ErrOutOfJurisdiction and names them. Areas are checked before anything
// else of the info, so that a document for elsewhere is refused as such. A Cancel without <info> yields a
// warning with no hazard, level or areas: the caller finds what it cancels by
// References, which hold the identifiers of the referenced alerts.
//
// A headline led by the status marker (【演练】, 【测试】) loses it, since
// messages add it from the status. The warning's ID and State are left for
// the caller to set; Issued is the
// alert's sent time, and Expires the chosen info's expiry or else sent plus
// DefaultLifetime.
func (a *Alert) Warning(pick Jurisdiction) (*warning.Warning, error) {
	w := &warning.Warning{
		Identifier: a.Identifier,
		Sender:     a.Sender,
		Issued:     a.Sent,
		Expires:    a.Sent.Add(DefaultLifetime),
	}
	switch a.Status {
	case "Actual":
		w.Status = warning.StatusActual
	case "Exercise":
		w.Status = warning.StatusExercise
	case "Test":
		w.Status = warning.StatusTest
	default:
		return nil, &Error{Path: "alert/status", Msg: fmt.Sprintf("%q messages are not warnings (want Actual, Exercise or Test)", a.Status)}
	}
	switch a.MsgType {
	case "Alert":
		w.MsgType = warning.MsgAlert
	case "Update":
		w.MsgType = warning.MsgUpdate
	case "Cancel":
		w.MsgType = warning.MsgCancel
	default:
		return nil, &Error{Path: "alert/msgType", Msg: fmt.Sprintf("%q messages are not warnings (want Alert, Update or Cancel)", a.MsgType)}
	}
	for _, r := range a.References {
		w.References = append(w.References, r.Identifier)
	}
	if len(a.Infos) == 0 {
		if w.MsgType == warning.MsgCancel {
			return w, nil
		}
		return nil, &Error{Path: "alert/info", Msg: fmt.Sprintf("an %s needs at least one <info> block", a.MsgType)}
	}

	primary := primaryInfo(a.Infos)
	in := &a.Infos[primary]
	// Where first: a document for somewhere else is out of the jurisdiction,
	// whatever else it lacks, and is answered as such.
	areas, err := a.areas(primary, pick)
	if err != nil {
		return nil, err
	}
	w.Areas = areas
	w.Hazard = a.hazardOf(primary)
	level, ok := a.levelOf(primary)
	if !ok && w.MsgType != warning.MsgCancel {
		return nil, &Error{Path: indexed("alert", "info", primary+1), Msg: "no warning level: the headline names no colour (红色…蓝色) or level (Ⅰ级…Ⅳ级) and the severity is Unknown"}
	}
	w.Level = level
	w.Headline, w.Description, w.Instruction = in.Headline, in.Description, in.Instruction
	if w.Headline == "" {
		w.Headline = in.Event
	}
	// Messages add the drill or test marker themselves (Warning.Title).
	if l := w.Status.Label(); l != "" {
		w.Headline = strings.TrimSpace(strings.TrimPrefix(w.Headline, l))
	}
	if !in.Expires.IsZero() {
		w.Expires = in.Expires
	}
	langs := []string{langOf(in)}
	for i := range a.Infos {
		x := &a.Infos[i]
		if slices.Contains(langs, langOf(x)) {
			continue
		}
		langs = append(langs, langOf(x))
		t := warning.Translation{Language: langOf(x), Headline: x.Headline, Description: x.Description, Instruction: x.Instruction}
		if t.Headline == "" {
			t.Headline = x.Event
		}
		w.Translations = append(w.Translations, t)
	}

	return w, nil
}

// langOf returns an info's language, CAP's default en-US when it gives none.
func langOf(in *Info) string {
	if in.Language == "" {
		return "en-US"
	}
	return in.Language
}

// primaryInfo returns the index of the first info in Simplified Chinese, or 0.
func primaryInfo(infos []Info) int {
	for i, in := range infos {
		switch strings.ReplaceAll(strings.ToLower(in.Language), "_", "-") {
		case "zh-cn", "zh", "zh-hans", "zh-hans-cn":
			return i
		}
	}
	return 0
}

var levelMarkRE = regexp.MustCompile(`(红色|橙色|黄色|蓝色|紅色|黃色|藍色)|(Ⅰ|Ⅱ|Ⅲ|Ⅳ|IV|III|II|I|一|二|三|四)\s*(?:级|級)|(?i:level\s+(IV|III|II|I)\b)|(?i:\b(red|orange|yellow|blue)\s+(?:warning|alert|signal))`)

var levelWords = map[string]warning.Level{
	"红色": warning.Red, "紅色": warning.Red, "橙色": warning.Orange, "黄色": warning.Yellow, "黃色": warning.Yellow,
	"蓝色": warning.Blue, "藍色": warning.Blue, "一": warning.Red, "二": warning.Orange, "三": warning.Yellow, "四": warning.Blue,
}

// levelIn returns the last warning level a text names.
func levelIn(text string) (warning.Level, bool) {
	ms := levelMarkRE.FindAllStringSubmatch(text, -1)
	for i := len(ms) - 1; i >= 0; i-- {
		for _, g := range ms[i][1:] {
			if g == "" {
				continue
			}
			if l, ok := levelWords[g]; ok {
				return l, true
			}
			if l, err := warning.ParseLevel(g); err == nil {
				return l, true
			}
		}
	}
	return 0, false
}

func (a *Alert) levelOf(primary int) (warning.Level, bool) {
	in := &a.Infos[primary]
	for _, p := range in.Parameters {
		if strings.EqualFold(p.Name, LevelParamName) {
			if l, err := warning.ParseLevel(p.Value); err == nil {
				return l, true
			}
		}
	}
	if l, ok := levelIn(in.Headline); ok {
		return l, true
	}
	if l, ok := levelIn(in.Event); ok {
		return l, true
	}
	for _, x := range otherInfos(a, primary) {
		if l, ok := levelIn(x.Headline); ok {
			return l, true
		}
	}
	if l, err := warning.ParseLevel(in.Severity); err == nil {
		return l, true
	}
	return 0, false
}

// divisionCode turns a CPEAS geocode value into a 12-digit division code:
// 6-digit county and 9-digit township codes are padded with zeros.
func divisionCode(v string) (string, bool) {
	v = strings.TrimSpace(v)
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return "", false
		}
	}
	switch len(v) {
	case 12:
		return v, true
	case 9:
		return v + "000", true
	case 6:
		return v + "000000", true
	}
	return "", false
}

func isCPEAS(name string) bool {
	return strings.EqualFold(strings.Join(strings.Fields(name), " "), GeocodeName)
}

// areas collects the division codes of every area of every info, the
// primary info first, keeping those in the jurisdiction.
func (a *Alert) areas(primary int, pick Jurisdiction) ([]string, error) {
	order := []int{primary}
	for i := range a.Infos {
		if i != primary {
			order = append(order, i)
		}
	}
	var (
		codes   []string
		outside []string
		seen    = map[string]bool{}
		seenOut = map[string]bool{} // by codes when given, so one area in two languages counts once
	)
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			codes = append(codes, c)
		}
	}
	for _, i := range order {
		for j, ar := range a.Infos[i].Areas {
			path := indexed(indexed("alert", "info", i+1), "area", j+1)
			var given, others []string
			found := false
			for _, g := range ar.Geocodes {
				if !isCPEAS(g.Name) {
					others = append(others, g.Name+" "+g.Value)
					continue
				}
				given = append(given, g.Value)
				if c, ok := divisionCode(g.Value); ok && pick.Known(c) {
					add(c)
					found = true
				}
			}
			if !found && (len(ar.Polygons) > 0 || len(ar.Circles) > 0) {
				in, err := pick.Locate(Shape{Polygons: ar.Polygons, Circles: ar.Circles})
				if err != nil {
					return nil, &Error{Path: path, Msg: "locating the area: " + err.Error()}
				}
				for _, c := range in {
					add(c)
				}
				found = len(in) > 0
			}
			if !found {
				desc, key := ar.Desc, ar.Desc
				if len(ar.Geocodes) > 0 {
					key = strings.Join(append(given, others...), ",")
				}
				if seenOut[key] {
					continue
				}
				seenOut[key] = true
				switch {
				case len(given) > 0:
					desc += " (" + strings.Join(given, ", ") + ")"
				case len(ar.Polygons) > 0 || len(ar.Circles) > 0:
					desc += " (by its polygons and circles)"
				case len(others) > 0:
					desc += " (" + strings.Join(others, ", ") + ": no CPEAS geocode)"
				default:
					desc += " (no geocode, polygon or circle)"
				}
				if !slices.Contains(outside, desc) {
					outside = append(outside, desc)
				}
			}
		}
	}
	if len(codes) == 0 {
		if len(outside) == 0 {
			return nil, fmt.Errorf("%w: the alert names no area", ErrOutOfJurisdiction)
		}
		const most = 10
		if len(outside) > most {
			outside = append(outside[:most], fmt.Sprintf("and %d more", len(outside)-most))
		}
		return nil, fmt.Errorf("%w: %s", ErrOutOfJurisdiction, strings.Join(outside, "; "))
	}
	return codes, nil
}

// CheckSent refuses an alert sent later than warning.MaxClockSkew after
// now: its sent time becomes the warning's issue time, and a warning's
// lifetime is measured from it. A sender's clock may run a little fast; a
// sent time further ahead is a slip.
func (a *Alert) CheckSent(now time.Time) error {
	if a.Sent.After(now.Add(warning.MaxClockSkew)) {
		return &Error{Path: "alert/sent", Msg: fmt.Sprintf("sent %s is in the future: an alert may be sent at most %d minutes ahead of this gateway's clock (%s)",
			a.Sent.Format(TimeLayout), warning.MaxClockSkew/time.Minute, now.Format(TimeLayout))}
	}
	return nil
}
