package sipvoice

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestStackLogsMaskPhoneNumbers(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(maskingHandler{slog.NewTextHandler(&buf, nil)})
	log.With("to", "sip:13800138000@10.0.0.5").Warn("Failed to handle request sip:13912345678@trunk",
		"err", errors.New("no route to 15011112222"), slog.Group("req", "from", "13700001111"), "n", 12)
	out := buf.String()
	for _, phone := range []string{"13800138000", "13912345678", "15011112222", "13700001111"} {
		if strings.Contains(out, phone) {
			t.Errorf("%s shows in %s", phone, out)
		}
	}
	for _, masked := range []string{"138****8000", "139****5678", "150****2222", "137****1111", "n=12"} {
		if !strings.Contains(out, masked) {
			t.Errorf("%s missing from %s", masked, out)
		}
	}
}
