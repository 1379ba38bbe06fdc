package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// A handler that panics on an official's page is logged without the link:
// the token in the path is what lets anyone act as that official.
func TestAPanicLogsNoLinkToken(t *testing.T) {
	var logs bytes.Buffer
	s := &server{Options: Options{Log: slog.New(slog.NewTextHandler(&logs, nil))}}
	r := gin.New()
	r.Use(s.recover)
	r.GET("/a/:token", func(*gin.Context) { panic("boom") })
	const token = "w1.sms.o94.tq1m2k.AbCdEfGhIjKlMnOp"
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/a/"+token, nil))
	if w.Code != http.StatusInternalServerError || !strings.Contains(logs.String(), "handler panicked") {
		t.Fatalf("panic: %d, log %q", w.Code, logs.String())
	}
	if strings.Contains(logs.String(), token[6:]) {
		t.Errorf("the link's token is in the log: %s", logs.String())
	}
}
