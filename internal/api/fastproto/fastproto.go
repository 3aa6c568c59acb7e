// Package fastproto is the binary framing of the local API's fast path
// (docs/api.md, "The fast path"): a preamble that tells it apart from HTTP
// on the same socket, then length-prefixed frames that reuse the channel's
// 12-byte header. The daemon (internal/api) and the Go client (client) both
// use it, so that they cannot disagree. No I/O here but Handshake and
// ReadFrame, over whatever connection their caller gives them.
package fastproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Magic starts both preambles. No HTTP request line starts with it (a
// method is followed by a space), so the daemon can sniff it.
const Magic = "SBYDFP"

// The framing versions. Version 2 adds detail and hint to error replies
// and the identify frame.
const (
	Version1 byte = 1
	Version2 byte = 2
	// MaxVersion is the highest version this package speaks.
	MaxVersion = Version2
)

// preambleEnd ends the version: a daemon that only speaks HTTP reads the
// client's preamble as a complete, malformed request line and answers 400
// at once, rather than wait for the rest of a line.
const preambleEnd = '\n'

// Sizes of the fixed parts.
const (
	ClientPreambleSize = 8  // Magic, u8 version, '\n'
	ServerPreambleSize = 16 // Magic, u8 version, '\n', u32 max frame, u32 max in flight
	HeaderSize         = 12
	// TimeoutSize is the u32 that starts every request's body.
	TimeoutSize = 4
	// MaxNameSize is the longest op name a request may carry.
	MaxNameSize = 255
	// NoSQLState fills the SQLSTATE of an error that has none.
	NoSQLState = "00000"
)

// Frame kinds and flags.
const (
	KindRequest byte = 'Q'
	KindReply   byte = 'A'
	// KindIdentify (version 2): the caller says who it serves; no reply.
	KindIdentify byte = 'I'

	// FlagOpByName: the op field is 0 and the body names the op.
	FlagOpByName byte = 0x01

	StatusOK    byte = 0
	StatusError byte = 1
)

// The kinds of an error reply (the HTTP API's "kind" field too, and
// client.Kind*: the Go client exports these).
const (
	ErrorKindBadRequest         = "bad_request"
	ErrorKindPayloadTooLarge    = "payload_too_large"
	ErrorKindChannelUnavailable = "channel_unavailable"
	ErrorKindOutcomeUnknown     = "outcome_unknown"
	ErrorKindPrimaryError       = "primary_error"
	ErrorKindShuttingDown       = "shutting_down"
	ErrorKindBusy               = "busy"
	ErrorKindForbidden          = "forbidden"
	ErrorKindNotStandby         = "not_standby"
)

// Errors of parsing. Use errors.Is.
var (
	ErrNotFastPath   = errors.New("not the fast path's preamble")
	ErrBadVersion    = errors.New("unsupported fast path version")
	ErrWrongKind     = errors.New("wrong frame kind")
	ErrBadFlags      = errors.New("unknown request flags")
	ErrShortBody     = errors.New("request body shorter than its fixed fields")
	ErrBadName       = errors.New("bad op name")
	ErrShortPayload  = errors.New("error reply shorter than its fixed fields")
	ErrBadStatus     = errors.New("unknown reply status")
	ErrBadIdentify   = errors.New("malformed identify frame")
	ErrBadError      = errors.New("malformed error reply")
	ErrFrameTooLarge = errors.New("frame larger than the limit")
)

// AppendClientPreamble appends the client's preamble offering version v.
func AppendClientPreamble(dst []byte, v byte) []byte {
	dst = append(dst, Magic...)
	return append(dst, v, preambleEnd)
}

// ParseClientPreamble returns the version a client offers.
func ParseClientPreamble(b []byte) (byte, error) {
	if len(b) < ClientPreambleSize || string(b[:len(Magic)]) != Magic {
		return 0, ErrNotFastPath
	}
	v := b[6]
	if v == 0 || b[7] != preambleEnd {
		return 0, fmt.Errorf("%w: version byte %#02x, then %#02x", ErrBadVersion, v, b[7])
	}
	return v, nil
}

// ServerPreamble is the daemon's answer to a client's preamble.
type ServerPreamble struct {
	Version byte
	// MaxFrame is the largest request frame the daemon reads, header
	// included.
	MaxFrame uint32
	// MaxInFlight is how many requests of one connection the daemon serves
	// at once; more are answered busy.
	MaxInFlight uint32
}

// AppendServerPreamble appends p.
func AppendServerPreamble(dst []byte, p ServerPreamble) []byte {
	dst = append(dst, Magic...)
	dst = append(dst, p.Version, preambleEnd)
	dst = binary.BigEndian.AppendUint32(dst, p.MaxFrame)
	return binary.BigEndian.AppendUint32(dst, p.MaxInFlight)
}

// Handshake sends the client's preamble offering version v on rw and reads
// the daemon's answer. (The Go client reads the answer its own way, to
// fall back to HTTP on a daemon that answers as HTTP.)
func Handshake(rw io.ReadWriter, v byte) (ServerPreamble, error) {
	if _, err := rw.Write(AppendClientPreamble(nil, v)); err != nil {
		return ServerPreamble{}, fmt.Errorf("sending the fast path preamble: %w", err)
	}
	var b [ServerPreambleSize]byte
	if _, err := io.ReadFull(rw, b[:]); err != nil {
		return ServerPreamble{}, fmt.Errorf("reading the daemon's preamble: %w", err)
	}
	return ParseServerPreamble(b[:])
}

// AcceptHandshake is the daemon's side of Handshake, for the peers that
// stand in for the daemon in tests (the daemon itself peeks at the preamble
// to tell it from HTTP): it reads the client's preamble, answers with p, its
// Version lowered to the one offered, and returns the version the two
// agreed on and the one the client offered.
func AcceptHandshake(rw io.ReadWriter, p ServerPreamble) (agreed, offered byte, err error) {
	var b [ClientPreambleSize]byte
	if _, err := io.ReadFull(rw, b[:]); err != nil {
		return 0, 0, fmt.Errorf("reading the client's preamble: %w", err)
	}
	if offered, err = ParseClientPreamble(b[:]); err != nil {
		return 0, 0, err
	}
	p.Version = min(p.Version, offered)
	if _, err := rw.Write(AppendServerPreamble(nil, p)); err != nil {
		return 0, offered, fmt.Errorf("sending the daemon's preamble: %w", err)
	}
	return p.Version, offered, nil
}

// ReadFrame reads one frame from r: its header and a body of at most
// maxBody bytes (a longer one is not read: ErrFrameTooLarge).
func ReadFrame(r io.Reader, maxBody uint32) (Header, []byte, error) {
	var b [HeaderSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, nil, err
	}
	h := ParseHeader(b[:])
	if h.Length > maxBody {
		return h, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, h.Length, maxBody)
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// ParseServerPreamble reads the daemon's preamble.
func ParseServerPreamble(b []byte) (ServerPreamble, error) {
	if len(b) < ServerPreambleSize || string(b[:len(Magic)]) != Magic {
		return ServerPreamble{}, ErrNotFastPath
	}
	p := ServerPreamble{
		Version:     b[6],
		MaxFrame:    binary.BigEndian.Uint32(b[8:12]),
		MaxInFlight: binary.BigEndian.Uint32(b[12:16]),
	}
	if p.Version < Version1 || p.Version > MaxVersion || b[7] != preambleEnd {
		return p, fmt.Errorf("%w: %d", ErrBadVersion, p.Version)
	}
	return p, nil
}

// Header is a frame's 12-byte header. Second is the request's flags or the
// reply's status.
type Header struct {
	Kind   byte
	Second byte
	Op     uint16
	ID     uint32
	Length uint32
}

// ParseHeader reads a header; it checks nothing, so that an error reply can
// echo the id of any frame.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{Kind: b[0], Second: b[1], Op: binary.BigEndian.Uint16(b[2:4]),
		ID: binary.BigEndian.Uint32(b[4:8]), Length: binary.BigEndian.Uint32(b[8:12])}
}

