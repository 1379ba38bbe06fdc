package kannel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
)

// Kannel's box protocol, as bearerbox speaks it on its smsbox-port to
// smsbox (Kannel 1.4; gw/msg-decl.h): every message is framed by its
// length, a 4-byte big-endian integer, and starts with its type. Integers
// are 4 bytes big-endian; a string is its length (−1 for none) and its
// bytes; a UUID is a string of its 36-character text form.

// Message types, in msg-decl.h's order.
const (
	boxHeartbeat = 0
	boxAdmin     = 1
	boxSMS       = 2
	boxAck       = 3
)

// Admin commands.
const (
	cmdShutdown = 0
	cmdIdentify = 3
	cmdRestart  = 4
)

// An ack's answer to an SMS.
const (
	ackSuccess   = 0 // taken
	ackFailed    = 1 // refused for good (no route, validity expired)
	ackFailedTmp = 2 // refused for now (queue full, shutting down): send again
	ackBuffered  = 3 // taken and queued: the SMS centre is not connected
)

// SMS types.
const (
	smsMTPush   = 2 // a message to a phone
	smsReportMO = 3 // a delivery report
	smsMO       = 0 // a message from a phone
)

// codingUCS2 is the data coding of UCS-2 text (Chinese).
const codingUCS2 = 2

// undefined is Kannel's value of an integer left unset.
const undefined = -1

// maxBoxFrame bounds a frame read from bearerbox: an SMS with its longest
// fields is a few kB.
const maxBoxFrame = 1 << 20

// boxSMSMsg is an sms message, the fields warngate uses; the others travel
// unset.
type boxSMSMsg struct {
	sender, receiver string
	msgdata          []byte
	time             int64
	smscID           string
	foreignID        string
	id               string // UUID
	smsType          int32
	coding           int32
	// validity is when the message expires, in Unix seconds; 0 for
	// never (it travels unset).
	validity int64
	dlrMask  int32
	dlrURL   string
	charset  string
	boxcID   string
	metaData string
}

// boxAckMsg is an ack message.
type boxAckMsg struct {
	nack int32
	time int64
	id   string
}

// boxMsg is one message read from bearerbox: exactly one of its fields is
// set, or none for a heartbeat.
type boxMsg struct {
	sms   *boxSMSMsg
	ack   *boxAckMsg
	admin int32 // the command of an admin message; -1 otherwise
	// adminBoxID is an identify command's box id.
	adminBoxID string
}

// packer appends a message's fields.
type packer struct{ b []byte }

func (p *packer) int(v int64) { p.b = binary.BigEndian.AppendUint32(p.b, uint32(int32(v))) }

// str appends s; an empty s travels as no string, as Kannel leaves fields
// it does not set.
func (p *packer) str(s string) {
	if s == "" {
		p.int(-1)
		return
	}
	p.int(int64(len(s)))
	p.b = append(p.b, s...)
}

func (p *packer) bytes(b []byte) {
	if b == nil {
		p.int(-1)
		return
	}
	p.int(int64(len(b)))
	p.b = append(p.b, b...)
}

// frame starts a frame of the given type in p; end fills in its length.
func (p *packer) frame(typ int) int {
	at := len(p.b)
	p.b = append(p.b, 0, 0, 0, 0)
	p.int(int64(typ))
	return at
}

func (p *packer) end(at int) {
	binary.BigEndian.PutUint32(p.b[at:], uint32(len(p.b)-at-4))
}

// appendSMS appends m, framed.
func appendSMS(b []byte, m *boxSMSMsg) []byte {
	p := packer{b}
	at := p.frame(boxSMS)
	p.str(m.sender)
	p.str(m.receiver)
	p.str("") // udhdata
	p.bytes(m.msgdata)
	p.int(m.time)
	p.str(m.smscID)
	p.str("") // smsc_number
	p.str(m.foreignID)
	p.str("") // service
	p.str("") // account
	p.str(m.id)
	p.int(int64(m.smsType))
	p.int(undefined) // mclass
	p.int(undefined) // mwi
	p.int(int64(m.coding))
	p.int(undefined) // compress
	if m.validity != 0 {
		p.int(m.validity)
	} else {
		p.int(undefined)
	}
	p.int(undefined) // deferred
	p.int(int64(m.dlrMask))
	p.str(m.dlrURL)
	p.int(undefined) // pid
	p.int(undefined) // alt_dcs
	p.int(undefined) // rpi
	p.str(m.charset)
	p.str(m.boxcID)
	p.str("")        // binfo
	p.int(undefined) // msg_left
	p.int(undefined) // priority
	p.int(undefined) // resend_try
	p.int(undefined) // resend_time
	p.str(m.metaData)
	p.end(at)
	return p.b
}

