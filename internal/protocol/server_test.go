package protocol

// The server's side of the frame format (the extension's, in C), for this
// package's round-trip tests and fuzzers only: standbyd never encodes a
// reply. Unit tests of other packages use internal/conn/conntest.

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Request is a parsed request frame. Payload aliases the parsed buffer.
type Request struct {
	Version uint8
	Op      uint16
	ID      uint32
	Payload []byte
}

// ParseRequest parses a request frame.
func ParseRequest(buf []byte) (Request, error) {
	h, err := parseHeader(buf, KindRequest)
	r := Request{Version: h.second, Op: h.op, ID: h.id}
	if err != nil {
		return r, err
	}
	if uint16(r.Version) != Version1 {
		return r, fmt.Errorf("%w: %d", ErrBadVersion, r.Version)
	}
	r.Payload = buf[HeaderSize:]
	return r, nil
}

// AppendReply appends a reply frame to dst.
func AppendReply(dst []byte, op uint16, id uint32, status byte, payload []byte) []byte {
	dst = append(dst, KindReply, status)
	dst = binary.BigEndian.AppendUint16(dst, op)
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// AppendErrorReply appends an error reply with sqlstate (5 characters) and
// message.
func AppendErrorReply(dst []byte, op uint16, id uint32, sqlstate, message string) []byte {
	payload := make([]byte, 0, 5+len(message))
	payload = append(payload, fixSQLState(sqlstate)...)
	payload = append(payload, message...)
	return AppendReply(dst, op, id, StatusError, payload)
}

func fixSQLState(s string) string {
	if len(s) == 5 {
		return s
	}
	return "XX000"
}

// ParseHelloRequest parses a hello request payload.
func ParseHelloRequest(buf []byte) (HelloRequest, error) {
	if len(buf) < 8 {
		return HelloRequest{}, fmt.Errorf("hello request: %w: %d bytes, want at least 8", ErrShortPayload, len(buf))
	}
	if len(buf)-8 > HelloNameMax {
		return HelloRequest{}, fmt.Errorf("hello request: client name of %d bytes is longer than %d", len(buf)-8, HelloNameMax)
	}
	return HelloRequest{
		MinVersion:   binary.BigEndian.Uint16(buf[0:]),
		MaxVersion:   binary.BigEndian.Uint16(buf[2:]),
		MaxFrameSize: binary.BigEndian.Uint32(buf[4:]),
		ClientName:   string(buf[8:]),
	}, nil
}

// Append appends the payload to dst.
func (h HelloReply) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	var flags uint16
	if h.InRecovery {
		flags |= 1
	}
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, h.ServerVersionNum)
	dst = binary.BigEndian.AppendUint64(dst, h.SystemIdentifier)
	dst = binary.BigEndian.AppendUint32(dst, h.Timeline)
	dst = binary.BigEndian.AppendUint32(dst, h.MaxFrameSize)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Ops)))
	for _, o := range h.Ops {
		f := o.Flags
		if o.Builtin {
			f |= OpFlagBuiltin
		}
		name := o.Name
		if len(name) > math.MaxUint8 {
			name = name[:math.MaxUint8]
		}
		dst = binary.BigEndian.AppendUint16(dst, o.Op)
		dst = append(dst, f, byte(len(name)))
		dst = append(dst, name...)
	}
	return dst
}

// Append appends the payload to dst.
func (p PingReply) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.ServerTime.UnixMicro()))
	dst = binary.BigEndian.AppendUint64(dst, p.WALPosition)
	dst = binary.BigEndian.AppendUint32(dst, p.Timeline)
	var f byte
	if p.InRecovery {
		f = 1
	}
	return append(dst, f)
}

// Append appends the payload to dst.
func (w WALReport) Append(dst []byte) []byte {
	var f byte
	if w.InRecovery {
		f = 1
	}
	dst = append(dst, f)
	dst = binary.BigEndian.AppendUint32(dst, w.Timeline)
	for _, l := range []LSN{w.Insert, w.Write, w.Flush, w.Received, w.Replayed} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(l))
	}
	var ts int64
	if !w.LastReplayedCommit.IsZero() {
		ts = w.LastReplayedCommit.UnixMicro()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(ts))
}
