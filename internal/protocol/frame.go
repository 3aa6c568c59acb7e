package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame layout constants (docs/protocol.md, "Frame header").
const (
	KindRequest byte = 'Q'
	KindReply   byte = 'A'
	// KindGoodbye is the server's last frame on a version-2 channel.
	KindGoodbye byte = 'G'

	// Version1 is the protocol of one request in flight at a time; every
	// frame carries it as its frame version, in either protocol version.
	Version1 uint16 = 1
	// Version2 lets the client pipeline requests and adds the goodbye
	// frame; the frame layout is version 1's.
	Version2 uint16 = 2
	// Version3 is version 2 whose error replies carry the error's detail
	// and hint.
	Version3 uint16 = 3
	// MaxVersion is the highest protocol version this side speaks.
	MaxVersion = Version3

	HeaderSize = 12

	StatusOK    byte = 0
	StatusError byte = 1

	// DefaultMaxFrameSize is the default largest frame, header included,
	// on both sides.
	DefaultMaxFrameSize = 1 << 20
	// MinMaxFrameSize is the smallest maximum frame size either side may
	// configure: hello must always fit.
	MinMaxFrameSize = 1024
)

// Errors of frame parsing. Use errors.Is.
var (
	ErrShortFrame     = errors.New("frame shorter than the 12-byte header")
	ErrWrongKind      = errors.New("wrong frame kind")
	ErrLengthMismatch = errors.New("frame length field does not match the frame size")
	ErrBadVersion     = errors.New("unsupported frame version")
	ErrBadStatus      = errors.New("unknown reply status")
	ErrShortPayload   = errors.New("payload too short")
)

// FrameTooLargeError reports a frame over a maximum frame size.
type FrameTooLargeError struct {
	Size, Max int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("frame of %d bytes is larger than the maximum of %d", e.Size, e.Max)
}

// Reply is a parsed reply frame. Payload aliases the parsed buffer.
type Reply struct {
	Op      uint16
	ID      uint32
	Status  byte
	Payload []byte
}

