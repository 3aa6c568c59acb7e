package fastproto

import (
	"bytes"
	"errors"
	"testing"
)

// claim: api.fast-frame-layout
func TestRequestLayout(t *testing.T) {
	b := AppendRequest(nil, Request{ID: 7, Op: 'N', TimeoutMS: 1500, Payload: []byte{1, 2}})
	want := []byte{'Q', 0, 0, 'N', 0, 0, 0, 7, 0, 0, 0, 6, 0, 0, 0x05, 0xdc, 1, 2}
	if !bytes.Equal(b, want) {
		t.Fatalf("by code:\n got % x\nwant % x", b, want)
	}
	b = AppendRequest(nil, Request{ID: 0x01020304, Name: "echo", Payload: []byte("x")})
	want = []byte{'Q', FlagOpByName, 0, 0, 1, 2, 3, 4, 0, 0, 0, 10, 0, 0, 0, 0, 4, 'e', 'c', 'h', 'o', 'x'}
	if !bytes.Equal(b, want) {
		t.Fatalf("by name:\n got % x\nwant % x", b, want)
	}
	if RequestSize("echo", 1) != len(b) {
		t.Fatalf("RequestSize %d, frame %d", RequestSize("echo", 1), len(b))
	}
	h := ParseHeader(b)
	r, err := ParseRequestBody(h, b[HeaderSize:])
	if err != nil || r.ID != 0x01020304 || r.Name != "echo" || string(r.Payload) != "x" || r.TimeoutMS != 0 {
		t.Fatalf("parse: %+v %v", r, err)
	}
}

func TestReplyLayout(t *testing.T) {
	b := AppendReply(nil, 'P', 9, []byte("ok"))
	if want := []byte{'A', 0, 0, 'P', 0, 0, 0, 9, 0, 0, 0, 2, 'o', 'k'}; !bytes.Equal(b, want) {
		t.Fatalf("ok reply % x", b)
	}
	b = AppendError(nil, 0x100, 3, ErrorReply{Kind: "primary_error", SQLState: "22003", Message: "out of range"})
	h := ParseHeader(b)
	if h.Kind != KindReply || h.Second != StatusError || h.Op != 0x100 || h.ID != 3 || int(h.Length) != len(b)-HeaderSize {
		t.Fatalf("error header %+v", h)
	}
	if b[HeaderSize] != 13 || string(b[HeaderSize+1:HeaderSize+14]) != "primary_error" || string(b[HeaderSize+14:HeaderSize+19]) != "22003" {
		t.Fatalf("error body % x", b[HeaderSize:])
	}
	e, err := ParseError(b[HeaderSize:])
	if err != nil || e != (ErrorReply{Kind: "primary_error", SQLState: "22003", Message: "out of range"}) {
		t.Fatalf("parse %+v %v", e, err)
	}
	// No SQLSTATE travels as 00000 and comes back empty.
	b = AppendError(nil, 0, 1, ErrorReply{Kind: "busy", Message: "m"})
	if string(b[HeaderSize+5:HeaderSize+10]) != NoSQLState {
		t.Fatalf("no sqlstate % x", b)
	}
	if e, _ := ParseError(b[HeaderSize:]); e.SQLState != "" || e.Kind != "busy" || e.Message != "m" {
		t.Fatalf("parse %+v", e)
	}
	if _, err := ParseError([]byte{4, 'b', 'u', 's', 'y', '0'}); !errors.Is(err, ErrShortPayload) {
		t.Fatalf("short error body: %v", err)
	}
}

// claim: api.fast-preamble
func TestPreambles(t *testing.T) {
	p := AppendClientPreamble(nil, Version1)
	if string(p) != "SBYDFP\x01\n" {
		t.Fatalf("client preamble %q", p)
	}
	if v, err := ParseClientPreamble(p); err != nil || v != 1 {
		t.Fatalf("%d %v", v, err)
	}
	if _, err := ParseClientPreamble([]byte("SBYDFP\x00\n")); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("version 0: %v", err)
	}
	if _, err := ParseClientPreamble([]byte("GET / HT")); !errors.Is(err, ErrNotFastPath) {
		t.Fatalf("http: %v", err)
	}
	sp := AppendServerPreamble(nil, ServerPreamble{Version: 1, MaxFrame: 0x0102, MaxInFlight: 128})
	if want := "SBYDFP\x01\n\x00\x00\x01\x02\x00\x00\x00\x80"; string(sp) != want {
		t.Fatalf("server preamble %q", sp)
	}
	if got, err := ParseServerPreamble(sp); err != nil || got.MaxFrame != 0x102 || got.MaxInFlight != 128 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseServerPreamble([]byte("SBYDFP\x02\n\x00\x00\x01\x02\x00\x00\x00\x80")); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("a version the client does not speak: %v", err)
	}
}

// claim: api.fast-request-errors
func TestRequestBodyErrors(t *testing.T) {
	cases := []struct {
		h    Header
		body []byte
		want error
	}{
		{Header{Kind: 'Q', Second: 0x02}, []byte{0, 0, 0, 0}, ErrBadFlags},
		{Header{Kind: 'Q'}, []byte{0, 0, 0}, ErrShortBody},
		{Header{Kind: 'Q', Second: FlagOpByName}, []byte{0, 0, 0, 0}, ErrBadName},
		{Header{Kind: 'Q', Second: FlagOpByName}, []byte{0, 0, 0, 0, 0}, ErrBadName},
		{Header{Kind: 'Q', Second: FlagOpByName}, []byte{0, 0, 0, 0, 3, 'a', 'b'}, ErrBadName},
		{Header{Kind: 'Q', Second: FlagOpByName, Op: 5}, []byte{0, 0, 0, 0, 1, 'a'}, ErrBadName},
	}
	for _, c := range cases {
		if _, err := ParseRequestBody(c.h, c.body); !errors.Is(err, c.want) {
			t.Errorf("% x with flags %#x: %v, want %v", c.body, c.h.Second, err, c.want)
		}
	}
}

// Whatever the body, parsing never panics, and what it accepts encodes
// back to the same bytes.
func FuzzParseRequestBody(f *testing.F) {
	f.Add(byte(0), uint16('N'), []byte{0, 0, 0, 0, 1, 2, 3})
	f.Add(FlagOpByName, uint16(0), []byte{0, 0, 1, 0, 4, 'e', 'c', 'h', 'o', 9})
	f.Add(byte(3), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, flags byte, op uint16, body []byte) {
		h := Header{Kind: KindRequest, Second: flags, Op: op, ID: 42, Length: uint32(len(body))}
		r, err := ParseRequestBody(h, body)
		if err != nil {
			return
		}
		back := AppendRequest(nil, r)
		if !bytes.Equal(back[HeaderSize:], body) || ParseHeader(back) != h {
			t.Fatalf("round trip: % x -> %+v -> % x", body, r, back)
		}
	})
}
