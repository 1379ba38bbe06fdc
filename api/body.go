package api

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// A server that answers a request and closes the connection while the
// client is still sending its body leaves request bytes unread; the kernel
// then resets the connection, and a client that writes its whole body
// before it reads (curl, most libraries) reports the reset instead of the
// answer. So what a handler leaves of a body is read and dropped before the
// answer goes out, up to maxDrain; a body that says it is larger than that
// is not worth reading, and its connection is closed.

// maxDrain bounds how much of a request body is read and dropped after the
// handler is done with it.
const maxDrain = 8 << 20

// smallBody bounds the JSON bodies of the routes that take a few fields.
const smallBody = 64 << 10

// countingBody remembers whether the handler read from the body.
type countingBody struct {
	io.ReadCloser
	read bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.read = true
	return b.ReadCloser.Read(p)
}

// drainBody reads what the chain left of the request body. A client that
// asked to be told to continue (Expect: 100-continue) and was answered
// before the body was read sends no body, and nothing is read.
func (s *server) drainBody(c *gin.Context) {
	r := c.Request
	if r.Body == nil || r.Body == http.NoBody {
		c.Next()
		return
	}
	body := &countingBody{ReadCloser: r.Body}
	r.Body = body
	c.Next()
	if r.ContentLength > maxDrain {
		return
	}
	if !body.read && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	io.CopyN(io.Discard, body.ReadCloser, maxDrain)
}

// readBody reads a request body of at most limit bytes. A larger one is
// answered 413, saying what may be how large, with Connection: close;
// drainBody reads the rest so that the answer arrives. A Content-Length
// over the limit is refused before anything is read.
func readBody(c *gin.Context, limit int64, what string) ([]byte, bool) {
	tooLarge := func() {
		c.Header("Connection", "close")
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%s may be at most %s; send a smaller one", what, sizeName(limit)), "")
	}
	if c.Request.ContentLength > limit {
		tooLarge()
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, limit+1))
	if err != nil {
		fail(c, http.StatusBadRequest, "unreadable_body", "the request body could not be read: "+err.Error(), "")
		return nil, false
	}
	if int64(len(body)) > limit {
		tooLarge()
		return nil, false
	}
	return body, true
}

// sizeName writes a limit as people say it: 256 KiB, 8 MiB.
func sizeName(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
