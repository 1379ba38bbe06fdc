package warning

import (
	"errors"
	"testing"
	"time"
)

// Validate measures the maximum lifetime from now as well as from the
// issue time, and refuses an issue time beyond the allowed clock skew:
// an issue time the sender chose cannot stretch a warning's life.
func TestValidateIssueAndExpiryTimes(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		issued, expires time.Time
		want            string // the field refused, "" for none
	}{
		{"issued now", now, now.Add(6 * time.Hour), ""},
		{"issued a minute ahead (clock skew)", now.Add(time.Minute), now.Add(6 * time.Hour), ""},
		{"issued in the past, 7 days from it", now.Add(-time.Hour), now.Add(MaxLifetime - time.Hour), ""},
		{"issued years ahead, a day after it", now.AddDate(5, 0, 0), now.AddDate(5, 0, 1), "issued"},
		{"issued an hour ahead", now.Add(time.Hour), now.Add(2 * time.Hour), "issued"},
		{"expires more than 7 days from now", now.Add(MaxClockSkew), now.Add(MaxLifetime + time.Minute), "expires"},
		{"expires more than 7 days after issue", now.Add(-time.Hour), now.Add(MaxLifetime), "expires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Warning{Hazard: Lightning, Level: Yellow, Status: StatusActual, Areas: []string{"530102000000"},
				Headline: "雷电黄色预警", Issued: tt.issued, Expires: tt.expires}
			err := w.Validate(now)
			var fe *FieldError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && !errors.As(err, &fe):
				t.Fatalf("accepted, want %s refused", tt.want)
			case tt.want != "" && fe.Field != tt.want:
				t.Fatalf("refused %s (%v), want %s", fe.Field, err, tt.want)
			}
		})
	}
}
