package api

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// warningField is one field of a warning body: set stores its value, or
// says what to send instead when its JSON type is wrong.
type warningField struct {
	name string
	set  func(req *warningRequest, raw json.RawMessage) []fieldError
}

// warningFields are a warning body's fields, in the order errors name them.
var warningFields = []warningField{
	stringField("hazard", `a string such as "rainstorm" or "暴雨"`, func(r *warningRequest) *string { return &r.Hazard }),
	{name: "level", set: func(r *warningRequest, raw json.RawMessage) []fieldError {
		// A number is refused although "3" is not: 3 may be meant as
		// Ⅲ级 (yellow) or as the third colour (orange).
		if jsonKind(raw) != "a string" {
			return []fieldError{{Field: "level", Message: `want a string such as "red" or "Ⅰ", got ` + jsonKind(raw)}}
		}
		r.Level = raw
		return nil
	}},
	{name: "areas", set: func(r *warningRequest, raw json.RawMessage) []fieldError {
		var items []json.RawMessage
		if jsonKind(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
			return []fieldError{{Field: "areas", Message: `want an array of division codes such as ["530102000000"], got ` + jsonKind(raw)}}
		}
		var errs []fieldError
		r.Areas = make([]string, len(items))
		for i, it := range items {
			if jsonKind(it) != "a string" || json.Unmarshal(it, &r.Areas[i]) != nil {
				errs = append(errs, fieldError{Field: fmt.Sprintf("areas[%d]", i), Message: `want a division code as a string such as "530102000000", got ` + jsonKind(it)})
			}
		}
		return errs
	}},
	stringField("headline", "a string", func(r *warningRequest) *string { return &r.Headline }),
	stringField("description", "a string", func(r *warningRequest) *string { return &r.Description }),
	stringField("instruction", "a string", func(r *warningRequest) *string { return &r.Instruction }),
	stringField("status", `a string: "actual", "exercise" or "test"`, func(r *warningRequest) *string { return &r.Status }),
	stringField("expires", `a string: RFC 3339 with offset such as "2026-07-01T18:00:00+08:00"`, func(r *warningRequest) *string { return &r.Expires }),
	stringField("sender", "a string", func(r *warningRequest) *string { return &r.Sender }),
}

func stringField(name, want string, dst func(*warningRequest) *string) warningField {
	return warningField{name: name, set: func(r *warningRequest, raw json.RawMessage) []fieldError {
		if jsonKind(raw) != "a string" || json.Unmarshal(raw, dst(r)) != nil {
			return []fieldError{{Field: name, Message: "want " + want + ", got " + jsonKind(raw)}}
		}
		return nil
	}}
}

// parseWarningRequest reads a warning body field by field, so that every
// field of the wrong JSON type, and every unknown field, is named, not only
// the first. err is set when the body is not a JSON object at all. Field
// names match in any case, as encoding/json matches them; null is a
// field not given.
func parseWarningRequest(body []byte) (req warningRequest, fields []fieldError, err error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return req, nil, err
	}
	given := make([]string, 0, len(raw))
	for k := range raw {
		given = append(given, k)
	}
	slices.Sort(given)
	known := map[string]bool{}
	for _, f := range warningFields {
		for _, k := range given {
			if !strings.EqualFold(k, f.name) {
				continue
			}
			known[k] = true
			if jsonKind(raw[k]) != "null" {
				fields = append(fields, f.set(&req, raw[k])...)
			}
		}
	}
	for _, k := range given {
		if !known[k] {
			fields = append(fields, fieldError{Field: k, Message: "unknown field; a warning has hazard, level, areas, headline, description, instruction, status, expires and sender"})
		}
	}
	return req, fields, nil
}

// jsonKind names the JSON type of a value for a message: "a string",
// "a number", "an array", "an object", "a boolean" or "null".
func jsonKind(raw json.RawMessage) string {
	s := strings.TrimLeft(string(raw), " \t\r\n")
	if s == "" {
		return "nothing"
	}
	switch s[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
