package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The exact bytes of docs/protocol.md: these keep the C extension and Go in
// agreement (the same frames are answered by the real server in the
// end-to-end tests).
// claim: protocol.frame-header
// claim: protocol.conventions
func TestRequestLayout(t *testing.T) {
	got := AppendRequest(nil, OpN, 7, AppendN(nil, [3]int32{100, 200, 300}))
	want := unhex(t, "51 01 004e 00000007 0000000c 00000064 000000c8 0000012c")
	if !bytes.Equal(got, want) {
		t.Fatalf("N request\n got % x\nwant % x", got, want)
	}
	got = AppendRequest(nil, OpPing, 0xdeadbeef, nil)
	want = unhex(t, "51 01 0050 deadbeef 00000000")
	if !bytes.Equal(got, want) {
		t.Fatalf("ping request\n got % x\nwant % x", got, want)
	}
}

func TestReplyLayout(t *testing.T) {
	got := AppendReply(nil, OpN, 7, StatusOK, AppendN(nil, [3]int32{400, 500, 600}))
	want := unhex(t, "41 00 004e 00000007 0000000c 00000190 000001f4 00000258")
	if !bytes.Equal(got, want) {
		t.Fatalf("N reply\n got % x\nwant % x", got, want)
	}
	got = AppendErrorReply(nil, 0x1234, 6, "42883", "unknown op 0x1234")
	want = append(unhex(t, "41 01 1234 00000006 00000016"), "42883unknown op 0x1234"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("error reply\n got % x\nwant % x", got, want)
	}
}

func TestParseReplyRoundTrip(t *testing.T) {
	buf := AppendReply(nil, OpPing, 9, StatusOK, []byte("abc"))
	r, err := ParseReply(buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.Op != OpPing || r.ID != 9 || r.Status != StatusOK || string(r.Payload) != "abc" || r.Err() != nil {
		t.Fatalf("got %+v", r)
	}
	buf = AppendErrorReply(nil, OpN, 3, "22003", "integer out of range")
	r, err = ParseReply(buf)
	if err != nil {
		t.Fatal(err)
	}
	var se *ServerError
	if !errors.As(r.Err(), &se) || se.SQLState != "22003" || se.Message != "integer out of range" {
		t.Fatalf("error reply: %v", r.Err())
	}
}

// claim: protocol.frame-length-exact
// claim: protocol.error-payload-short
func TestParseReplyMalformed(t *testing.T) {
	ok := AppendReply(nil, OpN, 1, StatusOK, []byte{1, 2, 3})
	cases := []struct {
		name string
		buf  []byte
		want error
	}{
		{"empty", nil, ErrShortFrame},
		{"11 bytes", ok[:11], ErrShortFrame},
		{"request kind", AppendRequest(nil, OpN, 1, nil), ErrWrongKind},
		{"truncated payload", ok[:len(ok)-1], ErrLengthMismatch},
		{"trailing byte", append(append([]byte{}, ok...), 0), ErrLengthMismatch},
		{"status 2", func() []byte { b := append([]byte{}, ok...); b[1] = 2; return b }(), ErrBadStatus},
		{"error without sqlstate", AppendReply(nil, OpN, 1, StatusError, []byte("4288")), ErrShortPayload},
		{"length field huge", func() []byte { b := append([]byte{}, ok...); b[8] = 0xff; return b }(), ErrLengthMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseReply(c.buf)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// claim: protocol.frame-too-short
func TestParseRequestMalformed(t *testing.T) {
	ok := AppendRequest(nil, OpN, 5, []byte{1})
	if r, err := ParseRequest(ok); err != nil || r.ID != 5 || r.Op != OpN || len(r.Payload) != 1 {
		t.Fatalf("valid request: %+v %v", r, err)
	}
	v2 := append([]byte{}, ok...)
	v2[1] = 2
	r, err := ParseRequest(v2)
	if !errors.Is(err, ErrBadVersion) || r.ID != 5 || r.Op != OpN {
		t.Fatalf("version 2: %+v %v (the id and op must still be read, for the error reply)", r, err)
	}
	if _, err := ParseRequest(ok[:5]); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("short: %v", err)
	}
	if _, err := ParseRequest(AppendReply(nil, OpN, 1, 0, nil)); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("reply kind: %v", err)
	}
	if _, err := ParseRequest(ok[:len(ok)-1]); !errors.Is(err, ErrLengthMismatch) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestAppendRequestDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 64)
	payload := AppendN(nil, [3]int32{1, 2, 3})
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendRequest(buf[:0], OpN, 1, payload)
	})
	if allocs != 0 {
		t.Fatalf("AppendRequest allocated %.1f times per call", allocs)
	}
}

func TestParseOp(t *testing.T) {
	for in, want := range map[string]uint16{"N": OpN, "n": OpN, "ping": OpPing, "PING": OpPing, "hello": OpHello, "256": 256, "0x0100": 0x100, "65535": 65535} {
		got, err := ParseOp(in)
		if err != nil || got != want {
			t.Errorf("ParseOp(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "nope", "65536", "-1", "0x10000"} {
		if _, err := ParseOp(in); err == nil {
			t.Errorf("ParseOp(%q): want an error", in)
		}
	}
	if OpName(OpN) != "N" || OpName(0x0100) != "0x0100" {
		t.Fatalf("OpName: %s %s", OpName(OpN), OpName(0x0100))
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, 64)
	payload := AppendN(nil, [3]int32{1, 2, 3})
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], OpN, 1, payload)
	}
}

func BenchmarkParseReply(b *testing.B) {
	buf := AppendReply(nil, OpN, 1, StatusOK, AppendN(nil, [3]int32{1, 2, 3}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseReply(buf); err != nil {
			b.Fatal(err)
		}
	}
}
