package kannel

import (
	"io"
	"net"
	"syscall"
)

// quickAck returns a reader of c that asks Linux, before every read, to
// acknowledge what arrives at once (TCP_QUICKACK) instead of up to 40 ms
// later. Bearerbox writes each ack as a small segment of its own and holds
// the next until the last is acknowledged (Nagle's algorithm): with Linux's
// delayed acknowledgements, a batch's acks came 40 ms apart.
func quickAck(c net.Conn) io.Reader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckReader{c: tc, rc: rc}
}

type quickAckReader struct {
	c  *net.TCPConn
	rc syscall.RawConn
}

func (q *quickAckReader) Read(p []byte) (int, error) {
	q.rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
	return q.c.Read(p)
}
