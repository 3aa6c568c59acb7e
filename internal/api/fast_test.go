package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// fastDial opens a fast path connection by hand (version 1) and reads the
// daemon's preamble.
func fastDial(t *testing.T, sock string) (net.Conn, fastproto.ServerPreamble) {
	t.Helper()
	return fastDialV(t, sock, fastproto.Version1)
}

// readFrame reads one reply frame.
func readFrame(t *testing.T, c net.Conn) (fastproto.Header, []byte) {
	t.Helper()
	var hdr [fastproto.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	h := fastproto.ParseHeader(hdr[:])
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reading a reply's body: %v", err)
	}
	return h, body
}

func errorKind(t *testing.T, h fastproto.Header, body []byte) string {
	t.Helper()
	if h.Second != fastproto.StatusError {
		t.Fatalf("reply %+v is not an error: %q", h, body)
	}
	e, err := fastproto.ParseError(body)
	if err != nil {
		t.Fatal(err)
	}
	return e.Kind
}

// waitClosed reads until the daemon closes the connection.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the daemon did not close the connection: %v", err)
	}
}

func echoChannel() *stubChannel {
	return &stubChannel{reply: func(_ uint16, p []byte) ([]byte, error) { return p, nil }}
}

// The socket serves both protocols: a fast path preamble sent one byte at
// a time is recognised, and HTTP still works beside it.
// claim: api.fast-same-socket
// claim: api.fast-max-frame
func TestFastPathAndHTTPShareTheSocket(t *testing.T) {
	sock := serveCfg(t, ServerConfig{}, echoChannel())
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, b := range fastproto.AppendClientPreamble(nil, fastproto.Version1) {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	var pre [fastproto.ServerPreambleSize]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		t.Fatal(err)
	}
	if p, err := fastproto.ParseServerPreamble(pre[:]); err != nil || p.MaxInFlight != DefaultFastMaxInFlight ||
		int(p.MaxFrame) != fastproto.HeaderSize+fastproto.TimeoutSize+1+fastproto.MaxNameSize+64 {
		t.Fatalf("preamble %+v %v", p, err)
	}
	if _, err := c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Name: "N", Payload: []byte("abc")})); err != nil {
		t.Fatal(err)
	}
	if h, body := readFrame(t, c); h.Kind != fastproto.KindReply || h.Second != 0 || h.ID != 1 || h.Op != protocol.OpN || string(body) != "abc" {
		t.Fatalf("reply %+v %q", h, body)
	}
	hc := client.New(sock, client.WithHTTP())
	defer hc.Close()
	if out, err := hc.Call(context.Background(), "N", []byte("http")); err != nil || string(out) != "http" {
		t.Fatalf("http beside it: %q %v", out, err)
	}
	// A request line shorter than the magic goes to HTTP at once.
	h, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_ = h.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(h, "GET /v1/status HTTP/1.0\r\n\r\n")
	got, _ := io.ReadAll(h)
	if !strings.HasPrefix(string(got), "HTTP/1.0 200") {
		t.Fatalf("http status: %q", got)
	}
}

