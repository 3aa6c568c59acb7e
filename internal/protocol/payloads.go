package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// HelloNameMax is the longest client name hello carries.
const HelloNameMax = 64

// HelloRequest is the payload of a hello request.
type HelloRequest struct {
	MinVersion   uint16
	MaxVersion   uint16
	MaxFrameSize uint32
	ClientName   string // cut to HelloNameMax bytes by Append
}

// Append appends the payload to dst.
func (h HelloRequest) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.MinVersion)
	dst = binary.BigEndian.AppendUint16(dst, h.MaxVersion)
	dst = binary.BigEndian.AppendUint32(dst, h.MaxFrameSize)
	name := h.ClientName
	if len(name) > HelloNameMax {
		name = name[:HelloNameMax]
	}
	return append(dst, name...)
}

// OpInfo describes one operation offered by the server.
type OpInfo struct {
	Op      uint16
	Builtin bool
	Flags   uint8 // all flags as sent, Builtin included
	Name    string
}

// OpFlagBuiltin marks a built-in operation.
const OpFlagBuiltin uint8 = 0x01

// HelloReply is the payload of a hello reply.
type HelloReply struct {
	Version          uint16
	InRecovery       bool
	ServerVersionNum uint32
	SystemIdentifier uint64
	Timeline         uint32
	MaxFrameSize     uint32
	Ops              []OpInfo
}

// helloFixed is the size of the fixed part of a hello reply.
const helloFixed = 26

// ParseHelloReply parses a hello reply payload. Bytes after the last
// operation are ignored (a later version may add fields there).
func ParseHelloReply(buf []byte) (HelloReply, error) {
	if len(buf) < helloFixed {
		return HelloReply{}, fmt.Errorf("hello reply: %w: %d bytes, want at least %d", ErrShortPayload, len(buf), helloFixed)
	}
	h := HelloReply{
		Version:          binary.BigEndian.Uint16(buf[0:]),
		InRecovery:       binary.BigEndian.Uint16(buf[2:])&1 != 0,
		ServerVersionNum: binary.BigEndian.Uint32(buf[4:]),
		SystemIdentifier: binary.BigEndian.Uint64(buf[8:]),
		Timeline:         binary.BigEndian.Uint32(buf[16:]),
		MaxFrameSize:     binary.BigEndian.Uint32(buf[20:]),
	}
	n := int(binary.BigEndian.Uint16(buf[24:]))
	rest := buf[helloFixed:]
	// Each op needs at least 4 bytes: refuse counts the buffer cannot hold
	// before allocating for them.
	if n > len(rest)/4 {
		return HelloReply{}, fmt.Errorf("hello reply: %w: %d ops announced in %d bytes", ErrShortPayload, n, len(rest))
	}
	h.Ops = make([]OpInfo, 0, n)
	for i := 0; i < n; i++ {
		if len(rest) < 4 {
			return HelloReply{}, fmt.Errorf("hello reply: %w: op %d truncated", ErrShortPayload, i)
		}
		o := OpInfo{Op: binary.BigEndian.Uint16(rest), Flags: rest[2]}
		o.Builtin = o.Flags&OpFlagBuiltin != 0
		l := int(rest[3])
		rest = rest[4:]
		if len(rest) < l {
			return HelloReply{}, fmt.Errorf("hello reply: %w: name of op %d truncated", ErrShortPayload, i)
		}
		o.Name = string(rest[:l])
		rest = rest[l:]
		h.Ops = append(h.Ops, o)
	}
	return h, nil
}

// PingReply is the payload of a ping reply.
type PingReply struct {
	ServerTime  time.Time
	WALPosition uint64
	Timeline    uint32
	InRecovery  bool
}

// PingReplySize is the size of a ping reply's payload.
const PingReplySize = 21

// ParsePingReply parses a ping reply payload; bytes after the known fields
// are ignored.
func ParsePingReply(buf []byte) (PingReply, error) {
	if len(buf) < PingReplySize {
		return PingReply{}, fmt.Errorf("ping reply: %w: %d bytes, want %d", ErrShortPayload, len(buf), PingReplySize)
	}
	return PingReply{
		ServerTime:  time.UnixMicro(int64(binary.BigEndian.Uint64(buf[0:]))),
		WALPosition: binary.BigEndian.Uint64(buf[8:]),
		Timeline:    binary.BigEndian.Uint32(buf[16:]),
		InRecovery:  buf[20]&1 != 0,
	}, nil
}

