package conntest

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/standbyd/standbyd/internal/protocol"
)

// The server's side of the frame format (docs/protocol.md), which the
// extension implements in C and standbyd itself never needs: requests
// parsed, replies and payloads encoded.

// Request is a parsed request frame. Payload aliases the parsed buffer.
type Request struct {
	Op      uint16
	ID      uint32
	Payload []byte
}

// ParseRequest parses a request frame.
func ParseRequest(buf []byte) (Request, error) {
	if len(buf) < protocol.HeaderSize {
		return Request{}, protocol.ErrShortFrame
	}
	r := Request{Op: binary.BigEndian.Uint16(buf[2:4]), ID: binary.BigEndian.Uint32(buf[4:8])}
	if buf[0] != protocol.KindRequest {
		return r, fmt.Errorf("%w: %#x", protocol.ErrWrongKind, buf[0])
	}
	if uint16(buf[1]) != protocol.Version1 {
		return r, fmt.Errorf("%w: %d", protocol.ErrBadVersion, buf[1])
	}
	if n := binary.BigEndian.Uint32(buf[8:12]); uint64(n) != uint64(len(buf)-protocol.HeaderSize) {
		return r, protocol.ErrLengthMismatch
	}
	r.Payload = buf[protocol.HeaderSize:]
	return r, nil
}

// AppendReply appends a reply frame to dst.
func AppendReply(dst []byte, op uint16, id uint32, status byte, payload []byte) []byte {
	dst = append(dst, protocol.KindReply, status)
	dst = binary.BigEndian.AppendUint16(dst, op)
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// AppendErrorReply appends an error reply with sqlstate (5 characters, else
// XX000) and message.
func AppendErrorReply(dst []byte, op uint16, id uint32, sqlstate, message string) []byte {
	if len(sqlstate) != 5 {
		sqlstate = "XX000"
	}
	return AppendReply(dst, op, id, protocol.StatusError, append([]byte(sqlstate), message...))
}

// AppendHelloReply appends a hello reply payload.
func AppendHelloReply(dst []byte, h protocol.HelloReply) []byte {
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
			f |= protocol.OpFlagBuiltin
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

// AppendPingReply appends a ping reply payload.
func AppendPingReply(dst []byte, p protocol.PingReply) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.ServerTime.UnixMicro()))
	dst = binary.BigEndian.AppendUint64(dst, p.WALPosition)
	dst = binary.BigEndian.AppendUint32(dst, p.Timeline)
	var f byte
	if p.InRecovery {
		f = 1
	}
	return append(dst, f)
}

// AppendWALReport appends a wal reply payload.
func AppendWALReport(dst []byte, w protocol.WALReport) []byte {
	var f byte
	if w.InRecovery {
		f = 1
	}
	dst = append(dst, f)
	dst = binary.BigEndian.AppendUint32(dst, w.Timeline)
	for _, l := range []protocol.LSN{w.Insert, w.Write, w.Flush, w.Received, w.Replayed} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(l))
	}
	var ts int64
	if !w.LastReplayedCommit.IsZero() {
		ts = w.LastReplayedCommit.UnixMicro()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(ts))
}

// AppendGoodbye appends a goodbye frame (protocol version 2) naming lastID
// as the last request read.
func AppendGoodbye(dst []byte, lastID uint32, sqlstate, message string) []byte {
	if len(sqlstate) != 5 {
		sqlstate = "XX000"
	}
	dst = AppendErrorReply(dst, 0, lastID, sqlstate, message)
	dst[len(dst)-(protocol.HeaderSize+5+len(message))] = protocol.KindGoodbye
	dst[len(dst)-(protocol.HeaderSize+5+len(message))+1] = protocol.StatusOK
	return dst
}