// Garbage: a preamble of an unknown version is closed without a word; a
// frame that is not a request gets an error frame for its id, then the
// connection closes; a frame over the limit too; a request whose body is
// malformed gets bad_request and the connection goes on.
// claim: api.fast-garbage
// claim: api.fast-reply-op
// claim: api.fast-request-errors
func TestFastPathGarbage(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core)}, echoChannel())

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("SBYDFP\x00\n"))
	waitClosed(t, c)
	if logs.FilterMessageSnippet("preamble is not understood").Len() != 1 {
		t.Fatalf("no log line for the bad preamble: %v", logs.All())
	}
	// A known version ended by another byte than '\n': closed without an
	// answer too.
	c, err = net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("SBYDFP\x01\r"))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("a preamble ended by '\\r': answered %q (%v), want closed without a word", got, err)
	}
	if logs.FilterMessageSnippet("preamble is not understood").Len() != 2 {
		t.Fatalf("no log line for the preamble ended by '\\r': %v", logs.All())
	}

	c, _ = fastDial(t, sock)
	_, _ = c.Write([]byte{'X', 0, 0, 'N', 0, 0, 0, 5, 0, 0, 0, 0})
	if h, body := readFrame(t, c); h.ID != 5 || h.Op != 'N' || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("wrong kind: %+v", h)
	}
	waitClosed(t, c)

	c, p := fastDial(t, sock)
	big := make([]byte, fastproto.HeaderSize)
	copy(big, []byte{'Q', 0, 0, 'N', 0, 0, 0, 6})
	binary.BigEndian.PutUint32(big[8:], p.MaxFrame) // one byte over: the header counts
	_, _ = c.Write(big)
	if h, body := readFrame(t, c); h.ID != 6 || errorKind(t, h, body) != client.KindPayloadTooLarge {
		t.Fatalf("over the limit: %+v", h)
	}
	waitClosed(t, c)

	c, _ = fastDial(t, sock)
	_, _ = c.Write([]byte{'Q', 0x80, 0, 'N', 0, 0, 0, 7, 0, 0, 0, 4, 0, 0, 0, 0})
	_, _ = c.Write([]byte{'Q', fastproto.FlagOpByName, 0, 0, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0})
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 9, Name: "nosuchop"}))
	// A payload over the channel's limit (64 here) in a frame under the max
	// frame (which has room for a name): payload_too_large, and it goes on.
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 11, Op: protocol.OpN, Payload: make([]byte, 65)}))
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 10, Op: protocol.OpN, Payload: []byte("still here")}))
	// Replies come as they are ready: match them by id.
	seen := map[uint32]bool{}
	for range 5 {
		h, body := readFrame(t, c)
		if seen[h.ID] {
			t.Fatalf("two replies for id %d", h.ID)
		}
		seen[h.ID] = true
		switch h.ID {
		case 7, 8, 9:
			// Answered before a name was resolved: the op is the
			// request's op field ('N' for 7, 0 for 8 and 9, by name).
			wantOp := map[uint32]uint16{7: 'N', 8: 0, 9: 0}[h.ID]
			if errorKind(t, h, body) != client.KindBadRequest || h.Op != wantOp {
				t.Fatalf("request %d: %+v %q", h.ID, h, body)
			}
		case 11:
			if errorKind(t, h, body) != client.KindPayloadTooLarge {
				t.Fatalf("payload over the limit: %+v %q", h, body)
			}
		case 10:
			if h.Second != 0 || string(body) != "still here" {
				t.Fatalf("after the malformed requests: %+v %q", h, body)
			}
		default:
			t.Fatalf("reply for id %d", h.ID)
		}
	}
}

// A frame that stops half-way closes its connection after the frame
// timeout, with a log line; other connections go on meanwhile.
// claim: api.fast-stall
// claim: api.fast-no-idle-timeout
func TestFastPathStall(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	g := newGate()
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core), FastFrameTimeout: 200 * time.Millisecond,
		DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	stalled, _ := fastDial(t, sock)
	// A call of the stalled connection waits in the channel: it is
	// withdrawn when the connection is closed.
	_, _ = stalled.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 9, Op: protocol.OpN, Payload: []byte("wait")}))
	<-g.arrived
	frame := fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("abc")})
	_, _ = stalled.Write(frame[:7])
	other, _ := fastDial(t, sock)
	_, _ = other.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Op: protocol.OpN, Payload: []byte("x")}))
	if h, _ := readFrame(t, other); h.ID != 2 || h.Second != 0 {
		t.Fatalf("other connection: %+v", h)
	}
	waitClosed(t, stalled)
	select {
	case <-g.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled connection's call was not withdrawn")
	}
	if l := logs.FilterMessageSnippet("frame did not arrive in time"); l.Len() != 1 || l.All()[0].ContextMap()["bytes_received"] != int64(7) {
		t.Fatalf("log: %v", logs.All())
	} else if m := l.All()[0].ContextMap(); m["uid"] != uint32(os.Getuid()) || m["gid"] != uint32(os.Getgid()) || m["pid"] != int32(os.Getpid()) {
		t.Fatalf("the stall's log line does not name the caller (uid, gid, pid): %v", m)
	}
	// Idle between frames is not a stall.
	time.Sleep(300 * time.Millisecond)
	_, _ = other.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 3, Op: protocol.OpN}))
	if h, _ := readFrame(t, other); h.ID != 3 || h.Second != 0 {
		t.Fatalf("after an idle spell: %+v", h)
	}
}