// AppendRequest appends a request frame to dst. It does not allocate when dst
// has room for the frame.
func AppendRequest(dst []byte, op uint16, id uint32, payload []byte) []byte {
	dst = append(dst, KindRequest, byte(Version1))
	dst = binary.BigEndian.AppendUint16(dst, op)
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// header is the part common to requests and replies.
type header struct {
	second byte // version (request) or status (reply)
	op     uint16
	id     uint32
}

// parseHeader reads the 12-byte header and checks the kind and the length
// field. On a kind or length error the op and id are still returned, so that
// an error reply can echo them.
func parseHeader(buf []byte, kind byte) (header, error) {
	if len(buf) < HeaderSize {
		return header{}, ErrShortFrame
	}
	h := header{second: buf[1], op: binary.BigEndian.Uint16(buf[2:4]), id: binary.BigEndian.Uint32(buf[4:8])}
	if buf[0] != kind {
		return h, fmt.Errorf("%w: %#x, want %q", ErrWrongKind, buf[0], kind)
	}
	if n := binary.BigEndian.Uint32(buf[8:12]); uint64(n) != uint64(len(buf)-HeaderSize) {
		return h, fmt.Errorf("%w: field says %d, frame has %d", ErrLengthMismatch, n, len(buf)-HeaderSize)
	}
	return h, nil
}

// ParseReply parses a reply frame.
func ParseReply(buf []byte) (Reply, error) {
	h, err := parseHeader(buf, KindReply)
	r := Reply{Status: h.second, Op: h.op, ID: h.id}
	if err != nil {
		return r, err
	}
	switch r.Status {
	case StatusOK:
	case StatusError:
		if len(buf)-HeaderSize < 5 {
			return r, fmt.Errorf("%w: error reply without a SQLSTATE", ErrShortPayload)
		}
	default:
		return r, fmt.Errorf("%w: %d", ErrBadStatus, r.Status)
	}
	r.Payload = buf[HeaderSize:]
	return r, nil
}

// Err returns nil for an ok reply and a *ServerError for an error reply.
func (r Reply) Err() error {
	if r.Status == StatusOK {
		return nil
	}
	if len(r.Payload) < 5 {
		return &ServerError{SQLState: "XX000", Message: "error reply without a SQLSTATE"}
	}
	return &ServerError{SQLState: string(r.Payload[:5]), Message: string(r.Payload[5:])}
}

// ServerErr returns the error of an error reply (nil for an ok reply),
// read in the layout of the channel's version v: from version 3 message,
// detail and hint with their lengths, which must add up to the payload
// exactly (else ErrBadErrorPayload: the reply is malformed). Hello's
// errors keep the version-1 layout, as they may come before a version is
// chosen.
func (r Reply) ServerErr(v uint16) (*ServerError, error) {
	if r.Status == StatusOK {
		return nil, nil
	}
	if v < Version3 || r.Op == OpHello {
		return r.Err().(*ServerError), nil
	}
	return ParseErrorPayloadV3(r.Payload)
}

// ErrBadErrorPayload: a version-3 error reply whose lengths do not add up.
var ErrBadErrorPayload = errors.New("malformed error reply payload")

// ParseErrorPayloadV3 parses a version-3 error payload: SQLSTATE, then
// message, detail and hint, each after its u16 length.
func ParseErrorPayloadV3(p []byte) (*ServerError, error) {
	if len(p) < 5 {
		return nil, fmt.Errorf("%w: %d bytes, no SQLSTATE", ErrBadErrorPayload, len(p))
	}
	se := &ServerError{SQLState: string(p[:5])}
	rest := p[5:]
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"message", &se.Message}, {"detail", &se.Detail}, {"hint", &se.Hint}} {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: no %s length", ErrBadErrorPayload, f.name)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest)-2 < n {
			return nil, fmt.Errorf("%w: %s of %d bytes runs past the payload", ErrBadErrorPayload, f.name, n)
		}
		*f.dst = string(rest[2 : 2+n])
		rest = rest[2+n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the hint", ErrBadErrorPayload, len(rest))
	}
	return se, nil
}

// AppendErrorPayloadV3 appends a version-3 error payload (for tests and
// fake peers); texts over 65535 bytes are the caller's error.
func AppendErrorPayloadV3(dst []byte, se ServerError) []byte {
	dst = append(dst, se.SQLState...)
	for _, t := range [...]string{se.Message, se.Detail, se.Hint} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(t)))
		dst = append(dst, t...)
	}
	return dst
}

// ServerError is an error reply from the primary: the request reached the
// extension and was refused or failed there. The channel goes on.
type ServerError struct {
	SQLState string
	Message  string
	// Detail and Hint come on a version 3 channel; "" when none.
	Detail string
	Hint   string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("primary replied ERROR %s: %s", e.SQLState, e.Message)
}

// Goodbye is the server's last frame on a version-2 channel: the backend is
// ending (a FATAL follows), LastID is the id of the last request it read,
// and no later request was read.
type Goodbye struct {
	LastID   uint32
	SQLState string
	Message  string
}

// IsGoodbye reports whether buf is a goodbye frame (by its kind byte).
func IsGoodbye(buf []byte) bool { return len(buf) > 0 && buf[0] == KindGoodbye }

// ParseGoodbye parses a goodbye frame: op 0, status 0, an error payload.
func ParseGoodbye(buf []byte) (Goodbye, error) {
	h, err := parseHeader(buf, KindGoodbye)
	if err != nil {
		return Goodbye{}, err
	}
	if h.second != StatusOK || h.op != 0 {
		return Goodbye{}, fmt.Errorf("%w: goodbye with status %d op %d", ErrBadStatus, h.second, h.op)
	}
	if len(buf)-HeaderSize < 5 {
		return Goodbye{}, fmt.Errorf("%w: goodbye without a SQLSTATE", ErrShortPayload)
	}
	return Goodbye{LastID: h.id, SQLState: string(buf[HeaderSize : HeaderSize+5]), Message: string(buf[HeaderSize+5:])}, nil
}
