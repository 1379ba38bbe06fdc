// Package warning holds the domain nouns of warngate: warnings, hazards, levels,
// channels, audiences and delivery states. It imports nothing but the standard
// library and must not learn about Redis, HTTP or any provider.
package warning

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Status says whether a warning is real, a drill or a technical test.
type Status string

// Warning statuses, as in CAP 1.2 (Actual, Exercise, Test).
const (
	StatusActual   Status = "actual"
	StatusExercise Status = "exercise"
	StatusTest     Status = "test"
)

// ParseStatus accepts the CAP names in any case and the Chinese words.
func ParseStatus(s string) (Status, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "actual", "正式", "实际":
		return StatusActual, nil
	case "exercise", "演练", "drill":
		return StatusExercise, nil
	case "test", "测试":
		return StatusTest, nil
	}
	return "", fmt.Errorf("unknown status %q: use actual, exercise or test", s)
}

// Label is the Chinese marker a message carries for a non-actual status
// ("【演练】"); it is empty for actual warnings.
func (s Status) Label() string {
	switch s {
	case StatusExercise:
		return "【演练】"
	case StatusTest:
		return "【测试】"
	}
	return ""
}

// MsgType is what a message does to earlier ones.
type MsgType string

// Message types, as in CAP 1.2 (Alert, Update, Cancel).
const (
	MsgAlert  MsgType = "alert"
	MsgUpdate MsgType = "update"
	MsgCancel MsgType = "cancel"
)

// State is where a warning is in its life.
type State string

// Warning states. A warning is accepted when stored, active once its fan-out
// is planned, and ends cancelled or expired.
const (
	// StateAwaitingApproval: an orange or red warning issued by a person,
	// held until a second person approves it. Nothing is sent before.
	StateAwaitingApproval State = "awaiting_approval"
	StateAccepted         State = "accepted"
	StateActive           State = "active"
	StateCancelled        State = "cancelled"
	// StateSuperseded: an update replaced the warning; its recipients got
	// the update's change notice instead of a lifted notice.
	StateSuperseded State = "superseded"
	StateExpired    State = "expired"
)