// gate is a channel whose calls wait until released.
type gate struct {
	stubChannel
	release   chan struct{}
	arrived   chan struct{}
	cancelled chan struct{}
}

func newGate() *gate {
	g := &gate{release: make(chan struct{}), arrived: make(chan struct{}, 1024), cancelled: make(chan struct{}, 1024)}
	return g
}

func (g *gate) Call(ctx context.Context, _ uint16, p []byte) ([]byte, error) {
	g.arrived <- struct{}{}
	if bytes.HasPrefix(p, []byte("wait")) {
		select {
		case <-g.release:
		case <-ctx.Done():
			g.cancelled <- struct{}{}
			return nil, ctx.Err()
		}
	}
	return p, nil
}

// A connection that floods gets busy for what goes over its in-flight
// bound, at once; another connection's calls are served meanwhile.
// claim: api.fast-flood
func TestFastPathFlood(t *testing.T) {
	g := newGate()
	sock := serveCfg(t, ServerConfig{FastMaxInFlight: 4, DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	flood, p := fastDial(t, sock)
	if p.MaxInFlight != 4 {
		t.Fatalf("preamble says %d in flight", p.MaxInFlight)
	}
	var buf []byte
	for id := uint32(1); id <= 4; id++ {
		buf = fastproto.AppendRequest(buf, fastproto.Request{ID: id, Op: protocol.OpN, Payload: []byte("wait")})
	}
	_, _ = flood.Write(buf)
	for range 4 {
		<-g.arrived
	}
	buf = buf[:0]
	for id := uint32(5); id <= 104; id++ {
		buf = fastproto.AppendRequest(buf, fastproto.Request{ID: id, Op: protocol.OpN, Payload: []byte("more")})
	}
	_, _ = flood.Write(buf)
	for id := uint32(5); id <= 104; id++ {
		if h, body := readFrame(t, flood); h.ID != id || h.Op != protocol.OpN || errorKind(t, h, body) != client.KindBusy {
			t.Fatalf("flood request %d: %+v %q", id, h, body)
		}
	}
	other := client.New(sock)
	defer other.Close()
	if out, err := other.Call(context.Background(), "N", []byte("served")); err != nil || string(out) != "served" {
		t.Fatalf("another caller during the flood: %q %v", out, err)
	}
	close(g.release)
	got := map[uint32]bool{}
	for range 4 {
		h, body := readFrame(t, flood)
		if h.Second != 0 || string(body) != "wait" {
			t.Fatalf("released: %+v %q", h, body)
		}
		got[h.ID] = true
	}
	if len(got) != 4 {
		t.Fatalf("replies %v", got)
	}
}

// Replies go back as they come, matched by id, not in request order.
// claim: api.fast-out-of-order
func TestFastPathRepliesOutOfOrder(t *testing.T) {
	g := newGate()
	sock := serveCfg(t, ServerConfig{DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	c, _ := fastDial(t, sock)
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")}))
	<-g.arrived
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Op: protocol.OpN, Payload: []byte("now")}))
	if h, body := readFrame(t, c); h.ID != 2 || string(body) != "now" {
		t.Fatalf("first reply %+v %q", h, body)
	}
	close(g.release)
	if h, body := readFrame(t, c); h.ID != 1 || string(body) != "wait" {
		t.Fatalf("second reply %+v %q", h, body)
	}
}

// The allow-list applies per request on the fast path as on HTTP.
// claim: api.fast-allow
func TestFastPathAllow(t *testing.T) {
	var denied []uint16
	var mu sync.Mutex
	sock := serveCfg(t, ServerConfig{Allow: &Policy{Rules: []AllowRule{{Ops: []string{"page"}, UIDs: []uint32{uint32(os.Getuid()) + 1}}}},
		Denied: func(op uint16) { mu.Lock(); denied = append(denied, op); mu.Unlock() }}, echoChannel())
	c := client.New(sock)
	defer c.Close()
	var ae *client.Error
	if _, err := c.Call(context.Background(), "page", nil); !errors.As(err, &ae) || ae.Kind != client.KindForbidden || !strings.Contains(ae.Message, "uid") {
		t.Fatalf("restricted op: %v", err)
	}
	if out, err := c.Call(context.Background(), "N", []byte("open")); err != nil || string(out) != "open" {
		t.Fatalf("open op on the same connection: %q %v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(denied) != 1 || denied[0] != protocol.OpPage {
		t.Fatalf("denied metric: %v", denied)
	}
}

// At shutdown a fast connection stops taking requests, answers those in
// flight, then closes.
// claim: api.fast-shutdown
func TestFastPathShutdownAnswersInFlight(t *testing.T) {
	g := newGate()
	cfg := ServerConfig{Socket: filepath.Join(shortDir(t), "s"), SocketMode: 0o600, DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second, MaxPayload: 64}
	srv, err := Listen(cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	c, _ := fastDial(t, cfg.Socket)
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")}))
	<-g.arrived
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(context.Background()) }()
	// Shutdown has begun once the socket takes no new connection: only
	// then is the call in flight released.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("unix", cfg.Socket)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("the socket still takes connections 10s after Shutdown")
		}
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	if h, body := readFrame(t, c); h.ID != 1 || string(body) != "wait" {
		t.Fatalf("in flight at shutdown: %+v %q", h, body)
	}
	waitClosed(t, c)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	<-done
}

// socketPair is a connected pair of Unix stream sockets.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// FuzzFastDecoder feeds any bytes to the daemon's fast path reader, after
// the preamble of version 1 or 2. Every complete request frame before the
// first one that ends the connection gets exactly one well-formed reply
// with its id, a malformed identify frame (version 2) one with id 0, and
// nothing else comes back.
// claim: api.fast-fuzzed
func FuzzFastDecoder(f *testing.F) {
	for _, v2 := range []bool{false, true} {
		f.Add(v2, fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("abc")}))
		f.Add(v2, fastproto.AppendRequest(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Name: "ping"}), fastproto.Request{ID: 2, Name: "nosuch", TimeoutMS: 1}))
		f.Add(v2, []byte{'Q', 0x80, 0, 'N', 0, 0, 0, 7, 0, 0, 0, 4, 0, 0, 0, 0, 'X', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
		f.Add(v2, []byte{'Q', 0, 0, 'N', 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff})
		f.Add(v2, []byte{'Q', 0, 0, 'N', 0, 0, 0, 6, 0, 0, 0, 9, 1})
		id := fastproto.AppendIdentify(nil, fastproto.Identify{PID: 9, Role: "app", Database: "shop"})
		f.Add(v2, fastproto.AppendRequest(id, fastproto.Request{ID: 3, Name: "nosuch"}))
		f.Add(v2, fastproto.AppendRequest(append(id[:len(id):len(id)], 0), fastproto.Request{ID: 4, Op: protocol.OpN}))
		f.Add(v2, []byte{'I', 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1})
	}
	s := &Server{cfg: ServerConfig{DefaultTimeout: time.Second, MaxTimeout: time.Second, MaxPayload: 64,
		FastMaxInFlight: 3, FastFrameTimeout: 5 * time.Second}, ch: echoChannel(), log: zap.NewNop(), fastConns: map[*fastConn]struct{}{}}
	f.Fuzz(func(t *testing.T, v2 bool, in []byte) {
		v := fastproto.Version1
		if v2 {
			v = fastproto.Version2
		}
		cl, sv := socketPair(t)
		defer cl.Close()
		done := make(chan struct{})
		go func() { defer close(done); s.serveFast(&peerConn{Conn: sv, release: func() {}}, v) }()
		go func() { _, _ = cl.Write(in); _ = cl.CloseWrite() }()
		_ = cl.SetReadDeadline(time.Now().Add(20 * time.Second))
		out, err := io.ReadAll(cl)
		<-done
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint32]int{}
		maxBody := s.fastMaxFrame() - fastproto.HeaderSize
		for rest := in; len(rest) >= fastproto.HeaderSize; {
			h := fastproto.ParseHeader(rest)
			if v2 && h.Kind == fastproto.KindIdentify {
				if len(rest)-fastproto.HeaderSize < int(h.Length) {
					break
				}
				if _, err := fastproto.ParseIdentifyBody(h, rest[fastproto.HeaderSize:fastproto.HeaderSize+int(h.Length)]); err != nil {
					want[0]++
				}
				rest = rest[fastproto.HeaderSize+int(h.Length):]
				continue
			}
			want[h.ID]++
			if h.Kind != fastproto.KindRequest || int64(h.Length) > int64(maxBody) {
				break
			}
			if len(rest)-fastproto.HeaderSize < int(h.Length) {
				want[h.ID]-- // cut short by the end of input: no reply
				break
			}
			rest = rest[fastproto.HeaderSize+int(h.Length):]
		}
		if len(out) < fastproto.ServerPreambleSize {
			t.Fatalf("no preamble: % x", out)
		}
		got := map[uint32]int{}
		for rest := out[fastproto.ServerPreambleSize:]; len(rest) > 0; {
			if len(rest) < fastproto.HeaderSize {
				t.Fatalf("trailing bytes % x", rest)
			}
			h := fastproto.ParseHeader(rest)
			if h.Kind != fastproto.KindReply || len(rest)-fastproto.HeaderSize < int(h.Length) {
				t.Fatalf("malformed reply %+v", h)
			}
			body := rest[fastproto.HeaderSize : fastproto.HeaderSize+int(h.Length)]
			if h.Second == fastproto.StatusError {
				if _, err := fastproto.ParseErrorV(v, body); err != nil {
					t.Fatal(err)
				}
			} else if h.Second != fastproto.StatusOK {
				t.Fatalf("status %d", h.Second)
			}
			got[h.ID]++
			rest = rest[fastproto.HeaderSize+int(h.Length):]
		}
		for id, n := range want {
			if n == 0 {
				delete(want, id)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("replies by id %v, want %v", got, want)
		}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("replies by id %v, want %v", got, want)
			}
		}
	})
}

