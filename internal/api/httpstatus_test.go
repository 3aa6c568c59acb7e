package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

// unknownOutcome stands for the channel's error for a request that was
// written and got no reply (conn.CallError makes one only from a real
// session); the HTTP layer goes by its OutcomeUnknown method.
type unknownOutcome struct{}

func (unknownOutcome) Error() string        { return "N: outcome unknown: context deadline exceeded" }
func (unknownOutcome) OutcomeUnknown() bool { return true }

// outcomeUnknown returns that error, wrapped as the channel wraps it.
func outcomeUnknown(t *testing.T) error {
	t.Helper()
	return fmt.Errorf("calling the primary: %w", unknownOutcome{})
}

// rawCall sends one HTTP request by hand (head, then body as given, which
// may be shorter than the Content-Length it announces) and reads the
// response; the connection is returned so that the caller can see whether
// the daemon closed it.
func rawCall(t *testing.T, sock, head, body string) (*http.Response, []byte, *rawConn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: no response: %v", head, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, b, &rawConn{c, br}
}

// rawConn is rawCall's connection, with what it buffered.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// closedAfterTheBody checks that a refusal says Connection: close, that the
// daemon does not close before the announced body of 40 bytes has come
// (net/http reads and drops it), and that it closes once it has.
func closedAfterTheBody(t *testing.T, c *rawConn, resp *http.Response) {
	t.Helper()
	if !resp.Close {
		t.Errorf("the refusal does not say Connection: close: %v", resp.Header)
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("before the body was sent: %v, want the connection still open", err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Repeat("b", 40)); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c.br); err != nil || len(rest) != 0 {
		t.Errorf("the connection was not closed once the body was sent: %q %v", rest, err)
	}
}

func bodyKind(t *testing.T, b []byte) string {
	t.Helper()
	var eb client.ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return eb.Error.Kind
}

