package conn

import (
	"context"
	"errors"
	"testing"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

const opFail uint16 = 0x0102

// On a version-3 channel the primary's error reaches the caller with its
// detail and hint; the session goes on.
// claim: protocol.v3-error-payload
func TestVersion3ErrorCarriesDetailAndHint(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opFail, func(c *conntest.Conn, req conntest.Request) bool {
		return c.ErrorReplyFull(req, protocol.ServerError{SQLState: "P0001", Message: "no stock", Detail: "item 7", Hint: "order less"})
	})
	p.Handle(opEcho, echo)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	if v := sup.Status().Hello.Version; v != protocol.Version3 {
		t.Fatalf("negotiated version %d", v)
	}
	_, err := sup.Call(ctx5(t), opFail, nil)
	var se *protocol.ServerError
	if !errors.As(err, &se) || se.SQLState != "P0001" || se.Message != "no stock" || se.Detail != "item 7" || se.Hint != "order less" {
		t.Fatalf("%v (%+v)", err, se)
	}
	if out, err := sup.Call(ctx5(t), opEcho, []byte("after")); err != nil || string(out) != "after" {
		t.Fatalf("after the error: %q %v", out, err)
	}
	if n := p.Accepted(); n != 1 {
		t.Fatalf("%d connections: an error reply ended the session", n)
	}
}

// With channel.protocol_version 2 the same error has its message only.
// claim: protocol.v3-negotiated
func TestVersion2ChannelErrorMessageOnly(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opFail, func(c *conntest.Conn, req conntest.Request) bool {
		return c.ErrorReplyFull(req, protocol.ServerError{SQLState: "P0001", Message: "no stock", Detail: "item 7", Hint: "order less"})
	})
	cfg := fastConfig(p)
	cfg.Dial = func(ctx context.Context, connected func()) (*Session, error) {
		return Dial(ctx, DialOptions{Config: p.Config(), ClientName: "test", OnConnected: connected, MaxVersion: protocol.Version2})
	}
	sup := run(t, cfg)
	waitReady(t, sup)
	if v := sup.Status().Hello.Version; v != protocol.Version2 {
		t.Fatalf("negotiated version %d", v)
	}
	_, err := sup.Call(ctx5(t), opFail, nil)
	var se *protocol.ServerError
	if !errors.As(err, &se) || se.Message != "no stock" || se.Detail != "" || se.Hint != "" {
		t.Fatalf("%v (%+v)", err, se)
	}
}

// A version-3 error reply whose lengths do not add up is a malformed
// frame: the session ends as a protocol error, the request's outcome is
// unknown, and the next call is served by a new session.
// claim: protocol.v3-error-payload
// claim: protocol.v3-malformed
func TestVersion3MalformedErrorEndsSession(t *testing.T) {
	for name, payload := range map[string][]byte{
		"version 1 layout": []byte("P0001no stock"),
		"byte after hint":  []byte("P0001\x00\x01m\x00\x00\x00\x00x"),
		"hint past end":    []byte("P0001\x00\x01m\x00\x00\x00\x09h"),
	} {
		t.Run(name, func(t *testing.T) {
			p := conntest.Start(t)
			bad := true
			p.Handle(opFail, func(c *conntest.Conn, req conntest.Request) bool {
				if bad {
					bad = false
					return c.Send(conntest.AppendReply(nil, req.Op, req.ID, protocol.StatusError, payload))
				}
				return c.ErrorReplyFull(req, protocol.ServerError{SQLState: "P0001", Message: "well formed"})
			})
			rec := &recorder{}
			cfg := fastConfig(p)
			cfg.Observer = rec
			sup := run(t, cfg)
			waitReady(t, sup)
			_, err := sup.Call(ctx5(t), opFail, nil)
			wantUnknown(t, err)
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("want a protocol error, got %v", err)
			}
			waitFor(t, "the session to end as a protocol error", func() bool {
				got := rec.reasons()
				return len(got) > 0 && got[0] == ReasonProtocol
			})
			waitReady(t, sup)
			_, err = sup.Call(ctx5(t), opFail, nil)
			var se *protocol.ServerError
			if !errors.As(err, &se) || se.Message != "well formed" {
				t.Fatalf("next session: %v", err)
			}
		})
	}
}
