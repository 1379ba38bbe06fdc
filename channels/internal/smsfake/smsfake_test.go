package smsfake

import (
	"fmt"
	"testing"
	"time"
)

func TestAdmitFailsAsToldThenLimitsTheRate(t *testing.T) {
	now := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	c := New[string, string](Config{RateLimit: 2, RateWindow: time.Minute, Now: func() time.Time { return now }})
	c.FailNext("A", "B")
	var got []string
	admit := func() {
		code, throttled := c.Admit()
		got = append(got, fmt.Sprintf("%s/%v", code, throttled))
	}
	for range 5 {
		admit()
	}
	now = now.Add(time.Minute)
	admit()
	if want := "[A/false B/false /false /false /true /false]"; fmt.Sprint(got) != want {
		t.Errorf("admitted %v, want %s", got, want)
	}
}

func TestKeepNumbersAndKeepsMessages(t *testing.T) {
	c := New[string, string](Config{})
	for range 2 {
		c.Keep(func(seq func() int64) []string { return []string{fmt.Sprint(seq()), fmt.Sprint(seq())} })
	}
	if got := fmt.Sprint(c.Messages()); got != "[1 2 3 4]" {
		t.Errorf("messages %s", got)
	}
}

func TestMainland(t *testing.T) {
	for in, want := range map[string]string{"13800000001": "13800000001/true", "+8613800000001": "13800000001/true",
		"008613800000001": "13800000001/true", "8613800000001": "13800000001/true", "1380000000": "1380000000/false", "23800000001": "23800000001/false"} {
		if n, ok := Mainland(in); fmt.Sprintf("%s/%v", n, ok) != want {
			t.Errorf("Mainland(%s) = %s %v, want %s", in, n, ok, want)
		}
	}
}
