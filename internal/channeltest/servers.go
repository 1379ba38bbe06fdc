package channeltest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Serve starts a server of h, closed when t ends, and returns it.
func Serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// Answer returns a handler that answers every request with status and
// body, as a provider's API might.
func Answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// ClosedURL returns the http:// URL of a local port where nothing
// listens: a call to it is refused.
func ClosedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
