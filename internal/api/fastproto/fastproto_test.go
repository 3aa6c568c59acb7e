package fastproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"unicode/utf8"
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

// claim: api.fast-v1-error-layout
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
	if got, err := ParseServerPreamble([]byte("SBYDFP\x02\n\x00\x00\x01\x02\x00\x00\x00\x80")); err != nil || got.Version != Version2 {
		t.Fatalf("version 2: %+v %v", got, err)
	}
	if _, err := ParseServerPreamble([]byte("SBYDFP\x03\n\x00\x00\x01\x02\x00\x00\x00\x80")); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("a version the client does not speak: %v", err)
	}
	if string(AppendClientPreamble(nil, Version2)) != "SBYDFP\x02\n" {
		t.Fatalf("client preamble v2 %q", AppendClientPreamble(nil, Version2))
	}
}

// AcceptHandshake answers Handshake with the lower of the two versions and
// reports the one offered; a preamble that is not the fast path's is an
// error and gets no answer.
func TestAcceptHandshake(t *testing.T) {
	for _, c := range []struct{ offer, daemonMax, want byte }{
		{Version2, Version1, Version1},
		{Version1, Version2, Version1},
		{Version2, Version2, Version2},
	} {
		client, daemon := net.Pipe()
		type seen struct{ agreed, offered byte }
		daemonSaw := make(chan seen, 1)
		go func() {
			agreed, offered, err := AcceptHandshake(daemon, ServerPreamble{Version: c.daemonMax, MaxFrame: 4096, MaxInFlight: 7})
			if err != nil {
				t.Error(err)
			}
			daemonSaw <- seen{agreed, offered}
		}()
		got, err := Handshake(client, c.offer)
		if err != nil || got != (ServerPreamble{Version: c.want, MaxFrame: 4096, MaxInFlight: 7}) {
			t.Fatalf("offer %d to a daemon of %d: %+v, %v", c.offer, c.daemonMax, got, err)
		}
		if s := <-daemonSaw; s != (seen{c.want, c.offer}) {
			t.Fatalf("offer %d to a daemon of %d: the daemon agreed on %d and saw %d offered", c.offer, c.daemonMax, s.agreed, s.offered)
		}
		client.Close()
		daemon.Close()
	}
	client, daemon := net.Pipe()
	defer client.Close()
	defer daemon.Close()
	go func() { _, _ = io.WriteString(client, "GET / HT") }()
	if _, _, err := AcceptHandshake(daemon, ServerPreamble{Version: Version2}); !errors.Is(err, ErrNotFastPath) {
		t.Fatalf("an HTTP request: %v", err)
	}
}

// The version 2 error body: kind, SQLSTATE, then message, detail and hint,
// each with a u16 length.
// claim: api.fast-v2-error-layout
func TestErrorLayoutV2(t *testing.T) {
	e := ErrorReply{Kind: "primary_error", SQLState: "P0001", Message: "no stock", Detail: "item 7", Hint: "order less"}
	b := AppendErrorV(nil, Version2, 0x100, 3, e)
	want := append([]byte{'A', 1, 1, 0, 0, 0, 0, 3, 0, 0, 0, 49, 13}, "primary_errorP0001"...)
	want = append(append(want, 0, 8), "no stock"...)
	want = append(append(want, 0, 6), "item 7"...)
	want = append(append(want, 0, 10), "order less"...)
	if !bytes.Equal(b, want) {
		t.Fatalf("\n got % x\nwant % x", b, want)
	}
	got, err := ParseErrorV(Version2, b[HeaderSize:])
	if err != nil || got != e {
		t.Fatalf("parse %+v %v", got, err)
	}
	// Version 1 drops detail and hint.
	if got, err := ParseError(AppendErrorV(nil, Version1, 1, 1, e)[HeaderSize:]); err != nil || got.Message != "no stock" || got.Detail != "" || got.Hint != "" {
		t.Fatalf("v1 %+v %v", got, err)
	}
	// No detail, no hint: zero lengths.
	b = AppendErrorV(nil, Version2, 0, 1, ErrorReply{Kind: "busy", Message: "m"})
	if !bytes.HasSuffix(b, []byte{0, 1, 'm', 0, 0, 0, 0}) {
		t.Fatalf("empty detail and hint % x", b)
	}
	// Texts over 65535 bytes are cut on a character boundary.
	long := strings.Repeat("é", 40000)
	b = AppendErrorV(nil, Version2, 0, 1, ErrorReply{Kind: "x", Detail: long})
	got, err = ParseErrorV(Version2, b[HeaderSize:])
	if err != nil || len(got.Detail) != 65534 || !utf8.ValidString(got.Detail) {
		t.Fatalf("cut detail: %d bytes, %v", len(got.Detail), err)
	}
}

// A version 2 error body whose lengths do not add up is refused.
// claim: api.fast-v2-error-layout
func TestErrorV2Malformed(t *testing.T) {
	ok := AppendErrorV(nil, Version2, 0, 1, ErrorReply{Kind: "busy", Message: "m", Detail: "d", Hint: "h"})[HeaderSize:]
	for _, b := range [][]byte{
		ok[:len(ok)-1],                  // hint cut short
		append(ok[:len(ok):len(ok)], 0), // a byte after the hint
		ok[:1+4+5+3],                    // no detail length
		ok[:1+4+5],                      // no message length
	} {
		if _, err := ParseErrorV(Version2, b); err == nil {
			t.Errorf("% x parsed", b)
		}
	}
}