// Every row of the error table, as the daemon answers it on the wire: the
// HTTP status, a JSON body with the kind, for each way of provoking it.
// claim: api.error-kinds
func TestErrorTableOnTheWire(t *testing.T) {
	var chErr error
	ch := &stubChannel{reply: func(uint16, []byte) ([]byte, error) { return []byte("ok"), chErr }}
	ch.st = conn.Status{State: conn.StateReady, Hello: protocol.HelloReply{Ops: []protocol.OpInfo{{Op: protocol.OpPage, Name: "page", Builtin: true}}}}
	sock := serveCfg(t, ServerConfig{Allow: &Policy{Rules: []AllowRule{{Ops: []string{"page"}, UIDs: []uint32{uint32(os.Getuid()) + 1}}}}}, ch)
	post := func(path, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
			itoa(len(body)) + "\r\n\r\n" + body
	}
	cases := []struct {
		name   string
		err    error
		req    string
		status int
		kind   string
	}{
		{"unknown op", nil, post("/v1/call/nosuchop", ""), 400, "bad_request"},
		{"bad timeout", nil, post("/v1/call/N?timeout=soon", ""), 400, "bad_request"},
		{"refused payload", &conn.CallError{Op: "N", Err: errors.New("frame too large")}, post("/v1/call/N", ""), 400, "bad_request"},
		{"api.allow", nil, post("/v1/call/page", ""), 403, "forbidden"},
		{"body over a frame", nil, post("/v1/call/N", strings.Repeat("x", 65)), 413, "payload_too_large"},
		{"queue full", conn.ErrBusy, post("/v1/call/N", ""), 429, "busy"},
		{"primary error", &protocol.ServerError{SQLState: "22003", Message: "integer out of range"}, post("/v1/call/N", ""), 422, "primary_error"},
		{"no session", conn.ErrUnavailable, post("/v1/call/N", ""), 503, "channel_unavailable"},
		{"stopping", conn.ErrStopped, post("/v1/call/N", ""), 503, "shutting_down"},
		{"promoted", &conn.NotStandbyError{Timeline: 2, Promoted: true}, post("/v1/call/N", ""), 409, "not_standby"},
		{"no reply", outcomeUnknown(t), post("/v1/call/N", ""), 504, "outcome_unknown"},
	}
	for _, c := range cases {
		chErr = c.err
		resp, b, _ := rawCall(t, sock, c.req, "")
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" || bodyKind(t, b) != c.kind {
			t.Errorf("%s: %d %s %s, want %d %s (JSON)", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), b, c.status, c.kind)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// A raw call's success is 200 with the reply's bytes as
// application/octet-stream; a payload of exactly the limit is taken, one
// byte more is refused by the daemon itself.
// claim: api.call-success
// claim: api.payload-limit
func TestSuccessIsOctetStream(t *testing.T) {
	var got []byte
	sock := serveCfg(t, ServerConfig{MaxPayload: 64}, &stubChannel{reply: func(_ uint16, p []byte) ([]byte, error) {
		got = p
		return []byte{0, 1, 2, 0xff}, nil
	}})
	full := strings.Repeat("y", 64)
	resp, b, _ := rawCall(t, sock, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 64\r\n\r\n", full)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" || string(b) != "\x00\x01\x02\xff" || string(got) != full {
		t.Fatalf("success: %d %q %q (payload %q)", resp.StatusCode, resp.Header.Get("Content-Type"), b, got)
	}
	resp, b, _ = rawCall(t, sock, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", full+"y")
	if resp.StatusCode != 413 || bodyKind(t, b) != "payload_too_large" {
		t.Fatalf("one byte over: %d %s", resp.StatusCode, b)
	}
}

// A call refused by api.allow is answered 403 before its body is read (the
// body is announced and never sent), and the connection is closed; the
// caller here is the test's own uid, root when the tests run as root, whom
// a rule naming another uid refuses too.
// claim: api.forbidden
// claim: api.allow
func TestForbiddenBeforeTheBody(t *testing.T) {
	ch := &stubChannel{reply: func(uint16, []byte) ([]byte, error) { t.Error("a refused call reached the channel"); return nil, nil }}
	ch.st = conn.Status{State: conn.StateReady, Hello: protocol.HelloReply{Ops: []protocol.OpInfo{{Op: protocol.OpPage, Name: "page", Builtin: true}}}}
	sock := serveCfg(t, ServerConfig{Allow: &Policy{Rules: []AllowRule{{Ops: []string{"page"}, UIDs: []uint32{uint32(os.Getuid()) + 1}}}}}, ch)
	resp, b, rc := rawCall(t, sock, "POST /v1/call/page HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n", "")
	if resp.StatusCode != 403 || bodyKind(t, b) != "forbidden" {
		t.Fatalf("refused: %d %s", resp.StatusCode, b)
	}
	closedAfterTheBody(t, rc, resp)
}

// A call refused busy (every slot taken) is answered 429 with kind busy,
// and its connection is closed (its announced body is never read).
// claim: api.memory-bounded
func TestBusyRefusalClosesTheConnection(t *testing.T) {
	sock, release := holdTheOnlySlot(t)
	resp, b, rc := rawCall(t, sock, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n", "")
	if resp.StatusCode != 429 || bodyKind(t, b) != "busy" {
		t.Errorf("slots taken: %d %s", resp.StatusCode, b)
	}
	closedAfterTheBody(t, rc, resp)
	if err := release(); err != nil {
		t.Fatal(err)
	}
}

// The defaults the doc gives as numbers.
// claim: api.memory-bounded
// claim: api.fast-flood
// claim: api.fast-stall
func TestDocumentedDefaults(t *testing.T) {
	srv, err := Listen(ServerConfig{Socket: shortDir(t) + "/s", SocketMode: 0o600, MaxPayload: 1}, &stubChannel{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	if srv.cfg.MaxConns != 1024 || srv.cfg.FastMaxInFlight != 128 || srv.cfg.FastFrameTimeout != 5*time.Second {
		t.Fatalf("defaults: max_connections %d, fast in flight %d, frame timeout %v", srv.cfg.MaxConns, srv.cfg.FastMaxInFlight, srv.cfg.FastFrameTimeout)
	}
	if maxPending != 1<<20 {
		t.Fatalf("replies waiting for a caller that does not read: %d bytes, doc says 1 MiB", maxPending)
	}
}