// LSN is a WAL position.
type LSN uint64

// String formats the LSN as PostgreSQL does ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// ParseLSN reads PostgreSQL's "X/X" form.
func ParseLSN(s string) (LSN, error) {
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	if fmt.Sprintf("%X/%X", hi, lo) != s && fmt.Sprintf("%x/%x", hi, lo) != s {
		return 0, fmt.Errorf("LSN %q is not in the form X/X", s)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// ErrNPayload means an N payload is not three int32.
var ErrNPayload = errors.New("op N takes exactly three int32 (12 bytes)")

// AppendN appends the N payload (three int32) to dst.
func AppendN(dst []byte, v [3]int32) []byte {
	for _, x := range v {
		dst = binary.BigEndian.AppendUint32(dst, uint32(x))
	}
	return dst
}

// ParseN parses an N payload, in or out.
func ParseN(buf []byte) ([3]int32, error) {
	if len(buf) != 12 {
		return [3]int32{}, fmt.Errorf("%w: got %d bytes", ErrNPayload, len(buf))
	}
	var v [3]int32
	for i := range v {
		v[i] = int32(binary.BigEndian.Uint32(buf[4*i:]))
	}
	return v, nil
}

// ApplyN is what the server computes for N: each value plus 300. It fails
// when a sum leaves the int32 range, as the server does (22003).
func ApplyN(v [3]int32) ([3]int32, error) {
	var out [3]int32
	for i, x := range v {
		s := int64(x) + 300
		if s > math.MaxInt32 {
			return out, &ServerError{SQLState: "22003", Message: "integer out of range"}
		}
		out[i] = int32(s)
	}
	return out, nil
}

// AppendRawN appends a raw-mode request: 'N' and three int32, no header.
func AppendRawN(dst []byte, v [3]int32) []byte {
	return AppendN(append(dst, 'N'), v)
}

// ParseRawNReply parses a raw-mode reply: exactly three int32.
func ParseRawNReply(buf []byte) ([3]int32, error) {
	if len(buf) != 12 {
		return [3]int32{}, fmt.Errorf("raw N reply: want 12 bytes, got %d", len(buf))
	}
	return ParseN(buf)
}

// WALReport is the payload of a wal reply (docs/protocol.md).
type WALReport struct {
	InRecovery bool
	Timeline   uint32
	// On a primary (zero in recovery):
	Insert, Write, Flush LSN
	// In recovery (zero on a primary):
	Received, Replayed LSN
	// LastReplayedCommit is the commit time of the last replayed
	// transaction (zero when unknown or on a primary).
	LastReplayedCommit time.Time
}

const walReportSize = 1 + 4 + 6*8

// ParseWALReport parses a wal reply payload; trailing bytes are ignored.
func ParseWALReport(buf []byte) (WALReport, error) {
	if len(buf) < walReportSize {
		return WALReport{}, fmt.Errorf("wal reply: %w: %d bytes, want %d", ErrShortPayload, len(buf), walReportSize)
	}
	w := WALReport{InRecovery: buf[0]&1 != 0, Timeline: binary.BigEndian.Uint32(buf[1:])}
	l := func(i int) LSN { return LSN(binary.BigEndian.Uint64(buf[5+8*i:])) }
	w.Insert, w.Write, w.Flush, w.Received, w.Replayed = l(0), l(1), l(2), l(3), l(4)
	if ts := int64(binary.BigEndian.Uint64(buf[45:])); ts != 0 {
		w.LastReplayedCommit = time.UnixMicro(ts)
	}
	return w, nil
}

// Forks of a relation, for page requests.
const (
	ForkMain = 0
	ForkFSM  = 1
	ForkVM   = 2
	ForkInit = 3
)

// AppendPageRequest appends a page request payload: fork, block number and
// relation name (optionally schema-qualified, quoted as in SQL).
func AppendPageRequest(dst []byte, fork uint8, block uint32, relation string) []byte {
	dst = append(dst, fork)
	dst = binary.BigEndian.AppendUint32(dst, block)
	return append(dst, relation...)
}