// claim: api.fast-identify
func TestIdentifyLayout(t *testing.T) {
	if MaxIdentifySize != 516 {
		t.Fatalf("the largest identify body is %d bytes, the doc says 516", MaxIdentifySize)
	}
	b := AppendIdentify(nil, Identify{PID: 0x01020304, Role: "app", Database: "shop"})
	want := []byte{'I', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 1, 2, 3, 4, 3, 'a', 'p', 'p', 4, 's', 'h', 'o', 'p'}
	if !bytes.Equal(b, want) {
		t.Fatalf("\n got % x\nwant % x", b, want)
	}
	id, err := ParseIdentifyBody(ParseHeader(b), b[HeaderSize:])
	if err != nil || id != (Identify{PID: 0x01020304, Role: "app", Database: "shop"}) {
		t.Fatalf("parse %+v %v", id, err)
	}
	body := b[HeaderSize:]
	for name, c := range map[string]struct {
		h    Header
		body []byte
	}{
		"flags":           {Header{Kind: KindIdentify, Second: 1}, body},
		"op":              {Header{Kind: KindIdentify, Op: 1}, body},
		"id":              {Header{Kind: KindIdentify, ID: 1}, body},
		"short":           {Header{Kind: KindIdentify}, body[:4]},
		"empty role":      {Header{Kind: KindIdentify}, []byte{0, 0, 0, 1, 0, 1, 'd'}},
		"empty database":  {Header{Kind: KindIdentify}, []byte{0, 0, 0, 1, 1, 'r', 0}},
		"role past end":   {Header{Kind: KindIdentify}, []byte{0, 0, 0, 1, 9, 'r'}},
		"trailing byte":   {Header{Kind: KindIdentify}, append(body[:len(body):len(body)], 0)},
		"database cut":    {Header{Kind: KindIdentify}, body[:len(body)-1]},
		"not utf-8 role":  {Header{Kind: KindIdentify}, []byte{0, 0, 0, 1, 1, 0xff, 1, 'd'}},
		"not utf-8 dname": {Header{Kind: KindIdentify}, []byte{0, 0, 0, 1, 1, 'r', 2, 0xc3, 0x28}},
	} {
		if _, err := ParseIdentifyBody(c.h, c.body); !errors.Is(err, ErrBadIdentify) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Whatever the body, parsing an identify frame or a version 2 error never
// panics, and what is accepted encodes back to the same bytes.
func FuzzParseV2Bodies(f *testing.F) {
	f.Add(AppendIdentify(nil, Identify{PID: 1, Role: "r", Database: "d"})[HeaderSize:])
	f.Add(AppendErrorV(nil, Version2, 0, 0, ErrorReply{Kind: "k", SQLState: "P0001", Message: "m", Detail: "d", Hint: "h"})[HeaderSize:])
	f.Add([]byte{0, 0, 0, 1, 1, 0xff, 1, 'd'})
	f.Fuzz(func(t *testing.T, body []byte) {
		if id, err := ParseIdentifyBody(Header{Kind: KindIdentify}, body); err == nil {
			if back := AppendIdentify(nil, id); !bytes.Equal(back[HeaderSize:], body) {
				t.Fatalf("identify round trip: % x -> %+v -> % x", body, id, back)
			}
		}
		if e, err := ParseErrorV(Version2, body); err == nil {
			if back := AppendErrorV(nil, Version2, 0, 0, e); !bytes.Equal(back[HeaderSize:], body) {
				t.Fatalf("error round trip: % x -> %+v -> % x", body, e, back)
			}
		}
	})
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

// Handshake offers the client's version and returns the daemon's answer;
// an answer that is not a preamble is refused.
func TestHandshake(t *testing.T) {
	for _, tc := range []struct {
		answer string
		want   error
	}{
		{string(AppendServerPreamble(nil, ServerPreamble{Version: Version2, MaxFrame: 4096, MaxInFlight: 128})), nil},
		{"HTTP/1.1 400 Bad Request\r\n", ErrNotFastPath},
	} {
		client, daemon := net.Pipe()
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, 8)
			_, _ = io.ReadFull(daemon, b)
			got <- b
			_, _ = daemon.Write([]byte(tc.answer))
			daemon.Close()
		}()
		p, err := Handshake(client, Version2)
		client.Close()
		if string(<-got) != "SBYDFP\x02\n" {
			t.Fatal("the client's preamble was not sent first")
		}
		if !errors.Is(err, tc.want) {
			t.Fatalf("answer %q: %v, want %v", tc.answer, err, tc.want)
		}
		if tc.want == nil && (p.Version != Version2 || p.MaxFrame != 4096 || p.MaxInFlight != 128) {
			t.Fatalf("preamble %+v", p)
		}
	}
}

func TestReadFrame(t *testing.T) {
	frame := AppendReply(nil, 7, 9, []byte("abc"))
	h, body, err := ReadFrame(bytes.NewReader(frame), 3)
	if err != nil || h.Kind != KindReply || h.Op != 7 || h.ID != 9 || string(body) != "abc" {
		t.Fatalf("%+v %q %v", h, body, err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(frame), 2); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(frame[:len(frame)-1]), 3); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut short: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(nil), 3); !errors.Is(err, io.EOF) {
		t.Errorf("nothing: %v", err)
	}
}