func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, h.Kind, h.Second)
	dst = binary.BigEndian.AppendUint16(dst, h.Op)
	dst = binary.BigEndian.AppendUint32(dst, h.ID)
	return binary.BigEndian.AppendUint32(dst, h.Length)
}

// Request is a parsed request. Payload aliases the parsed body.
type Request struct {
	ID uint32
	// Op is the op's code; Name is set instead when the request names it.
	Op        uint16
	Name      string
	TimeoutMS uint32
	Payload   []byte
}

// RequestSize is the frame size of a request (header included).
func RequestSize(name string, payload int) int {
	n := HeaderSize + TimeoutSize + payload
	if name != "" {
		n += 1 + len(name)
	}
	return n
}

// AppendRequest appends a request frame; a non-empty name is sent instead
// of op. It does not allocate when dst has room.
func AppendRequest(dst []byte, r Request) []byte {
	h := Header{Kind: KindRequest, Op: r.Op, ID: r.ID, Length: uint32(RequestSize(r.Name, len(r.Payload)) - HeaderSize)}
	if r.Name != "" {
		h.Second, h.Op = FlagOpByName, 0
	}
	dst = appendHeader(dst, h)
	dst = binary.BigEndian.AppendUint32(dst, r.TimeoutMS)
	if r.Name != "" {
		dst = append(dst, byte(len(r.Name)))
		dst = append(dst, r.Name...)
	}
	return append(dst, r.Payload...)
}

