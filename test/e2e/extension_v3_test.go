package e2e

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/standbyd/standbyd/internal/protocol"
)

// v3Error is an error payload of protocol version 3, read field by field
// from the raw reply.
type v3Error struct {
	sqlstate, message, detail, hint string
}

// parseV3Error reads the version-3 layout and fails unless the lengths add
// up to the payload exactly.
func parseV3Error(t *testing.T, r protocol.Reply) v3Error {
	t.Helper()
	if r.Status != protocol.StatusError {
		t.Fatalf("want an error reply, got status %d payload %q", r.Status, r.Payload)
	}
	p := r.Payload
	if len(p) < 5 {
		t.Fatalf("error payload of %d bytes", len(p))
	}
	e := v3Error{sqlstate: string(p[:5])}
	p = p[5:]
	for _, field := range []*string{&e.message, &e.detail, &e.hint} {
		if len(p) < 2 {
			t.Fatalf("error payload ends before a length: %q", r.Payload)
		}
		n := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+n {
			t.Fatalf("a length of %d with %d bytes left: %q", n, len(p)-2, r.Payload)
		}
		*field = string(p[2 : 2+n])
		p = p[2+n:]
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes after the hint: %q", len(p), r.Payload)
	}
	return e
}

// On a version-3 channel every error reply carries message, detail and
// hint with their lengths: a handler's own, cut on character boundaries
// (8000, 8000 and 2000 bytes), and the server's errors with empty detail
// and hint. Hello's errors keep the version-1 layout, and so does every
// error on a version-2 channel.
// claim: extension.v3-error-payload
// claim: protocol.v3-error-payload
func TestExtensionV3ErrorPayload(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_v3_error(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  IF length(b) = 0 THEN
    RAISE EXCEPTION 'short message' USING ERRCODE = 'P0042', DETAIL = 'the détail', HINT = 'the hïnt';
  END IF;
  RAISE EXCEPTION '%', repeat('é', 6000) USING ERRCODE = '22023',
    DETAIL = 'x' || repeat('é', 6000), HINT = repeat('ü', 1500);
END $$;
SELECT standbyd.register_handler(283, 'v3_error', 'public.e2e_v3_error(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(283); DROP FUNCTION public.e2e_v3_error(bytea)")
	})

	ch := enter(t, superuser(t, "primary", ""))
	if v := ch.helloVersion(1, 3); v != 3 {
		t.Fatalf("hello offering 1 to 3 chose version %d, want 3", v)
	}

	e := parseV3Error(t, ch.call(283, 2, nil))
	if e != (v3Error{"P0042", "short message", "the détail", "the hïnt"}) {
		t.Fatalf("handler error %+v", e)
	}

	e = parseV3Error(t, ch.call(283, 3, []byte{1}))
	// 'x' then two-byte characters: the detail's cut at 8000 falls inside a
	// character, so it ends one byte earlier.
	if e.sqlstate != "22023" || e.message != strings.Repeat("é", 4000) ||
		e.detail != "x"+strings.Repeat("é", 3999) || e.hint != strings.Repeat("ü", 1000) ||
		!utf8.ValidString(e.message+e.detail+e.hint) {
		t.Fatalf("long error: %s, message %d bytes, detail %d bytes, hint %d bytes", e.sqlstate, len(e.message), len(e.detail), len(e.hint))
	}

	for _, c := range []struct {
		op       uint16
		payload  []byte
		sqlstate string
	}{
		{protocol.OpPing, []byte{1}, "22023"},
		{0x1234, nil, "42883"},
		{protocol.OpN, []byte{1, 2, 3}, "22023"},
	} {
		e = parseV3Error(t, ch.call(c.op, 4, c.payload))
		if e.sqlstate != c.sqlstate || e.message == "" || e.detail != "" || e.hint != "" {
			t.Fatalf("server error for op %d: %+v", c.op, e)
		}
	}
	bad := protocol.AppendRequest(nil, protocol.OpN, 5, nil)
	bad[1] = 2 // frame version 2
	ch.send(bad)
	if e = parseV3Error(t, ch.reply()); e.sqlstate != "08P01" || e.detail != "" || e.hint != "" {
		t.Fatalf("bad frame version: %+v", e)
	}

	// 54000 in the version-3 layout too: a frame over the server's
	// maximum, and a reply over the client's (a page after a hello that
	// announced 1024 bytes).
	ch.send(protocol.AppendRequest(nil, protocol.OpN, 7, make([]byte, 2<<20)))
	if e = parseV3Error(t, ch.reply()); e.sqlstate != "54000" || e.message == "" || e.detail != "" || e.hint != "" {
		t.Fatalf("frame over the server's maximum: %+v", e)
	}
	if r := ch.call(protocol.OpHello, 8, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1024}.Append(nil)); r.Err() != nil {
		t.Fatalf("hello with a 1024-byte maximum: %v", r.Err())
	}
	if e = parseV3Error(t, ch.call(protocol.OpPage, 9, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_class"))); e.sqlstate != "54000" || e.detail != "" || e.hint != "" {
		t.Fatalf("reply over the client's maximum: %+v", e)
	}

	// Hello's errors: SQLSTATE and the message to the end of the payload.
	r := ch.call(protocol.OpHello, 6, []byte{0, 4, 0, 5, 0, 0, 4, 0})
	if r.Status != protocol.StatusError || string(r.Payload[:5]) != "08P01" ||
		!strings.HasPrefix(string(r.Payload[5:]), "no common protocol version") {
		t.Fatalf("hello error on a version-3 channel: %q", r.Payload)
	}
	ch.finish()

	// Version 2: the version-1 layout, the handler's detail and hint left out.
	ch = enter(t, superuser(t, "primary", ""))
	if v := ch.helloVersion(1, 2); v != 2 {
		t.Fatalf("hello offering 1 to 2 chose version %d", v)
	}
	r = ch.call(283, 2, nil)
	if r.Status != protocol.StatusError || string(r.Payload) != "P0042short message" {
		t.Fatalf("handler error on a version-2 channel: %q", r.Payload)
	}
	ch.finish()
}