// After a framing error the calls already in flight go on and are
// answered before the connection closes.
// claim: api.fast-garbage
func TestFastPathFramingErrorAnswersInFlight(t *testing.T) {
	g := newGate()
	sock := serveCfg(t, ServerConfig{DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	c, _ := fastDial(t, sock)
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")}))
	<-g.arrived
	_, _ = c.Write([]byte{'X', 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0})
	if h, body := readFrame(t, c); h.ID != 2 || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("garbage: %+v %q", h, body)
	}
	close(g.release)
	if h, body := readFrame(t, c); h.ID != 1 || h.Second != 0 || string(body) != "wait" {
		t.Fatalf("the call in flight: %+v %q", h, body)
	}
	waitClosed(t, c)
}

// A caller that floods and never reads its replies holds its own
// connection, not the daemon's memory: the daemon stops reading it once a
// bounded queue of replies waits.
// claim: api.fast-flood
func TestFastPathFloodWithoutReadingIsBounded(t *testing.T) {
	g := newGate()
	cfg := ServerConfig{Socket: filepath.Join(shortDir(t), "s"), SocketMode: 0o600, DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second,
		MaxPayload: 64, FastMaxInFlight: 1}
	srv, err := Listen(cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	c, _ := fastDial(t, cfg.Socket)
	defer func() {
		c.Close() // the daemon's blocked write fails: the caller is gone
		close(g.release)
		_ = srv.Shutdown(context.Background())
		<-done
	}()
	buf := fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")})
	for id := uint32(2); id < 200000; id++ {
		buf = fastproto.AppendRequest(buf, fastproto.Request{ID: id, Op: protocol.OpN})
	}
	_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Write(buf)
	if err == nil {
		t.Fatalf("all %d bytes of requests were taken while no reply was read", n)
	}
	srv.fastMu.Lock()
	defer srv.fastMu.Unlock()
	if len(srv.fastConns) != 1 {
		t.Fatalf("%d fast connections", len(srv.fastConns))
	}
	for fc := range srv.fastConns {
		fc.wmu.Lock()
		pending := len(fc.pend)
		fc.wmu.Unlock()
		if pending > maxPending+256 {
			t.Fatalf("%d reply bytes queued, bound %d", pending, maxPending)
		}
		t.Logf("%d of %d request bytes taken, %d reply bytes queued", n, len(buf), pending)
	}
}

// A request that finds every call slot (api.queue_limit plus the sessions)
// taken is answered busy at once, with the request's op, whatever its
// connection's own bound.
// claim: api.fast-flood
// claim: api.fast-reply-op
func TestFastPathBusyWhenTheSlotsAreTaken(t *testing.T) {
	g := newGate()
	sock := serveCfg(t, ServerConfig{CallSlots: 1, DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	holder, _ := fastDial(t, sock)
	_, _ = holder.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")}))
	<-g.arrived
	other, _ := fastDial(t, sock)
	_, _ = other.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Op: protocol.OpPing, Payload: []byte("more")}))
	if h, body := readFrame(t, other); h.ID != 2 || h.Op != protocol.OpPing || errorKind(t, h, body) != client.KindBusy {
		t.Fatalf("slots taken: %+v %q", h, body)
	}
	close(g.release)
	if h, body := readFrame(t, holder); h.ID != 1 || h.Second != 0 || string(body) != "wait" {
		t.Fatalf("the call holding the slot: %+v %q", h, body)
	}
	// The slot is given back just after the reply is queued: ask until it
	// is (bounded generously).
	for id, deadline := uint32(3), time.Now().Add(10*time.Second); ; id++ {
		_, _ = other.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: id, Op: protocol.OpN, Payload: []byte("now")}))
		h, body := readFrame(t, other)
		if h.ID == id && h.Second == 0 && string(body) == "now" {
			break
		}
		if h.ID != id || errorKind(t, h, body) != client.KindBusy || time.Now().After(deadline) {
			t.Fatalf("once the slot is free: %+v %q", h, body)
		}
		time.Sleep(time.Millisecond)
	}
}

