package link_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"warngate/internal/link"
	"warngate/warning"
)

func TestLink(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	s, _ := link.New([]byte("0123456789abcdef0123"), func() time.Time { return now })
	ref := warning.Ref{WarningID: "mx0xel483bh3m", Channel: warning.SMS, RecipientID: "o1f"}
	tok := s.Token(ref, now.Add(time.Hour))
	if len(tok) > 60 {
		t.Errorf("token %q is %d characters; SMS links must stay short", tok, len(tok))
	}
	got, err := s.Check(tok)
	if err != nil || got != ref {
		t.Fatalf("check = %v, %v", got, err)
	}
	other := s.Token(warning.Ref{WarningID: ref.WarningID, Channel: warning.SMS, RecipientID: "o20"}, now.Add(time.Hour))
	tests := []struct {
		name, tok string
		want      error
	}{
		{"another official's recipient swapped in", strings.Replace(tok, ".o1f.", ".o20.", 1), link.ErrForged},
		{"signature of another link", tok[:strings.LastIndexByte(tok, '.')] + other[strings.LastIndexByte(other, '.'):], link.ErrForged},
		{"cut", tok[:10], link.ErrMalformed},
		{"expired", s.Token(ref, now.Add(-time.Second)), link.ErrExpired},
		{"other key", func() string {
			s2, _ := link.New([]byte("another key of 16+ bytes"), nil)
			return s2.Token(ref, now.Add(time.Hour))
		}(), link.ErrForged},
	}
	for _, tt := range tests {
		if _, err := s.Check(tt.tok); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}
