package protocol

import (
	"errors"
	"testing"
)

// The goodbye frame's bytes as docs/protocol.md lays them out.
// claim: protocol.goodbye-layout
func TestGoodbyeLayout(t *testing.T) {
	buf := unhex(t, "47 00 0000 0000002a 00000008 3537503031 627965")
	if !IsGoodbye(buf) {
		t.Fatal("not recognised as a goodbye")
	}
	g, err := ParseGoodbye(buf)
	if err != nil || g.LastID != 42 || g.SQLState != "57P01" || g.Message != "bye" {
		t.Fatalf("goodbye = %+v, %v", g, err)
	}
	for _, bad := range []struct {
		name string
		hex  string
		want error
	}{
		{"short", "47 00 0000 0000002a", ErrShortFrame},
		{"no sqlstate", "47 00 0000 0000002a 00000002 3537", ErrShortPayload},
		{"length", "47 00 0000 0000002a 00000009 3537503031 627965", ErrLengthMismatch},
		{"status", "47 01 0000 0000002a 00000005 3537503031", ErrBadStatus},
		{"op", "47 00 0050 0000002a 00000005 3537503031", ErrBadStatus},
		{"a reply", "41 00 0000 0000002a 00000005 3537503031", ErrWrongKind},
	} {
		if _, err := ParseGoodbye(unhex(t, bad.hex)); !errors.Is(err, bad.want) {
			t.Errorf("%s: %v, want %v", bad.name, err, bad.want)
		}
	}
	if IsGoodbye(unhex(t, "41 00 0050 00000001 00000000")) {
		t.Fatal("a reply taken for a goodbye")
	}
}

func FuzzParseGoodbye(f *testing.F) {
	f.Add([]byte("G\x00\x00\x00\x00\x00\x00\x2a\x00\x00\x00\x0857P01bye"))
	f.Add([]byte("G\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		g, err := ParseGoodbye(buf)
		if err != nil {
			return
		}
		// What parsed is a goodbye laid out as the server writes it.
		again := AppendErrorReply(nil, 0, g.LastID, g.SQLState, g.Message)
		again[0], again[1] = KindGoodbye, StatusOK
		if !IsGoodbye(buf) || string(again) != string(buf) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", buf, again)
		}
	})
}
