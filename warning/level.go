package warning

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Level is a warning level. Its zero value is invalid; Red is the most severe.
type Level int

// Warning levels, least to most severe.
const (
	Blue   Level = 1 // Ⅳ级 一般, CAP Minor
	Yellow Level = 2 // Ⅲ级 较重, CAP Moderate
	Orange Level = 3 // Ⅱ级 严重, CAP Severe
	Red    Level = 4 // Ⅰ级 特别严重, CAP Extreme
)

// Levels lists every level from the most severe down.
var Levels = []Level{Red, Orange, Yellow, Blue}

var levelInfo = map[Level]struct{ name, colour, roman, grade, severity string }{
	Blue:   {"blue", "蓝色", "Ⅳ", "一般", "Minor"},
	Yellow: {"yellow", "黄色", "Ⅲ", "较重", "Moderate"},
	Orange: {"orange", "橙色", "Ⅱ", "严重", "Severe"},
	Red:    {"red", "红色", "Ⅰ", "特别严重", "Extreme"},
}

// ParseLevel accepts colour names in English or Chinese, roman numerals in
// Unicode (Ⅳ) or ASCII (IV), with or without 级, and CAP severities.
func ParseLevel(s string) (Level, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(t, "级")
	t = strings.TrimSuffix(t, "预警")
	switch strings.ToLower(t) {
	case "blue", "蓝", "蓝色", "ⅳ", "iv", "4", "minor":
		return Blue, nil
	case "yellow", "黄", "黄色", "ⅲ", "iii", "3", "moderate":
		return Yellow, nil
	case "orange", "橙", "橙色", "ⅱ", "ii", "2", "severe":
		return Orange, nil
	case "red", "红", "红色", "ⅰ", "i", "1", "extreme":
		return Red, nil
	}
	return 0, fmt.Errorf("unknown level %q: use blue, yellow, orange or red (or Ⅳ, Ⅲ, Ⅱ, Ⅰ)", s)
}

// Valid reports whether l is one of the four levels.
func (l Level) Valid() bool { return l >= Blue && l <= Red }

// String returns the English colour name, as used in the API and config.
func (l Level) String() string {
	if i, ok := levelInfo[l]; ok {
		return i.name
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// Colour returns the Chinese colour, e.g. 红色.
func (l Level) Colour() string { return levelInfo[l].colour }

// Roman returns the level as Kunming names it today, e.g. Ⅰ.
func (l Level) Roman() string { return levelInfo[l].roman }

// Grade returns the Chinese severity word, e.g. 特别严重.
func (l Level) Grade() string { return levelInfo[l].grade }

// Severity returns the CAP 1.2 severity.
func (l Level) Severity() string { return levelInfo[l].severity }

// MarshalText implements encoding.TextMarshaler.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("invalid level %d", int(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseLevel.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// UnmarshalJSON accepts a string level, and also a number 1-4 as in Ⅰ-Ⅳ.
func (l *Level) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("level must be a string such as \"red\" or \"Ⅰ\"")
		}
		s = n.String()
	}
	return l.UnmarshalText([]byte(s))
}
