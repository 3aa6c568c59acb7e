package conn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

func wantUnknown(t *testing.T, err error) {
	t.Helper()
	var ce *CallError
	if !errors.As(err, &ce) || !ce.OutcomeUnknown() {
		t.Fatalf("want an outcome-unknown CallError, got %v", err)
	}
}

// claim: liveness.reply-timeout-ends-session
func TestLateReply(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	p.Handle(opBlock, func(c *conntest.Conn, req conntest.Request) bool {
		// Answer after the reply timeout: the client has given up.
		time.Sleep(300 * time.Millisecond)
		c.Reply(req, []byte("late"))
		return true
	})
	rec := &recorder{}
	cfg := fastConfig(p)
	cfg.ReplyTimeout = 100 * time.Millisecond
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)

	_, err := sup.Call(ctx5(t), opBlock, nil)
	wantUnknown(t, err)
	var ce *CallError
	if errors.As(err, &ce); !ce.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
	// The late reply must never be read as the answer to the next request.
	out, err := sup.Call(ctx5(t), opEcho, []byte("mine"))
	if err != nil || string(out) != "mine" {
		t.Fatalf("next call = %q, %v; want its own reply", out, err)
	}
	if got := rec.reasons(); len(got) == 0 || got[0] != ReasonReplyTimeout {
		t.Fatalf("disconnect reasons %v, want reply_timeout first", got)
	}
	if p.Accepted() != 2 {
		t.Fatalf("%d connections, want 2 (the late session was dropped)", p.Accepted())
	}
}

// claim: liveness.wrong-id-ends-session
// claim: protocol.wrong-id
func TestReplyWithWrongID(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, func(c *conntest.Conn, req conntest.Request) bool {
		req.ID++
		return c.Reply(req, req.Payload)
	})
	rec := &recorder{}
	cfg := fastConfig(p)
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)

	_, err := sup.Call(ctx5(t), opEcho, []byte("x"))
	wantUnknown(t, err)
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("want a ProtocolError inside, got %v", err)
	}
	waitFor(t, "the session to end", func() bool { return len(rec.reasons()) > 0 })
	if got := rec.reasons()[0]; got != ReasonProtocol {
		t.Fatalf("disconnect reason %s, want protocol_error", got)
	}
	if p.Received(opEcho) != 1 {
		t.Fatalf("sent %d times, want once (not idempotent)", p.Received(opEcho))
	}
}

func TestCancelMidRequest(t *testing.T) {
	p := conntest.Start(t)
	got := make(chan struct{})
	release := make(chan struct{})
	p.Handle(opEcho, echo)
	p.Handle(opBlock, func(c *conntest.Conn, req conntest.Request) bool {
		close(got)
		<-release
		return c.Reply(req, []byte("dropped"))
	})
	sup := run(t, fastConfig(p))
	waitReady(t, sup)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := sup.Call(ctx, opBlock, nil); errc <- err }()
	<-got
	cancel()
	err := <-errc
	wantUnknown(t, err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	close(release)
	// The reply is read and dropped; the session goes on.
	out, err := sup.Call(ctx5(t), opEcho, []byte("next"))
	if err != nil || string(out) != "next" {
		t.Fatalf("next call = %q, %v", out, err)
	}
	if p.Accepted() != 1 {
		t.Fatalf("%d connections, want 1: a cancel must not end the session", p.Accepted())
	}
}