// Warning is one warning as issued by the bureau. Areas are 12-digit division
// codes; a code covers every division under it.
type Warning struct {
	ID          string   `json:"id"`
	Hazard      Hazard   `json:"hazard"`
	Level       Level    `json:"level"`
	Status      Status   `json:"status"`
	MsgType     MsgType  `json:"msg_type"`
	Areas       []string `json:"areas"`
	Headline    string   `json:"headline"`
	Description string   `json:"description"`
	Instruction string   `json:"instruction,omitempty"`
	Sender      string   `json:"sender,omitempty"`
	// Identifier is the originator's id for the warning (a CAP identifier);
	// the same sender and identifier twice make one warning.
	Identifier string `json:"identifier,omitempty"`
	// References names earlier warnings this one updates or cancels, by id.
	References []string `json:"references,omitempty"`
	// Translations carry the text in other languages; messages use the
	// Chinese fields above.
	Translations []Translation `json:"translations,omitempty"`
	// IssuedBy and ApprovedBy name the bureau users who issued and approved
	// the warning; "admin" for the bootstrap token, "cap" for CAP imports.
	IssuedBy   string    `json:"issued_by,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	Issued     time.Time `json:"issued"`
	Expires    time.Time `json:"expires"`
	State      State     `json:"state"`
	// Accepted is when the gateway stored the warning; delivery latency is
	// measured from here.
	Accepted time.Time `json:"accepted"`
	// Cancelled is when the warning was lifted (解除); zero while it is not.
	Cancelled time.Time `json:"cancelled,omitzero"`
	// Withdrawn marks a warning cancelled while it awaited approval: nothing
	// was sent and the public never saw it, so no Cancel is published.
	Withdrawn bool `json:"withdrawn,omitempty"`
}

// Translation is a warning's text in another language (BCP 47 tag, e.g. en-US).
type Translation struct {
	Language    string `json:"language"`
	Headline    string `json:"headline"`
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
}

// Limits on the text a bureau may send; beyond them a message is no longer a
// warning but a document.
const (
	MaxHeadline    = 140
	MaxDescription = 4000
	MaxInstruction = 2000
	MaxAreas       = 2000
	// MaxLifetime is how long after its issue a warning may last. A
	// longer one is a slip (a year for a day) or a standing notice, not a
	// warning; one that still applies is extended by an update.
	MaxLifetime = 7 * 24 * time.Hour
	// MaxClockSkew is how far ahead of the gateway's clock a warning's
	// issue time may be: another system's clock may run a little fast,
	// but a warning issued later than that is a slip, and would stretch
	// the lifetime measured from it.
	MaxClockSkew = 5 * time.Minute
)

// FieldError is a problem with one field of a warning, phrased so that the
// person who wrote the warning knows what to change.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

var divisionCode = regexp.MustCompile(`^[0-9]{12}$`)

// IsDivisionCode reports whether s has the shape of a 12-digit division code.
func IsDivisionCode(s string) bool { return divisionCode.MatchString(s) }

// Validate checks a warning as submitted, at time now. It returns every
// problem at once, each a *FieldError.
func (w *Warning) Validate(now time.Time) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if w.Hazard == "" {
		bad("hazard", "required: one of %s", strings.Join(HazardNames(), ", "))
	}
	if !w.Level.Valid() {
		bad("level", "required: blue, yellow, orange or red (or Ⅳ, Ⅲ, Ⅱ, Ⅰ)")
	}
	switch w.Status {
	case StatusActual, StatusExercise, StatusTest:
	default:
		bad("status", "use actual, exercise or test")
	}
	if len(w.Areas) == 0 {
		bad("areas", "required: at least one 12-digit division code, e.g. 530102000000")
	}
	if len(w.Areas) > MaxAreas {
		bad("areas", "at most %d division codes; name the county instead of its villages", MaxAreas)
	}
	for i, a := range w.Areas {
		if !IsDivisionCode(a) {
			bad(fmt.Sprintf("areas[%d]", i), "%q is not a 12-digit division code", a)
		}
	}
	if strings.TrimSpace(w.Headline) == "" {
		bad("headline", "required: the one line every message starts with")
	} else if n := len([]rune(w.Headline)); n > MaxHeadline {
		bad("headline", "%d characters; at most %d", n, MaxHeadline)
	}
	if n := len([]rune(w.Description)); n > MaxDescription {
		bad("description", "%d characters; at most %d", n, MaxDescription)
	}
	if n := len([]rune(w.Instruction)); n > MaxInstruction {
		bad("instruction", "%d characters; at most %d", n, MaxInstruction)
	}
	text := func(field, s string) {
		if msg, ok := TextProblem(s); ok {
			bad(field, "%s", msg)
		}
	}
	text("headline", w.Headline)
	text("description", w.Description)
	text("instruction", w.Instruction)
	for i, t := range w.Translations {
		at := fmt.Sprintf("translations[%d].", i)
		text(at+"headline", t.Headline)
		text(at+"description", t.Description)
		text(at+"instruction", t.Instruction)
	}
	issued := w.Issued
	if issued.IsZero() {
		issued = now
	} else if issued.After(now.Add(MaxClockSkew)) {
		bad("issued", "%s is in the future; a warning is issued at most %d minutes ahead of this gateway's clock (%s)",
			issued.Format(time.RFC3339), MaxClockSkew/time.Minute, now.Format(time.RFC3339))
	}
	if w.Expires.IsZero() {
		bad("expires", "required: when the warning stops applying, RFC 3339 with offset, e.g. 2026-07-01T18:00:00+08:00")
	} else if !w.Expires.After(now) {
		bad("expires", "%s is in the past; give a time after %s", w.Expires.Format(time.RFC3339), now.Format(time.RFC3339))
	} else if w.Expires.Sub(issued) > MaxLifetime {
		bad("expires", "%s is more than %d days after the warning is issued (%s); a warning lasts at most %d days: give an earlier time and extend it with an update if it still applies",
			w.Expires.Format(time.RFC3339), MaxLifetime/(24*time.Hour), issued.Format(time.RFC3339), MaxLifetime/(24*time.Hour))
	} else if w.Expires.Sub(now) > MaxLifetime {
		bad("expires", "%s is more than %d days from now (%s); a warning lasts at most %d days: give an earlier time and extend it with an update if it still applies",
			w.Expires.Format(time.RFC3339), MaxLifetime/(24*time.Hour), now.Format(time.RFC3339), MaxLifetime/(24*time.Hour))
	}
	return errors.Join(errs...)
}

// Expired reports whether the warning no longer applies at now.
func (w *Warning) Expired(now time.Time) bool { return !w.Expires.After(now) }

// Live reports whether messages for the warning may still be sent at now.
func (w *Warning) Live(now time.Time) bool {
	return (w.State == StateAccepted || w.State == StateActive) && !w.Expired(now)
}

// Title is the headline as every message shows it, with the drill or test
// marker first.
func (w *Warning) Title() string { return w.Status.Label() + w.Headline }
