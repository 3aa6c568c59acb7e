package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// A version-3 error payload: SQLSTATE, then message, detail and hint, each
// after its u16 length; the lengths add up to the payload exactly.
// claim: protocol.v3-error-payload
func TestErrorPayloadV3Layout(t *testing.T) {
	se := ServerError{SQLState: "P0001", Message: "no stock", Detail: "item 7", Hint: "order less"}
	p := AppendErrorPayloadV3(nil, se)
	want := []byte("P0001\x00\x08no stock\x00\x06item 7\x00\x0aorder less")
	if !bytes.Equal(p, want) {
		t.Fatalf("\n got % x\nwant % x", p, want)
	}
	r := Reply{Status: StatusError, Op: 0x0100, ID: 1, Payload: p}
	got, err := r.ServerErr(Version3)
	if err != nil || *got != se {
		t.Fatalf("v3: %+v %v", got, err)
	}
	// On a version-2 channel the same bytes are a message after the SQLSTATE.
	if got, err := r.ServerErr(Version2); err != nil || got.Message != string(p[5:]) || got.Detail != "" {
		t.Fatalf("v2: %+v %v", got, err)
	}
	// Hello's errors keep the version-1 layout on a version-3 channel.
	h := Reply{Status: StatusError, Op: OpHello, ID: 1, Payload: []byte("08P01no common protocol version")}
	if got, err := h.ServerErr(Version3); err != nil || got.Message != "no common protocol version" || got.SQLState != "08P01" {
		t.Fatalf("hello: %+v %v", got, err)
	}
	if got, err := (Reply{Status: StatusOK}).ServerErr(Version3); got != nil || err != nil {
		t.Fatalf("ok reply: %+v %v", got, err)
	}
	// No detail and no hint: zero lengths.
	if got, err := ParseErrorPayloadV3([]byte("42883\x00\x01m\x00\x00\x00\x00")); err != nil || got.Message != "m" || got.Detail != "" || got.Hint != "" {
		t.Fatalf("empty detail and hint: %+v %v", got, err)
	}
}

// claim: protocol.v3-error-payload
// claim: protocol.v3-malformed
func TestErrorPayloadV3Malformed(t *testing.T) {
	ok := AppendErrorPayloadV3(nil, ServerError{SQLState: "P0001", Message: "m", Detail: "d", Hint: "h"})
	for name, p := range map[string][]byte{
		"no sqlstate":         []byte("P00"),
		"no message length":   []byte("P0001"),
		"message past end":    []byte("P0001\x00\x05abc"),
		"no detail length":    []byte("P0001\x00\x01m"),
		"no hint length":      []byte("P0001\x00\x01m\x00\x00"),
		"hint cut short":      ok[:len(ok)-1],
		"a byte after hint":   append(ok[:len(ok):len(ok)], 'x'),
		"version 1 layout":    []byte("P0001some message"),
		"half a hint length":  []byte("P0001\x00\x00\x00\x00\x00"),
		"detail longer":       []byte("P0001\x00\x00\xff\xff\x00\x00"),
		"hint length too big": []byte("P0001\x00\x00\x00\x00\x00\x01"),
	} {
		r := Reply{Status: StatusError, Op: 0x0100, Payload: p}
		if se, err := r.ServerErr(Version3); !errors.Is(err, ErrBadErrorPayload) || se != nil {
			t.Errorf("%s: %+v %v", name, se, err)
		}
	}
}

// Whatever the payload, parsing never panics, and what is accepted
// encodes back to the same bytes.
func FuzzParseErrorPayloadV3(f *testing.F) {
	f.Add(AppendErrorPayloadV3(nil, ServerError{SQLState: "P0001", Message: "m", Detail: "d", Hint: "h"}))
	f.Add([]byte("P0001\x00\x05abc"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		se, err := ParseErrorPayloadV3(p)
		if err != nil {
			return
		}
		if back := AppendErrorPayloadV3(nil, *se); !bytes.Equal(back, p) {
			t.Fatalf("round trip: % x -> %+v -> % x", p, se, back)
		}
	})
}
