package conn

import (
	"context"
	"errors"
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