// ParseRequestBody parses the body (the length bytes after the header) of
// a request whose header is h. The kind must already have been checked.
func ParseRequestBody(h Header, body []byte) (Request, error) {
	r := Request{ID: h.ID, Op: h.Op}
	if h.Second&^FlagOpByName != 0 {
		return r, fmt.Errorf("%w: %#02x", ErrBadFlags, h.Second)
	}
	if len(body) < TimeoutSize {
		return r, fmt.Errorf("%w: %d bytes, the timeout takes 4", ErrShortBody, len(body))
	}
	r.TimeoutMS = binary.BigEndian.Uint32(body)
	body = body[TimeoutSize:]
	if h.Second&FlagOpByName != 0 {
		if h.Op != 0 {
			return r, fmt.Errorf("%w: op %d given with a name", ErrBadName, h.Op)
		}
		if len(body) < 1 || body[0] == 0 || len(body) < 1+int(body[0]) {
			return r, fmt.Errorf("%w: its length byte is 0 or runs past the frame", ErrBadName)
		}
		r.Name = string(body[1 : 1+int(body[0])])
		body = body[1+int(body[0]):]
	}
	r.Payload = body
	return r, nil
}

// AppendReply appends an ok reply frame.
func AppendReply(dst []byte, op uint16, id uint32, payload []byte) []byte {
	dst = appendHeader(dst, Header{Kind: KindReply, Second: StatusOK, Op: op, ID: id, Length: uint32(len(payload))})
	return append(dst, payload...)
}

// ErrorReply is the body of an error reply: the kind of the HTTP API's
// error body, the SQLSTATE of a primary's error, a message; from version 2
// a detail and a hint.
type ErrorReply struct {
	Kind     string
	SQLState string // "" when none
	Message  string
	Detail   string // version 2; "" when none
	Hint     string // version 2; "" when none
}

// maxText is the longest message, detail or hint of a version 2 error
// reply (a u16 length).
const maxText = 0xffff

// AppendError appends a version 1 error reply frame.
func AppendError(dst []byte, op uint16, id uint32, e ErrorReply) []byte {
	return AppendErrorV(dst, Version1, op, id, e)
}

// AppendErrorV appends an error reply frame in the layout of version v.
// The kind is cut at 255 bytes; a SQLSTATE that is not five bytes is sent
// as NoSQLState; in version 2 the texts are cut at 65535 bytes on a
// character boundary, and version 1 drops detail and hint.
func AppendErrorV(dst []byte, v byte, op uint16, id uint32, e ErrorReply) []byte {
	kind := e.Kind
	if len(kind) > 255 {
		kind = kind[:255]
	}
	state := e.SQLState
	if len(state) != 5 {
		state = NoSQLState
	}
	if v < Version2 {
		n := 1 + len(kind) + 5 + len(e.Message)
		dst = appendHeader(dst, Header{Kind: KindReply, Second: StatusError, Op: op, ID: id, Length: uint32(n)})
		dst = append(dst, byte(len(kind)))
		dst = append(dst, kind...)
		dst = append(dst, state...)
		return append(dst, e.Message...)
	}
	msg, detail, hint := cut(e.Message), cut(e.Detail), cut(e.Hint)
	n := 1 + len(kind) + 5 + 2 + len(msg) + 2 + len(detail) + 2 + len(hint)
	dst = appendHeader(dst, Header{Kind: KindReply, Second: StatusError, Op: op, ID: id, Length: uint32(n)})
	dst = append(dst, byte(len(kind)))
	dst = append(dst, kind...)
	dst = append(dst, state...)
	for _, t := range [...]string{msg, detail, hint} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(t)))
		dst = append(dst, t...)
	}
	return dst
}