// appendAck appends an ack of the message id, framed.
func appendAck(b []byte, nack int32, id string, at int64) []byte {
	p := packer{b}
	f := p.frame(boxAck)
	p.int(int64(nack))
	p.int(at)
	p.str(id)
	p.end(f)
	return p.b
}

// appendAdmin appends an admin command, framed; boxcID goes with identify.
func appendAdmin(b []byte, command int32, boxcID string) []byte {
	p := packer{b}
	f := p.frame(boxAdmin)
	p.int(int64(command))
	p.str(boxcID)
	p.end(f)
	return p.b
}

// appendHeartbeat appends a heartbeat with the box's load, framed.
func appendHeartbeat(b []byte, load int64) []byte {
	p := packer{b}
	f := p.frame(boxHeartbeat)
	p.int(load)
	p.end(f)
	return p.b
}

// errBoxFrame is the cause of a frame that does not parse.
var errBoxFrame = errors.New("kannel: malformed message from bearerbox")

// unpacker reads a message's fields.
type unpacker struct {
	b   []byte
	err error
}

func (u *unpacker) int() int32 {
	if u.err != nil || len(u.b) < 4 {
		u.err = errBoxFrame
		return 0
	}
	v := int32(binary.BigEndian.Uint32(u.b))
	u.b = u.b[4:]
	return v
}

func (u *unpacker) bytes() []byte {
	n := u.int()
	switch {
	case u.err != nil:
		return nil
	case n == -1:
		return nil
	case n < 0 || int(n) > len(u.b):
		u.err = errBoxFrame
		return nil
	}
	v := u.b[:n:n]
	u.b = u.b[n:]
	return v
}

func (u *unpacker) str() string { return string(u.bytes()) }

// readBoxMsg reads one framed message. Message types warngate does not
// take (a WAP datagram) come back as an error.
func readBoxMsg(r *bufio.Reader) (boxMsg, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return boxMsg{}, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n < 4 || n > maxBoxFrame {
		return boxMsg{}, fmt.Errorf("%w: a frame of %d bytes", errBoxFrame, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return boxMsg{}, err
	}
	return parseBoxMsg(buf)
}

// parseBoxMsg parses one message, its frame's length taken off.
func parseBoxMsg(buf []byte) (boxMsg, error) {
	u := unpacker{b: buf}
	m := boxMsg{admin: -1}
	switch typ := u.int(); typ {
	case boxHeartbeat:
		u.int()
	case boxAdmin:
		m.admin = u.int()
		m.adminBoxID = u.str()
	case boxAck:
		a := &boxAckMsg{}
		a.nack = u.int()
		a.time = int64(u.int())
		a.id = u.str()
		m.ack = a
	case boxSMS:
		s := &boxSMSMsg{}
		s.sender = u.str()
		s.receiver = u.str()
		u.bytes() // udhdata
		s.msgdata = u.bytes()
		s.time = int64(u.int())
		s.smscID = u.str()
		u.str() // smsc_number
		s.foreignID = u.str()
		u.str() // service
		u.str() // account
		s.id = u.str()
		s.smsType = u.int()
		u.int() // mclass
		u.int() // mwi
		s.coding = u.int()
		u.int() // compress
		if v := u.int(); v != undefined {
			s.validity = int64(v)
		}
		u.int() // deferred
		s.dlrMask = u.int()
		s.dlrURL = u.str()
		u.int() // pid
		u.int() // alt_dcs
		u.int() // rpi
		s.charset = u.str()
		s.boxcID = u.str()
		u.str() // binfo
		u.int() // msg_left
		u.int() // priority
		u.int() // resend_try
		u.int() // resend_time
		s.metaData = u.str()
		m.sms = s
	default:
		return boxMsg{}, fmt.Errorf("%w: type %d", errBoxFrame, typ)
	}
	if u.err != nil {
		return boxMsg{}, u.err
	}
	return m, nil
}

// ucs2 returns s as UTF-16BE, the bytes of a UCS-2 SMS.
func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}
