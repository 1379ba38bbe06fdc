package sipvoice

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"

	"warngate/channels"
)

// mobile finds mainland mobile numbers in text.
var mobile = regexp.MustCompile(`1[3-9][0-9]{9}`)

// maskingHandler masks the phone numbers in what the SIP stack logs (a
// request's To, a dialog's URI), as every log line of the gateway must.
type maskingHandler struct{ slog.Handler }

func mask(s string) string { return mobile.ReplaceAllStringFunc(s, channels.MaskPhone) }

// Handle implements slog.Handler.
func (h maskingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		as := v.Group()
		out := make([]any, len(as))
		for i, x := range as {
			out[i] = maskAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindString:
		return slog.String(a.Key, mask(v.String()))
	case slog.KindAny:
		return slog.String(a.Key, mask(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// WithAttrs implements slog.Handler.
func (h maskingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = maskAttr(a)
	}
	return maskingHandler{h.Handler.WithAttrs(out)}
}

// WithGroup implements slog.Handler.
func (h maskingHandler) WithGroup(name string) slog.Handler {
	return maskingHandler{h.Handler.WithGroup(name)}
}