// Each fast path connection is logged at debug level with the caller's
// peer credentials.
// claim: api.fast-connection-log
func TestFastPathConnectionLogged(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core)}, echoChannel())
	c, _ := fastDial(t, sock)
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN}))
	readFrame(t, c) // the log line is written before the first request is read
	l := logs.FilterMessage("api fast path: connection opened")
	if l.Len() != 1 {
		t.Fatalf("%d connection lines: %v", l.Len(), logs.All())
	}
	e := l.All()[0]
	if m := e.ContextMap(); e.Level != zap.DebugLevel || m["uid"] != uint32(os.Getuid()) || m["gid"] != uint32(os.Getgid()) || m["pid"] != int32(os.Getpid()) {
		t.Fatalf("connection line %v %v", e.Level, m)
	}
}

// HTTP and the fast path share api.max_connections: with the one
// connection allowed held by a fast path caller, an HTTP caller waits in
// the backlog until it closes.
// claim: api.fast-same-socket
func TestFastPathSharesMaxConnections(t *testing.T) {
	sock := serveCfg(t, ServerConfig{MaxConns: 1}, echoChannel())
	fast, _ := fastDial(t, sock)
	h, err := net.Dial("unix", sock) // queued by the kernel
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	answer := make(chan string, 1)
	go func() {
		_, _ = io.WriteString(h, "GET /v1/status HTTP/1.0\r\n\r\n")
		line, _ := bufio.NewReader(h).ReadString('\n')
		answer <- line
	}()
	select {
	case got := <-answer:
		t.Fatalf("an HTTP connection was served beside the fast one, with max_connections 1: %q", got)
	case <-time.After(200 * time.Millisecond):
	}
	fast.Close()
	select {
	case got := <-answer:
		if !strings.HasPrefix(got, "HTTP/1.0 200") {
			t.Fatalf("once the fast connection closed: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the HTTP connection was not served after the fast one closed")
	}
}
