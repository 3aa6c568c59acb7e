package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// fastRaw opens a fast path connection to the daemon by hand (version 1).
func fastRaw(t *testing.T, sock string) (net.Conn, fastproto.ServerPreamble) {
	t.Helper()
	return fastRawV(t, sock, fastproto.Version1)
}

type fastFrame struct {
	h    fastproto.Header
	body []byte
}

func (f fastFrame) kind(t *testing.T) string {
	t.Helper()
	if f.h.Second != fastproto.StatusError {
		return ""
	}
	e, err := fastproto.ParseError(f.body)
	if err != nil {
		t.Fatal(err)
	}
	return e.Kind
}

func fastRead(t *testing.T, c net.Conn) fastFrame {
	t.Helper()
	var hdr [fastproto.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	f := fastFrame{h: fastproto.ParseHeader(hdr[:])}
	f.body = make([]byte, f.h.Length)
	if _, err := io.ReadFull(c, f.body); err != nil {
		t.Fatalf("reading a reply's body: %v", err)
	}
	return f
}

// fastDaemon is a ready daemon with the test handlers registered.
func fastDaemon(t *testing.T) *daemon {
	t.Helper()
	registerHandlers(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	return d
}

// 50 goroutines share one Client (one fast path connection): each gets
// the echo of its own payload, round after round, while HTTP callers use
// the same socket.
// claim: api.fast-go-client
func TestFastPathFiftyCallers(t *testing.T) {
	needEnv(t)
	d := fastDaemon(t)
	c := d.client()
	var wg sync.WaitGroup
	// HTTP callers on the same socket meanwhile.
	h := client.New(d.socket, client.WithHTTP(), client.WithPoolSize(5))
	defer h.Close()
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 10 {
				want := fmt.Sprintf("http caller %d round %d", i, round)
				got, err := h.Call(ctxT(t, 30*time.Second), "echo", []byte(want))
				if err != nil || string(got) != "echo:"+want {
					t.Errorf("http caller %d round %d: %q %v", i, round, got, err)
					return
				}
			}
		}()
	}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 20 {
				want := fmt.Sprintf("caller %d round %d %s", i, round, strings.Repeat("x", i*13))
				got, err := c.Call(ctxT(t, 30*time.Second), "echo", []byte(want))
				if err != nil || string(got) != "echo:"+want {
					t.Errorf("caller %d round %d: %q %v", i, round, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(d.log(), "api fast path: connection opened"); n != 1 {
		t.Fatalf("%d fast path connections for 50 callers of one client, want 1", n)
	}
	// By code as well as by name, and a primary's error with its SQLSTATE.
	if got, err := c.Call(ctxT(t, 10*time.Second), "256", []byte("n")); err != nil || string(got) != "echo:n" {
		t.Fatalf("by code: %q %v", got, err)
	}
	var ae *client.Error
	if _, err := c.Call(ctxT(t, 10*time.Second), "fail", []byte("x")); !errors.As(err, &ae) || ae.Kind != client.KindPrimaryError || len(ae.SQLState) != 5 {
		t.Fatalf("handler error: %v", err)
	}
}

// Garbage on one connection: an error frame for its id and the connection
// closed; a caller on another connection is served meanwhile.
// claim: api.fast-garbage
func TestFastPathGarbageE2E(t *testing.T) {
	needEnv(t)
	d := fastDaemon(t)
	g, _ := fastRaw(t, d.socket)
	_, _ = g.Write([]byte("GET!\x00\x00\x00\x2aGARBAGE GARBAGE GARBAGE"))
	if f := fastRead(t, g); f.kind(t) != client.KindBadRequest || f.h.ID != 0x2a {
		t.Fatalf("reply to garbage: %+v %q", f.h, f.body)
	}
	if _, err := io.Copy(io.Discard, g); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if got, err := d.client().Call(ctxT(t, 10*time.Second), "echo", []byte("fine")); err != nil || string(got) != "echo:fine" {
		t.Fatalf("another caller: %q %v", got, err)
	}
	if !strings.Contains(d.log(), "sent a frame of unknown kind") {
		t.Fatalf("no log line for the garbage:\n%s", tailLines(d.log(), 10))
	}
}

// A frame stalled half-way: other callers are served while it waits, then
// its connection is closed with a log line.
// claim: api.fast-stall
func TestFastPathStallE2E(t *testing.T) {
	needEnv(t)
	d := fastDaemon(t)
	s, _ := fastRaw(t, d.socket)
	frame := fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Name: "echo", Payload: []byte("never finished")})
	_, _ = s.Write(frame[:len(frame)-3])
	c := d.client()
	for i := range 20 {
		want := fmt.Sprintf("during the stall %d", i)
		if got, err := c.Call(ctxT(t, 10*time.Second), "echo", []byte(want)); err != nil || string(got) != "echo:"+want {
			t.Fatalf("a caller during the stall: %q %v", got, err)
		}
	}
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatalf("the stalled connection was not closed: %v", err)
	}
	if !d.poll(10*time.Second, func() bool { return strings.Contains(d.log(), "frame did not arrive in time") }) {
		t.Fatalf("no log line for the stall:\n%s", tailLines(d.log(), 10))
	}
}

// A connection that floods requests without reading its replies gets busy
// for what exceeds its bound, every request exactly one reply; a caller
// on another connection is served meanwhile.
// claim: api.fast-flood
func TestFastPathFloodE2E(t *testing.T) {
	needEnv(t)
	d := fastDaemon(t)
	f, p := fastRaw(t, d.socket)
	const n = 2000
	var buf []byte
	for id := uint32(1); id <= n; id++ {
		buf = fastproto.AppendRequest(buf, fastproto.Request{ID: id, Op: protocol.OpPing, TimeoutMS: 30000})
	}
	written := make(chan error, 1)
	go func() { _, err := f.Write(buf); written <- err }()
	c := d.client()
	for i := range 10 {
		want := fmt.Sprintf("beside the flood %d", i)
		if got, err := c.Call(ctxT(t, 30*time.Second), "echo", []byte(want)); err != nil || string(got) != "echo:"+want {
			t.Fatalf("a caller beside the flood: %q %v", got, err)
		}
	}
	seen := map[uint32]int{}
	busy, ok := 0, 0
	for range n {
		fr := fastRead(t, f)
		seen[fr.h.ID]++
		switch fr.kind(t) {
		case "":
			ok++
		case client.KindBusy:
			busy++
		default:
			t.Fatalf("reply %+v: %q", fr.h, fr.body)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	for id := uint32(1); id <= n; id++ {
		if seen[id] != 1 {
			t.Fatalf("id %d answered %d times", id, seen[id])
		}
	}
	if busy == 0 || ok < int(p.MaxInFlight) {
		t.Fatalf("%d ok, %d busy: want at least %d ok and some busy", ok, busy, p.MaxInFlight)
	}
	t.Logf("flood of %d: %d served, %d busy", n, ok, busy)
}
