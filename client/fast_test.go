package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/testsock"
)

// fakeFast is a daemon that speaks the fast path: it echoes payloads,
// answering each batch of requests that arrived together in reverse order,
// and counts connections and the most requests it had in flight.
type fakeFast struct {
	sock        string
	conns       atomic.Int64
	maxInFlight atomic.Int64
	// closeAfter closes a connection after this many replies (0: never).
	closeAfter int
}

func serveFast(t *testing.T, f *fakeFast, inFlight uint32) {
	t.Helper()
	f.sock = testsock.Serve(t, func(c net.Conn) {
		f.conns.Add(1)
		f.serve(c, inFlight)
	})
}

func (f *fakeFast) serve(c net.Conn, inFlight uint32) {
	var pre [fastproto.ClientPreambleSize]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		return
	}
	_, _ = c.Write(fastproto.AppendServerPreamble(nil, fastproto.ServerPreamble{Version: 1, MaxFrame: 1 << 16, MaxInFlight: inFlight}))
	reqs := make(chan fastproto.Request, 1024)
	go func() {
		defer close(reqs)
		for {
			h, body, err := fastproto.ReadFrame(c, 1<<20)
			if err != nil {
				return
			}
			r, _ := fastproto.ParseRequestBody(h, body)
			reqs <- r
		}
	}()
	replied := 0
	var batch []fastproto.Request
	flush := func() bool {
		if n := int64(len(batch)); n > f.maxInFlight.Load() {
			f.maxInFlight.Store(n)
		}
		var out []byte
		for i := len(batch) - 1; i >= 0; i-- {
			out = fastproto.AppendReply(out, batch[i].Op, batch[i].ID, batch[i].Payload)
		}
		batch = batch[:0]
		_, err := c.Write(out)
		return err == nil
	}
	for {
		r, ok := <-reqs
		if !ok {
			return
		}
		batch = append(batch, r)
	more:
		for len(batch) < int(inFlight) {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			case <-time.After(5 * time.Millisecond):
				break more
			}
		}
		replied += len(batch)
		if !flush() || f.closeAfter > 0 && replied >= f.closeAfter {
			return
		}
	}
}

