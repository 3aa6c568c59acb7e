package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Hello must always fit: a frame size below the protocol's minimum is
// refused on either side.
func TestMaxFrameSizeFloor(t *testing.T) {
	p := conntest.Start(t)
	ctx := ctx5(t)
	var ce *ConfigError
	if _, err := Dial(ctx, DialOptions{Config: p.Config(), MaxFrameSize: protocol.MinMaxFrameSize - 1}); !errors.As(err, &ce) {
		t.Fatalf("a local max frame size below the minimum: %v, want a ConfigError", err)
	}
	p.SetMaxFrameSize(protocol.MinMaxFrameSize - 1)
	var pe *ProtocolError
	if _, err := Dial(ctx, DialOptions{Config: p.Config()}); !errors.As(err, &pe) {
		t.Fatalf("a primary announcing a max frame size below the minimum: %v, want a ProtocolError", err)
	}
	p.SetMaxFrameSize(protocol.MinMaxFrameSize)
	s, err := Dial(ctx, DialOptions{Config: p.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if s.MaxFrameSize() != protocol.MinMaxFrameSize {
		t.Fatalf("max frame size %d, want the primary's %d", s.MaxFrameSize(), protocol.MinMaxFrameSize)
	}
}

// A backend that died while the session was idle is found before the next
// request is written: that request was not sent.
// claim: liveness.not-sent
func TestSessionDeadWhileIdleIsNotSent(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	ctx := ctx5(t)
	s, err := Dial(ctx, DialOptions{Config: p.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	p.TerminateAll()
	_, err = s.Call(ctx, opEcho, []byte("x"))
	var ce *CallError
	if !errors.As(err, &ce) || !ce.NotSent() || ce.OutcomeUnknown() || s.Err() == nil {
		t.Fatalf("call on a session whose backend was terminated: %v", err)
	}
	if p.Received(opEcho) != 0 {
		t.Fatal("the request reached the primary")
	}
}

// Bytes of a message still arriving on an idle session are no sign of
// death: the request is sent on the same session, which reads the rest.
func TestPartialMessageWhileIdleKeepsTheSession(t *testing.T) {
	p := conntest.Start(t)
	notice, err := (&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "slow"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Handle(opEcho, func(c *conntest.Conn, req conntest.Request) bool {
		return c.SendRaw(notice[3:]) && c.Reply(req, req.Payload)
	})
	ctx := ctx5(t)
	s, err := Dial(ctx, DialOptions{Config: p.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	p.Conns()[0].SendRaw(notice[:3])
	out, err := s.Call(ctx, opEcho, []byte("x"))
	if err != nil || string(out) != "x" {
		t.Fatalf("call with part of a notice waiting: %q, %v", out, err)
	}
}

// flakyConn fails writes on demand, after writing partial bytes of them.
type flakyConn struct {
	net.Conn
	fail    atomic.Bool
	partial int
}

func (c *flakyConn) Write(b []byte) (int, error) {
	if c.fail.Load() {
		n := min(c.partial, len(b))
		if n > 0 {
			_, _ = c.Conn.Write(b[:n])
		}
		return n, syscall.EPIPE
	}
	return c.Conn.Write(b)
}

// A write that failed before any byte left was not sent; one that failed
// part way may have reached the primary.
func TestWriteErrorSentOrNot(t *testing.T) {
	for _, c := range []struct {
		partial     int
		wantNotSent bool
	}{{0, true}, {3, false}} {
		p := conntest.Start(t)
		p.Handle(opEcho, echo)
		cfg := p.Config()
		var fc *flakyConn
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			fc = &flakyConn{Conn: nc, partial: c.partial}
			return fc, err
		}
		ctx := ctx5(t)
		s, err := Dial(ctx, DialOptions{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		fc.fail.Store(true)
		_, err = s.Call(ctx, opEcho, []byte("x"))
		var ce *CallError
		if !errors.As(err, &ce) || ce.NotSent() != c.wantNotSent || ce.OutcomeUnknown() == c.wantNotSent {
			t.Fatalf("write failing after %d bytes: %v (not sent %v, unknown %v)", c.partial, err, ce.NotSent(), ce.OutcomeUnknown())
		}
		_ = s.Close(ctx)
	}
}

// A hello sent again on a live session (to refresh the op list) that
// would choose another protocol version ends the session, whatever its
// version: its rules (pipelining, goodbye, the error layout) were chosen
// with the first hello. The next session says hello afresh and takes the
// new version. A refresh with the same version keeps the session. (A
// version-1 session used to go on at version 1 after refusing the change.)
// claim: protocol.hello-version-change
func TestHelloVersionChangeEndsSession(t *testing.T) {
	for _, tc := range []struct {
		from, to uint16
		ends     bool
	}{
		{protocol.Version3, protocol.Version2, true},
		{protocol.Version2, protocol.Version3, true},
		{protocol.Version1, protocol.Version3, true},
		{protocol.Version3, protocol.Version3, false},
	} {
		t.Run(fmt.Sprintf("%d to %d", tc.from, tc.to), func(t *testing.T) {
			p := conntest.Start(t)
			p.SetMaxVersion(tc.from)
			p.Handle(opEcho, echo)
			rec := &recorder{}
			cfg := fastConfig(p)
			cfg.Observer = rec
			sup := run(t, cfg)
			waitReady(t, sup)
			if out, err := sup.Call(ctx5(t), opEcho, []byte("a")); err != nil || string(out) != "a" {
				t.Fatalf("call before: %q, %v", out, err)
			}
			p.SetMaxVersion(tc.to)
			// An unknown name makes a ready session say hello again.
			if _, err := sup.ResolveOp(ctx5(t), "no_such_handler"); err == nil {
				t.Fatal("an unknown name resolved")
			}
			if n := p.Received(protocol.OpHello); n != 2 {
				t.Fatalf("%d hellos reached the primary, want 2 (the first and the refresh)", n)
			}
			wantAccepted := 1
			if tc.ends {
				wantAccepted = 2
				waitFor(t, "the session to end as a protocol error", func() bool {
					got := rec.reasons()
					return len(got) > 0 && got[0] == ReasonProtocol
				})
				waitReady(t, sup)
			}
			if out, err := sup.Call(ctx5(t), opEcho, []byte("b")); err != nil || string(out) != "b" {
				t.Fatalf("call after: %q, %v", out, err)
			}
			if p.Accepted() != wantAccepted {
				t.Fatalf("%d connections, want %d", p.Accepted(), wantAccepted)
			}
			if !tc.ends && len(rec.reasons()) != 0 {
				t.Fatalf("a refresh with the same version ended the session: %v", rec.reasons())
			}
		})
	}
}

// A session numbers its requests from 1 (hello), a new id for each.
// claim: protocol.one-reply-per-request
func TestSessionRequestIDsCountFromOne(t *testing.T) {
	p := conntest.Start(t)
	var ids []uint32
	p.Handle(opEcho, func(c *conntest.Conn, req conntest.Request) bool {
		ids = append(ids, req.ID)
		return c.Reply(req, req.Payload)
	})
	ctx := ctx5(t)
	s, err := Dial(ctx, DialOptions{Config: p.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for range 3 {
		if _, err := s.Call(ctx, opEcho, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(ids) != "[2 3 4]" {
		t.Fatalf("request ids after hello %v, want [2 3 4] (hello is 1)", ids)
	}
}