// claim: liveness.not-sent
func TestDeathWhileIdleIsNotSent(t *testing.T) {
	for _, kill := range []struct {
		name string
		do   func(*conntest.Primary)
	}{
		{"terminated", (*conntest.Primary).TerminateAll},
		{"closed", (*conntest.Primary).KillAll},
	} {
		t.Run(kill.name, func(t *testing.T) {
			p := conntest.Start(t)
			p.Handle(opEcho, echo)
			sup := run(t, fastConfig(p)) // opEcho is not idempotent
			waitReady(t, sup)
			kill.do(p)
			out, err := sup.Call(ctx5(t), opEcho, []byte("once"))
			if err != nil || string(out) != "once" {
				t.Fatalf("call after the backend died while idle = %q, %v; want it sent on the next session", out, err)
			}
			if n := p.Received(opEcho); n != 1 {
				t.Fatalf("the primary saw the request %d times, want 1", n)
			}
			if n := p.Accepted(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
		})
	}
}

// The read-only built-ins are sent once more, at most, after an unknown
// outcome: this primary dies on every one of them.
// claim: liveness.idempotent-ops-resent
func TestRetryAtMostOnce(t *testing.T) {
	for _, op := range []uint16{protocol.OpPing, protocol.OpN, protocol.OpSetting, protocol.OpWAL, protocol.OpPage} {
		t.Run(protocol.OpName(op), func(t *testing.T) {
			p := conntest.Start(t)
			p.Handle(op, func(c *conntest.Conn, req conntest.Request) bool { return false })
			sup := run(t, fastConfig(p))
			waitReady(t, sup)
			_, err := sup.Call(ctx5(t), op, nil)
			wantUnknown(t, err)
			if n := p.Received(op); n != 2 {
				t.Fatalf("%s sent %d times, want 2 (one retry)", protocol.OpName(op), n)
			}
		})
	}
}

// claim: liveness.idempotent-ops-resent
func TestIdempotentSetIsExplicit(t *testing.T) {
	p := conntest.Start(t)
	const low, named, listed = 0x00FF, 0x0200, 0x0300
	p.SetOps([]protocol.OpInfo{{Op: named, Name: "refresh_cache"}})
	die := func(c *conntest.Conn, req conntest.Request) bool { return false }
	for _, op := range []uint16{low, named, listed} {
		p.Handle(op, die)
	}
	cfg := fastConfig(p)
	cfg.IdempotentOps = func() []string { return []string{"refresh_cache", "0x0300"} }
	sup := run(t, cfg)
	for _, c := range []struct {
		op   uint16
		want int
	}{{low, 1}, {named, 2}, {listed, 2}} {
		waitReady(t, sup)
		_, err := sup.Call(ctx5(t), c.op, nil)
		wantUnknown(t, err)
		if n := p.Received(c.op); n != c.want {
			t.Errorf("op %#x sent %d times, want %d", c.op, n, c.want)
		}
	}
}

// claim: liveness.deadline-before-write
func TestCallerGoneIsNotSent(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	passed, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel2()
	for i := 0; i < 100; i++ {
		if _, err := sup.Call(gone, opEcho, nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call with a cancelled context: %v, want ErrUnavailable (not sent)", err)
		}
		if _, err := sup.Call(passed, opEcho, nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call whose deadline passed: %v, want ErrUnavailable (not sent)", err)
		}
	}
	if n := p.Received(opEcho); n != 0 {
		t.Fatalf("%d requests of gone callers reached the primary", n)
	}
}

// claim: liveness.reply-wins-over-deadline
func TestReplyWinsOverDeadline(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	rec := &recorder{}
	cancels := make(chan context.CancelFunc, 2)
	// The caller's context ends the moment the reply has been handed over:
	// both are ready when the caller looks.
	rec.finished = func(op uint16, _ error) {
		if op == opEcho {
			(<-cancels)()
		}
	}
	cfg := fastConfig(p)
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels <- cancel
		out, err := sup.Call(ctx, opEcho, []byte("r"))
		if err != nil || string(out) != "r" {
			t.Fatalf("call %d: %q, %v: the reply arrived and must win", i, out, err)
		}
	}
}

// claim: liveness.new-handler-by-name
func TestResolveOpRefreshesHello(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(0x0400, echo)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	if _, err := sup.ResolveOp(ctx5(t), "added_later"); err == nil {
		t.Fatal("an unknown name resolved")
	}
	// A DBA registers a handler while the session runs.
	p.SetOps([]protocol.OpInfo{{Op: 0x0400, Name: "added_later"}})
	hellos := p.Received(protocol.OpHello)
	var op uint16
	waitFor(t, "the new name to resolve", func() bool {
		o, err := sup.ResolveOp(ctx5(t), "added_later")
		op = o
		return err == nil
	})
	if op != 0x0400 {
		t.Fatalf("ResolveOp = %#x, want 0x0400", op)
	}
	if n := p.Received(protocol.OpHello) - hellos; n != 1 {
		t.Fatalf("%d hellos to resolve one name, want 1 (refreshes are spaced)", n)
	}
	if p.Accepted() != 1 {
		t.Fatalf("%d connections: the refresh must use the live session", p.Accepted())
	}
	// A caller repeating a name nobody registered: hellos at most every
	// refreshInterval (250ms), whatever the rate of calls.
	if refreshInterval != 250*time.Millisecond {
		t.Fatalf("refresh interval %s, docs/liveness.md says 250ms", refreshInterval)
	}
	hellos = p.Received(protocol.OpHello)
	start := time.Now()
	calls := 0
	for time.Since(start) < 600*time.Millisecond {
		if _, err := sup.ResolveOp(ctx5(t), "never_added"); err == nil {
			t.Fatal("a name nobody registered resolved")
		}
		calls++
	}
	limit := int(time.Since(start)/refreshInterval) + 1
	if n := p.Received(protocol.OpHello) - hellos; n > limit || n == 0 {
		t.Fatalf("%d hellos for %d lookups of an unknown name in %s, want 1 to %d", n, calls, time.Since(start).Round(time.Millisecond), limit)
	}
}
