// Package cap reads and writes OASIS Common Alerting Protocol 1.2 documents
// (and reads CAP 1.1), and maps them to and from warning.Warning.
//
// Parse refuses hostile input (DTDs and entity declarations, oversized or
// deeply nested documents, absurd counts of blocks and points) and names the
// element at fault by its path, e.g. alert/info[1]/expires; indices count from
// 1, as in XPath. Encode writes documents that validate against the OASIS
// schema.
//
// The package imports nothing of warngate but package warning. What "inside
// our jurisdiction" means is the caller's to say, through a Jurisdiction:
// cmd/warngate wires one over package region, converting Shape.Circles with
// region.Circle(c) (the two types have the same fields) and passing
// Shape.Polygons to region.CountiesTouching as they are.
package cap

import (
	"errors"
	"strings"
	"time"
)

// The CAP namespaces. Documents are written in the 1.2 namespace.
const (
	Namespace12 = "urn:oasis:names:tc:emergency:cap:1.2"
	Namespace11 = "urn:oasis:names:tc:emergency:cap:1.1"
)

// TimeLayout is the only date-time form CAP 1.2 allows: seconds, a numeric
// offset and never "Z".
const TimeLayout = "2006-01-02T15:04:05-07:00"

// Alert is one CAP alert message. String fields hold element text with
// surrounding space trimmed; an empty string is an absent element. Enumerated
// fields (Status, MsgType, Scope, Category, ResponseType, Urgency, Severity,
// Certainty) hold the CAP spelling, e.g. "Actual". Times are zero when absent
// and keep the offset they were written with.
type Alert struct {
	// Version is "1.2" or "1.1", from the namespace read; documents are
	// always written as 1.2.
	Version     string
	Identifier  string
	Sender      string
	Sent        time.Time
	Status      string // Actual, Exercise, System, Test, Draft
	MsgType     string // Alert, Update, Cancel, Ack, Error
	Source      string
	Scope       string // Public, Restricted, Private
	Restriction string
	Addresses   string // space-separated, as written
	Codes       []string
	Note        string
	References  []Reference
	Incidents   string
	Infos       []Info
}

// Reference names an earlier message, as the "sender,identifier,sent"
// triples of <references>. A reference written as a bare identifier (seen in
// real feeds) has only Identifier set.
type Reference struct {
	Sender     string
	Identifier string
	Sent       time.Time
}

// String returns the reference as <references> writes it.
func (r Reference) String() string {
	if r.Sender == "" && r.Sent.IsZero() {
		return r.Identifier
	}
	return r.Sender + "," + r.Identifier + "," + r.Sent.Format(TimeLayout)
}

// Info is one <info> block: the alert's content in one language.
type Info struct {
	Language      string // empty means CAP's default, en-US
	Categories    []string
	Event         string
	ResponseTypes []string
	Urgency       string // Immediate, Expected, Future, Past, Unknown
	Severity      string // Extreme, Severe, Moderate, Minor, Unknown
	Certainty     string // Observed, Likely, Possible, Unlikely, Unknown
	Audience      string
	EventCodes    []Value
	Effective     time.Time
	Onset         time.Time
	Expires       time.Time
	SenderName    string
	Headline      string
	Description   string
	Instruction   string
	Web           string
	Contact       string
	Parameters    []Value
	Resources     []Resource
	Areas         []Area
}

// Value is a valueName/value pair, as in eventCode, parameter and geocode.
type Value struct {
	Name  string
	Value string
}

// Resource is an <info>'s <resource>: a file that goes with the alert.
type Resource struct {
	Desc     string
	MimeType string
	Size     string // an integer, in bytes
	URI      string
	DerefURI string
	Digest   string
}

// Area is an <info>'s <area>.
type Area struct {
	Desc string
	// Polygons are closed rings of [lat, lon] points (WGS84 degrees, CAP's
	// order), the last point equal to the first.
	Polygons [][][2]float64
	Circles  []Circle
	Geocodes []Value
	Altitude string // a decimal, in feet above mean sea level
	Ceiling  string
}

// Circle is a CAP circle: a centre in WGS84 degrees and a radius in
// kilometres. Its fields match region.Circle, so cmd converts one to the
// other with a plain conversion.
type Circle struct {
	Lat, Lon float64
	RadiusKm float64
}

// Shape is the geometry of an area, handed to Jurisdiction.Locate.
type Shape struct {
	Polygons [][][2]float64 // closed rings of [lat, lon] points
	Circles  []Circle
}

// Error is a problem with one element of a CAP document.
type Error struct {
	// Path locates the element from the alert down, e.g.
	// "alert/info[1]/expires"; it is empty for the document as a whole.
	Path string
	Msg  string
}

// Error returns the problem as "cap: <path>: <message>".
func (e *Error) Error() string {
	if e.Path == "" {
		return "cap: " + e.Msg
	}
	return "cap: " + e.Path + ": " + e.Msg
}

// ErrOutOfJurisdiction is wrapped by Alert.Warning when no area of the alert
// lies in the jurisdiction.
var ErrOutOfJurisdiction = errors.New("cap: out of jurisdiction")

// The enumerations of CAP 1.2, in schema order.
var (
	statuses      = []string{"Actual", "Exercise", "System", "Test", "Draft"}
	msgTypes      = []string{"Alert", "Update", "Cancel", "Ack", "Error"}
	scopes        = []string{"Public", "Restricted", "Private"}
	categories    = []string{"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"}
	responseTypes = []string{"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"}
	urgencies     = []string{"Immediate", "Expected", "Future", "Past", "Unknown"}
	severities    = []string{"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
	certainties   = []string{"Observed", "Likely", "Possible", "Unlikely", "Unknown"}
)

// canonical returns the CAP spelling of s in enum, matched without regard to
// case, or "" when s is none of them. CAP 1.1's "Very Likely" is read as
// Likely, as CAP 1.2 says to.
func canonical(enum []string, s string) string {
	for _, e := range enum {
		if strings.EqualFold(e, s) {
			return e
		}
	}
	if strings.EqualFold(s, "Very Likely") && len(enum) > 0 && enum[0] == certainties[0] {
		return "Likely"
	}
	return ""
}