// cut shortens s to maxText bytes without splitting a character.
func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	n := maxText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ParseError parses a version 1 error reply's body.
func ParseError(body []byte) (ErrorReply, error) { return ParseErrorV(Version1, body) }

// ParseErrorV parses an error reply's body in the layout of version v. In
// version 2 the lengths must add up to the body exactly.
func ParseErrorV(v byte, body []byte) (ErrorReply, error) {
	if len(body) < 1 || len(body) < 1+int(body[0])+5 {
		return ErrorReply{}, fmt.Errorf("%w: %d bytes", ErrShortPayload, len(body))
	}
	k := int(body[0])
	e := ErrorReply{Kind: string(body[1 : 1+k]), SQLState: string(body[1+k : 6+k])}
	if e.SQLState == NoSQLState {
		e.SQLState = ""
	}
	rest := body[6+k:]
	if v < Version2 {
		e.Message = string(rest)
		return e, nil
	}
	var texts [3]string
	for i := range texts {
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest)) {
			return ErrorReply{}, fmt.Errorf("%w: field %d runs past the body", ErrBadError, i+1)
		}
		n := int(binary.BigEndian.Uint16(rest))
		texts[i] = string(rest[2 : 2+n])
		rest = rest[2+n:]
	}
	if len(rest) != 0 {
		return ErrorReply{}, fmt.Errorf("%w: %d bytes after the hint", ErrBadError, len(rest))
	}
	e.Message, e.Detail, e.Hint = texts[0], texts[1], texts[2]
	return e, nil
}

// Identify is the body of an identify frame (version 2): the SQL session
// a connection's following requests are made for. It is attribution only,
// never authority.
type Identify struct {
	PID      uint32
	Role     string
	Database string
}

// MaxIdentifySize is the largest identify body: the pid and two names of
// up to 255 bytes with their lengths.
const MaxIdentifySize = 4 + 1 + 255 + 1 + 255

// AppendIdentify appends an identify frame. Names longer than 255 bytes
// are the caller's error: they are cut.
func AppendIdentify(dst []byte, id Identify) []byte {
	role, db := id.Role, id.Database
	if len(role) > 255 {
		role = role[:255]
	}
	if len(db) > 255 {
		db = db[:255]
	}
	dst = appendHeader(dst, Header{Kind: KindIdentify, Length: uint32(4 + 1 + len(role) + 1 + len(db))})
	dst = binary.BigEndian.AppendUint32(dst, id.PID)
	dst = append(dst, byte(len(role)))
	dst = append(dst, role...)
	dst = append(dst, byte(len(db)))
	return append(dst, db...)
}

// ParseIdentifyBody parses the body of an identify frame whose header is
// h: flags, op and id 0, a role and a database of 1 to 255 bytes of
// UTF-8 (they become metric labels), the lengths adding up to the body.
func ParseIdentifyBody(h Header, body []byte) (Identify, error) {
	if h.Second != 0 || h.Op != 0 || h.ID != 0 {
		return Identify{}, fmt.Errorf("%w: flags, op and id must be 0", ErrBadIdentify)
	}
	if len(body) < 4+1 {
		return Identify{}, fmt.Errorf("%w: %d bytes", ErrBadIdentify, len(body))
	}
	pid := binary.BigEndian.Uint32(body)
	rest := body[4:]
	var names [2][]byte
	for i := range names {
		if len(rest) < 1 || rest[0] == 0 || len(rest) < 1+int(rest[0]) {
			return Identify{}, fmt.Errorf("%w: name %d is empty or runs past the frame", ErrBadIdentify, i+1)
		}
		names[i] = rest[1 : 1+int(rest[0])]
		if !utf8.Valid(names[i]) {
			return Identify{}, fmt.Errorf("%w: name %d is not UTF-8", ErrBadIdentify, i+1)
		}
		rest = rest[1+int(rest[0]):]
	}
	if len(rest) != 0 {
		return Identify{}, fmt.Errorf("%w: %d bytes after the database", ErrBadIdentify, len(rest))
	}
	return Identify{PID: pid, Role: string(names[0]), Database: string(names[1])}, nil
}
