package warning

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Text that reaches phones, loudspeakers, screens and CAP consumers must be
// plain text: control characters make a phone show garbage or a TTS engine
// stop, XML cannot carry most of them (a CAP export would fail), and the
// bidirectional overrides and isolates reorder what a reader sees (a
// "Trojan Source" headline). Tab and line breaks are kept; the vertical tab
// and form feed that a word processor's paste brings become line breaks, as
// do CRLF and CR.

// NormalizeText turns CRLF, CR, vertical tab (U+000B) and form feed
// (U+000C) into LF. Everything else is left as it is.
func NormalizeText(s string) string {
	if !strings.ContainsAny(s, "\r\v\f") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.NewReplacer("\r", "\n", "\v", "\n", "\f", "\n").Replace(s)
}

// TextProblem finds the first character of s that cannot be sent. It
// returns its position, counted in characters from 1, and a message that
// names it and says what to do, e.g. "character 7 is U+202E (right-to-left
// override), which cannot be sent; remove it". ok is false when there is
// none. The characters NormalizeText turns into line breaks are allowed.
func TextProblem(s string) (msg string, ok bool) {
	pos := 0
	for i, r := range s {
		pos++
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return fmt.Sprintf("character %d is not valid UTF-8; send the text as UTF-8", pos), true
			}
		}
		if name := unsendable(r); name != "" {
			return fmt.Sprintf("character %d is U+%04X (%s), which cannot be sent; remove it", pos, r, name), true
		}
	}
	return "", false
}

// unsendable names r when it may not be sent, or returns "".
func unsendable(r rune) string {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f':
		return ""
	case r < 0x20:
		if n, ok := controlNames[r]; ok {
			return n
		}
		return "a control character"
	case r == 0x7F:
		return "delete, a control character"
	case r >= 0x80 && r <= 0x9F:
		return "a C1 control character"
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return bidiNames[r]
	case r == 0xFFFE || r == 0xFFFF:
		return "a noncharacter"
	}
	return ""
}

var controlNames = map[rune]string{
	0x00: "null, a control character",
	0x07: "bell, a control character",
	0x08: "backspace, a control character",
	0x1B: "escape, a control character",
}

var bidiNames = map[rune]string{
	0x202A: "left-to-right embedding",
	0x202B: "right-to-left embedding",
	0x202C: "pop directional formatting",
	0x202D: "left-to-right override",
	0x202E: "right-to-left override",
	0x2066: "left-to-right isolate",
	0x2067: "right-to-left isolate",
	0x2068: "first strong isolate",
	0x2069: "pop directional isolate",
}

// Normalize makes a checked warning's text and areas uniform: line breaks
// as NormalizeText makes them, and an area named twice kept once, where it
// was first named.
func (w *Warning) Normalize() {
	w.Headline = NormalizeText(w.Headline)
	w.Description = NormalizeText(w.Description)
	w.Instruction = NormalizeText(w.Instruction)
	for i := range w.Translations {
		t := &w.Translations[i]
		t.Headline, t.Description, t.Instruction = NormalizeText(t.Headline), NormalizeText(t.Description), NormalizeText(t.Instruction)
	}
	seen := make(map[string]bool, len(w.Areas))
	areas := w.Areas[:0:0]
	for _, a := range w.Areas {
		if !seen[a] {
			seen[a] = true
			areas = append(areas, a)
		}
	}
	w.Areas = areas
}

// Fingerprint identifies what a warning says, so that a request repeated
// under the same idempotency key can be told from a different one: hazard,
// level, status, message type and the warnings it updates or cancels,
// areas as a set, text (line breaks normalized, surrounding space
// trimmed), translations, expiry as an instant to the second, and sender. Its id, who
// issued it, its state and the times of issue and acceptance do not count,
// nor does how the request spelt any of it.
func (w *Warning) Fingerprint() string {
	text := func(s string) string { return strings.TrimSpace(NormalizeText(s)) }
	areas := slices.Clone(w.Areas)
	slices.Sort(areas)
	areas = slices.Compact(areas)
	msgType, status := w.MsgType, w.Status
	if msgType == "" {
		msgType = MsgAlert
	}
	if status == "" {
		status = StatusActual
	}
	trs := make([][4]string, len(w.Translations))
	for i, t := range w.Translations {
		trs[i] = [4]string{t.Language, text(t.Headline), text(t.Description), text(t.Instruction)}
	}
	b, _ := json.Marshal([]any{
		w.Hazard, w.Level.String(), status, msgType, w.References, areas,
		text(w.Headline), text(w.Description), text(w.Instruction), trs,
		w.Expires.UTC().Truncate(time.Second).Format(time.RFC3339), strings.TrimSpace(w.Sender),
	})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