// Many goroutines share one connection; replies that come back in another
// order reach their own callers; the client holds back callers over the
// daemon's in-flight bound instead of sending them to be refused.
// claim: api.fast-go-client
func TestFastPathOneConnectionManyCallers(t *testing.T) {
	f := &fakeFast{}
	serveFast(t, f, 4)
	c := New(f.sock)
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			want := []byte(fmt.Sprintf("caller %d", i))
			if got, err := c.Call(ctx, "echo", want); err != nil || !bytes.Equal(got, want) {
				t.Errorf("caller %d: %q %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	if n := f.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	if m := f.maxInFlight.Load(); m > 4 || m < 2 {
		t.Fatalf("at most %d requests in flight at once, want 2 to 4", m)
	}
}

// A connection the daemon closed is replaced at the next call; one idle
// for fastIdle (30 s; shortened here) is closed by the client.
// claim: api.fast-go-client-idle
func TestFastPathReconnectsLazily(t *testing.T) {
	f := &fakeFast{closeAfter: 1}
	serveFast(t, f, 4)
	c := New(f.sock)
	defer c.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := c.Call(ctx, "N", []byte{byte(i)})
		cancel()
		if err != nil || len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("call %d: %v %v", i, got, err)
		}
		// A request that crosses the daemon's close would have an unknown
		// outcome: wait until the client has seen it.
		deadline := time.Now().Add(5 * time.Second)
		for !c.fast.connBroken() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if n := f.conns.Load(); n != 3 {
		t.Fatalf("%d connections for 3 calls on a daemon that closes after each, want 3", n)
	}

	if fastIdle != 30*time.Second {
		t.Fatalf("idle connections are closed after %v, the doc says 30 s", fastIdle)
	}
	defer func(d time.Duration) { fastIdle = d }(fastIdle)
	fastIdle = 50 * time.Millisecond
	idle := &fakeFast{}
	serveFast(t, idle, 4)
	c2 := New(idle.sock)
	defer c2.Close()
	for range 2 {
		if _, err := c2.Call(context.Background(), "N", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := idle.conns.Load(); n != 2 {
		t.Fatalf("%d connections for 2 calls past the idle time, want 2", n)
	}
	// Close releases the connection; the client stays usable, as with HTTP.
	c2.Close()
	if _, err := c2.Call(context.Background(), "N", nil); err != nil {
		t.Fatalf("a call after Close: %v", err)
	}
}

// A daemon that answers the preamble as HTTP (older than the fast path)
// is called over HTTP, and the fast path is not tried again.
// claim: api.fast-go-client
func TestFastPathFallsBackToHTTP(t *testing.T) {
	sock, conns := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte("http:"), b...))
	})
	c := New(sock)
	defer c.Close()
	for range 3 {
		if out, err := c.Call(context.Background(), "N", []byte("x")); err != nil || string(out) != "http:x" {
			t.Fatalf("%q %v", out, err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections: want the refused preamble's and one HTTP connection", n)
	}
}

// A payload that cannot fit the daemon's frame is refused in the client,
// nothing written.
func TestFastPathPayloadOverTheDaemonsFrame(t *testing.T) {
	f := &fakeFast{}
	serveFast(t, f, 4)
	c := New(f.sock)
	defer c.Close()
	var ae *Error
	_, err := c.Call(context.Background(), "N", make([]byte, 1<<16))
	if !asError(err, &ae) || ae.Kind != KindPayloadTooLarge {
		t.Fatalf("%v", err)
	}
}

func (t *fastTransport) connBroken() bool {
	t.mu.Lock()
	fc := t.conn
	t.mu.Unlock()
	if fc == nil {
		return true
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.broken != nil
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

// A caller that gives up after its request was written learns that the
// outcome is unknown, at once; the connection goes on for the others, and
// the reply that comes late for the abandoned id is dropped, not given to
// another call.
// claim: api.fast-forget-id
func TestFastPathCancelledAfterWriting(t *testing.T) {
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan fastproto.Header, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var pre [fastproto.ClientPreambleSize]byte
		_, _ = io.ReadFull(c, pre[:])
		_, _ = c.Write(fastproto.AppendServerPreamble(nil, fastproto.ServerPreamble{Version: 1, MaxFrame: 1 << 16, MaxInFlight: 8}))
		var hdr [fastproto.HeaderSize]byte
		var abandoned []fastproto.Header
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			h := fastproto.ParseHeader(hdr[:])
			body := make([]byte, h.Length)
			_, _ = io.ReadFull(c, body)
			got <- h
			if r, _ := fastproto.ParseRequestBody(h, body); string(r.Payload) == "answer" {
				// The abandoned request's reply first, late.
				var out []byte
				for _, a := range abandoned {
					out = fastproto.AppendReply(out, a.Op, a.ID, []byte("late"))
				}
				_, _ = c.Write(fastproto.AppendReply(out, h.Op, h.ID, r.Payload))
			} else {
				abandoned = append(abandoned, h)
			}
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()
	c := New(sock)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Call(ctx, "N", []byte("never")); errc <- err }()
	<-got
	cancel()
	if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled after writing: %v", err)
	}
	if out, err := c.Call(context.Background(), "N", []byte("answer")); err != nil || string(out) != "answer" {
		t.Fatalf("the next call: %q %v", out, err)
	}
}

// On the fast path too a reply larger than WithMaxReply is an error, not
// an allocation: one a little over the limit, and one so large that its
// frame is skipped unread; the connection serves the next call.
// claim: api.go-client-reply-limit
func TestFastPathReplyLimit(t *testing.T) {
	f := &fakeFast{}
	serveFast(t, f, 4)
	c := New(f.sock, WithMaxReply(1024))
	defer c.Close()
	for _, n := range []int{1025, 1200, 5000} {
		if _, err := c.Call(context.Background(), "N", make([]byte, n)); !errors.Is(err, ErrReplyTooLarge) {
			t.Fatalf("a reply of %d bytes with a limit of 1024: %v", n, err)
		}
	}
	if out, err := c.Call(context.Background(), "N", make([]byte, 1024)); err != nil || len(out) != 1024 {
		t.Fatalf("a reply at the limit: %d %v", len(out), err)
	}
	if n := f.conns.Load(); n != 1 {
		t.Fatalf("%d connections: a refused reply broke the connection", n)
	}
	// The default: 256 MiB (the largest channel.max_frame_size) plus
	// 64 KiB of room for JSON.
	d := New(f.sock)
	defer d.Close()
	if d.maxReply != 256<<20+64<<10 || d.fast.maxReply != d.maxReply {
		t.Fatalf("default reply limit %d (fast path %d)", d.maxReply, d.fast.maxReply)
	}
}
