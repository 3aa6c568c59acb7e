package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// A hello reply exactly as the extension sent it on PostgreSQL 15.20 (captured
// from a real server): version 1, primary, system identifier
// 0x4a046b0598255b37, timeline 1, max frame 1 MiB, ops hello, ping, N.
var capturedHello = unhex2("0001 0000 00024a04 6b0598255b37512b 00000001 00100000 0003" +
	"0048 01 05 68656c6c6f" + "0050 01 04 70696e67" + "004e 01 01 4e")

func unhex2(s string) []byte {
	var out []byte
	var hi = -1
	for _, c := range s {
		var v int
		switch {
		case c >= '0' && c <= '9':
			v = int(c - '0')
		case c >= 'a' && c <= 'f':
			v = int(c-'a') + 10
		default:
			continue
		}
		if hi < 0 {
			hi = v
		} else {
			out = append(out, byte(hi<<4|v))
			hi = -1
		}
	}
	return out
}

// claim: protocol.hello-reply-layout
func TestParseCapturedHello(t *testing.T) {
	h, err := ParseHelloReply(capturedHello)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 1 || h.InRecovery || h.ServerVersionNum != 0x24a04 || h.Timeline != 1 || h.MaxFrameSize != 1<<20 {
		t.Fatalf("fields: %+v", h)
	}
	if h.ServerVersionNum != 150020 {
		t.Fatalf("server_version_num = %d", h.ServerVersionNum)
	}
	want := []OpInfo{{OpHello, true, 1, "hello"}, {OpPing, true, 1, "ping"}, {OpN, true, 1, "N"}}
	if !reflect.DeepEqual(h.Ops, want) {
		t.Fatalf("ops = %+v", h.Ops)
	}
	if got := h.Append(nil); !bytes.Equal(got, capturedHello) {
		t.Fatalf("re-encoded\n got % x\nwant % x", got, capturedHello)
	}
}

// Flag bits the client does not know are ignored: only bit 0 of the
// hello flags (in recovery) and of each op's flags (built in) count.
// claim: protocol.hello-reply-layout
func TestHelloReplyReservedFlagsIgnored(t *testing.T) {
	b := append([]byte(nil), capturedHello...)
	b[2], b[3] = 0xff, 0xfe // every hello flag but recovery
	b[26+2] = 0xfe          // hello: every op flag but built-in
	b[26+4+5+2] = 0xff      // ping: built in, and every other bit
	h, err := ParseHelloReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.InRecovery || h.Version != 1 || h.MaxFrameSize != 1<<20 {
		t.Fatalf("fields with reserved flags set: %+v", h)
	}
	if h.Ops[0].Builtin || !h.Ops[1].Builtin || h.Ops[0].Name != "hello" || h.Ops[1].Name != "ping" {
		t.Fatalf("ops with reserved flags set: %+v", h.Ops)
	}
	b[3] = 0xff // and now recovery too
	if h, err := ParseHelloReply(b); err != nil || !h.InRecovery {
		t.Fatalf("recovery bit among reserved ones: %+v, %v", h, err)
	}
}

func TestHelloReplyTruncations(t *testing.T) {
	for n := 0; n < len(capturedHello); n++ {
		if _, err := ParseHelloReply(capturedHello[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: want an error", n)
		}
	}
	// Unknown trailing bytes are ignored (forward compatibility).
	if _, err := ParseHelloReply(append(append([]byte{}, capturedHello...), 9, 9, 9)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
	// A count the buffer cannot hold is refused before allocating.
	bad := append([]byte{}, capturedHello[:26]...)
	bad[24], bad[25] = 0xff, 0xff
	if _, err := ParseHelloReply(bad); !errors.Is(err, ErrShortPayload) {
		t.Fatalf("huge op count: %v", err)
	}
}

// claim: protocol.hello-request-layout
func TestHelloRequest(t *testing.T) {
	h := HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 1 << 20, ClientName: "sm"}
	got := h.Append(nil)
	want := []byte{0, 1, 0, 1, 0, 0x10, 0, 0, 's', 'm'}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x want % x", got, want)
	}
	back, err := ParseHelloRequest(got)
	if err != nil || back != h {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	long := HelloRequest{ClientName: string(make([]byte, 100))}
	if n := len(long.Append(nil)); n != 8+HelloNameMax {
		t.Fatalf("name not cut: %d bytes", n)
	}
	if _, err := ParseHelloRequest(make([]byte, 8+HelloNameMax+1)); err == nil {
		t.Fatal("name over the limit: want an error")
	}
}

// claim: protocol.ping-reply-layout
func TestPingReply(t *testing.T) {
	p := PingReply{ServerTime: time.UnixMicro(1764000000123456), WALPosition: 0x16B374D848, Timeline: 3, InRecovery: true}
	buf := p.Append(nil)
	if len(buf) != 21 {
		t.Fatalf("ping payload is %d bytes, want 21", len(buf))
	}
	back, err := ParsePingReply(buf)
	if err != nil || !back.ServerTime.Equal(p.ServerTime) || back.WALPosition != p.WALPosition || back.Timeline != 3 || !back.InRecovery {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if _, err := ParsePingReply(buf[:20]); !errors.Is(err, ErrShortPayload) {
		t.Fatalf("short ping: %v", err)
	}
	if LSN(0x16B374D848).String() != "16/B374D848" {
		t.Fatalf("LSN string %s", LSN(0x16B374D848))
	}
	if l, err := ParseLSN("16/B374D848"); err != nil || l != 0x16B374D848 {
		t.Fatalf("ParseLSN: %v %v", l, err)
	}
	if _, err := ParseLSN("16-B3"); err == nil {
		t.Fatal("ParseLSN accepted garbage")
	}
}

func TestN(t *testing.T) {
	out, err := ApplyN([3]int32{100, 200, 300})
	if err != nil || out != [3]int32{400, 500, 600} {
		t.Fatalf("ApplyN: %v %v", out, err)
	}
	if _, err := ApplyN([3]int32{1 << 30, 2147483647, 0}); err == nil {
		t.Fatal("ApplyN overflow: want an error")
	}
	if _, err := ParseN(make([]byte, 11)); !errors.Is(err, ErrNPayload) {
		t.Fatalf("ParseN short: %v", err)
	}
	raw := AppendRawN(nil, [3]int32{100, 200, 300})
	if !bytes.Equal(raw, []byte{'N', 0, 0, 0, 100, 0, 0, 0, 200, 0, 0, 1, 44}) {
		t.Fatalf("raw N % x", raw)
	}
	if _, err := ParseRawNReply(raw); err == nil {
		t.Fatal("a 13-byte raw reply must be refused")
	}
}

// IsBuiltin and BuiltinOps name the same ops, for every op code.
func TestIsBuiltinMatchesBuiltinOps(t *testing.T) {
	listed := map[uint16]bool{}
	for _, op := range BuiltinOps {
		listed[op] = true
	}
	for op := 0; op <= 0xFFFF; op++ {
		if IsBuiltin(uint16(op)) != listed[uint16(op)] {
			t.Fatalf("op 0x%04X: IsBuiltin %v, in BuiltinOps %v", op, IsBuiltin(uint16(op)), listed[uint16(op)])
		}
	}
}
