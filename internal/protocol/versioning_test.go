package protocol

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// A later protocol version may add fields at the end of the hello, ping and
// wal reply payloads: the client reads those replies unchanged with bytes
// it does not know at their end. Nowhere else: N's payload has its exact
// size, and a frame's length field must match the frame.
// claim: protocol.versioning
func TestUnknownTrailingBytesOnlyWhereVersioningAllowsThem(t *testing.T) {
	more := func(b []byte) []byte { return append(append([]byte{}, b...), 0xde, 0xad, 0xbe, 0xef) }

	hello, err := ParseHelloReply(capturedHello)
	if err != nil {
		t.Fatal(err)
	}
	if later, err := ParseHelloReply(more(capturedHello)); err != nil || !reflect.DeepEqual(later, hello) {
		t.Errorf("hello with trailing bytes: %+v %v, want %+v", later, err, hello)
	}

	ping := PingReply{ServerTime: time.UnixMicro(1764000000123456), WALPosition: 0x16B374D848, Timeline: 3, InRecovery: true}.Append(nil)
	p, _ := ParsePingReply(ping)
	if later, err := ParsePingReply(more(ping)); err != nil || !reflect.DeepEqual(later, p) {
		t.Errorf("ping with trailing bytes: %+v %v, want %+v", later, err, p)
	}

	wal := make([]byte, walReportSize)
	wal[0], wal[4], wal[12] = 1, 7, 0x42
	w, err := ParseWALReport(wal)
	if err != nil {
		t.Fatal(err)
	}
	if later, err := ParseWALReport(more(wal)); err != nil || !reflect.DeepEqual(later, w) {
		t.Errorf("wal with trailing bytes: %+v %v, want %+v", later, err, w)
	}

	if _, err := ParseN(more(AppendN(nil, [3]int32{1, 2, 3}))); !errors.Is(err, ErrNPayload) {
		t.Errorf("N with trailing bytes: %v, want ErrNPayload", err)
	}
	frame := AppendReply(nil, OpPing, 1, StatusOK, ping)
	if _, err := ParseReply(more(frame)); !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("frame with bytes past its length: %v, want ErrLengthMismatch", err)
	}
}
