package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A refused body gets its answer, try after try, not a connection reset.
// The client here is a plain one over real TCP: it writes the whole body
// and only then reads, as curl does, so a server that stops reading and
// closes makes its write fail. The body (6 MiB) is larger than what the
// loopback's socket buffers take in without the server reading.
func TestRefusedBodyGetsItsAnswer(t *testing.T) {
	g := newGateway(t, false)
	addr := strings.TrimPrefix(g.url, "http://")
	big := bytes.Repeat([]byte("x"), 6<<20)
	for _, tt := range []struct {
		name, path, tok string
		chunked         bool
		tries           int
		status          int
		code, message   string
	}{
		{"warning", "/api/v1/warnings", token, false, 40, 413, "too_large", "a warning body may be at most 256 KiB"},
		{"warning, chunked", "/api/v1/warnings", token, true, 10, 413, "too_large", "a warning body may be at most 256 KiB"},
		{"warning update", "/api/v1/warnings/none/update", token, false, 5, 404, "not_found", "no warning with id none"},
		{"CAP", "/api/v1/cap", token, false, 10, 413, "too_large", "a CAP document may be at most 1 MiB"},
		{"call list", "/api/v1/warnings/none/calllist.xlsx", token, false, 5, 404, "not_found", "no warning with id none"},
		{"no token", "/api/v1/warnings", "", false, 10, 401, "unauthenticated", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for try := range tt.tries {
				status, body, err := rawPost(addr, tt.path, tt.tok, big, tt.chunked)
				if err != nil {
					t.Fatalf("try %d: %v", try+1, err)
				}
				var out struct {
					Error struct{ Code, Message string }
				}
				if status != tt.status || json.Unmarshal(body, &out) != nil || out.Error.Code != tt.code || !strings.Contains(out.Error.Message, tt.message) {
					t.Fatalf("try %d: %d %s", try+1, status, body)
				}
			}
		})
	}
}

// rawPost sends body to path on its own connection, all of it before it
// reads, and returns the answer's status and body.
func rawPost(addr, path, tok string, body []byte, chunked bool) (int, []byte, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", path, addr)
	if tok != "" {
		fmt.Fprintf(w, "Authorization: Bearer %s\r\n", tok)
	}
	if chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(w, "%x\r\n", n)
			w.Write(rest[:n])
			w.WriteString("\r\n")
			rest = rest[n:]
		}
		w.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", len(body))
		w.Write(body)
	}
	if err := w.Flush(); err != nil {
		return 0, nil, fmt.Errorf("sending the body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, fmt.Errorf("no answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("answer cut: %w", err)
	}
	return resp.StatusCode, b, nil
}
