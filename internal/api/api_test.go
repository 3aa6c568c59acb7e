package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/standbyd/standbyd/client"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

func TestMain(m *testing.M) {
	if sock := os.Getenv(childSocketEnv); sock != "" {
		os.Exit(childCall(sock, os.Getenv(childOpEnv)))
	}
	goleak.VerifyTestMain(m)
}

// stubChannel stands in for the supervisor: these tests are about the HTTP
// layer (error kinds, limits, status), not the channel, which test/e2e
// covers against real servers.
type stubChannel struct {
	reply func(op uint16, payload []byte) ([]byte, error)
	st    conn.Status
}

func (s *stubChannel) Call(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	return s.reply(op, payload)
}
func (s *stubChannel) Status() conn.Status { return s.st }

func (s *stubChannel) ResolveOp(_ context.Context, ref string) (uint16, error) {
	return protocol.ResolveOp(ref, s.st.Hello.Ops)
}

func serve(t *testing.T, ch Channel, opts ...client.Option) *client.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	srv, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o600, DefaultTimeout: time.Second, MaxTimeout: 2 * time.Second, MaxPayload: 64}, ch)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	c := client.New(sock, opts...)
	t.Cleanup(func() {
		c.Close()
		_ = srv.Shutdown(context.Background())
		<-done
		os.RemoveAll(dir)
	})
	return c
}

// claim: api.error-kinds
func TestErrorKinds(t *testing.T) {
	cases := []struct {
		err    error
		kind   string
		status int
	}{
		{&protocol.ServerError{SQLState: "22003", Message: "integer out of range"}, client.KindPrimaryError, http.StatusUnprocessableEntity},
		{&conn.CallError{Op: "N", Err: errors.New("eof")}, client.KindBadRequest, http.StatusBadRequest},
		{fmt.Errorf("%w: primary down", conn.ErrUnavailable), client.KindChannelUnavailable, http.StatusServiceUnavailable},
		{conn.ErrStopped, client.KindShuttingDown, http.StatusServiceUnavailable},
		{&conn.NotStandbyError{Timeline: 2, Promoted: true}, client.KindNotStandby, http.StatusConflict},
		{conn.ErrBusy, client.KindBusy, http.StatusTooManyRequests},
		{outcomeUnknown(t), client.KindOutcomeUnknown, http.StatusGatewayTimeout},
	}
	for _, transport := range transports {
		for _, c := range cases {
			cl := serve(t, &stubChannel{reply: func(uint16, []byte) ([]byte, error) { return nil, c.err }}, transport.opts...)
			_, err := cl.Call(context.Background(), "N", nil)
			var ae *client.Error
			if !errors.As(err, &ae) || ae.Kind != c.kind || ae.HTTPStatus != c.status {
				t.Errorf("%s: %v: got %v", transport.name, c.err, err)
			}
			if c.kind == client.KindPrimaryError && ae.SQLState != "22003" {
				t.Errorf("%s: sqlstate lost: %+v", transport.name, ae)
			}
		}
	}
}

// transports are the client's two ways to call: the tests of a call's
// answers run on both.
var transports = []struct {
	name string
	opts []client.Option
}{{"fast path", nil}, {"http", []client.Option{client.WithHTTP()}}}

// claim: api.op-names
func TestCallPassesPayloadAndLimits(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testCallPassesPayloadAndLimits(t, tr.opts) })
	}
}

func testCallPassesPayloadAndLimits(t *testing.T, opts []client.Option) {
	var gotOp uint16
	cl := serve(t, &stubChannel{reply: func(op uint16, p []byte) ([]byte, error) {
		gotOp = op
		return append([]byte("echo:"), p...), nil
	}}, opts...)
	out, err := cl.Call(context.Background(), "0x0100", []byte("abc"))
	if err != nil || string(out) != "echo:abc" || gotOp != 0x100 {
		t.Fatalf("call: %q %v op %d", out, err, gotOp)
	}
	var ae *client.Error
	if _, err := cl.Call(context.Background(), "N", make([]byte, 65)); !errors.As(err, &ae) || ae.Kind != client.KindPayloadTooLarge {
		t.Fatalf("oversize: %v", err)
	}
	if _, err := cl.Call(context.Background(), "nosuchop", nil); !errors.As(err, &ae) || ae.Kind != client.KindBadRequest {
		t.Fatalf("unknown op: %v", err)
	}
}

// claim: api.ops-while-down
func TestStatusAndOps(t *testing.T) {
	st := conn.Status{State: conn.StateReady, Hello: protocol.HelloReply{Version: 1, SystemIdentifier: 42,
		Ops: []protocol.OpInfo{{Op: protocol.OpN, Builtin: true, Name: "N"}}}}
	cl := serve(t, &stubChannel{st: st})
	s, err := cl.Status(context.Background())
	if err != nil || s.State != "ready" || s.Primary == nil || s.Primary.SystemIdentifier != "42" {
		t.Fatalf("status %+v %v", s, err)
	}
	ops, err := cl.Ops(context.Background())
	if err != nil || len(ops.Ops) != 1 || ops.Ops[0].Name != "N" {
		t.Fatalf("ops %+v %v", ops, err)
	}
	down := serve(t, &stubChannel{st: conn.Status{State: conn.StateBackingOff, LastError: "connection refused"}})
	s, _ = down.Status(context.Background())
	if s.Primary != nil || !strings.Contains(s.LastError, "refused") {
		t.Fatalf("a down channel must not describe a primary: %+v", s)
	}
	var ae *client.Error
	if _, err := down.Ops(context.Background()); !errors.As(err, &ae) || ae.Kind != client.KindChannelUnavailable {
		t.Fatalf("ops while down: %v", err)
	}
}

// claim: api.go-client-errors
func TestUnreachableDaemon(t *testing.T) {
	c := client.New("/nonexistent/standbyd.sock")
	defer c.Close()
	_, err := c.Call(context.Background(), "N", nil)
	if !errors.Is(err, client.ErrDaemonUnreachable) {
		t.Fatalf("want ErrDaemonUnreachable, got %v", err)
	}
}

// claim: api.stale-socket
func TestStaleSocketReplacedLiveOneRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	first, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o600, MaxPayload: 1}, &stubChannel{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = first.Serve() }()
	if _, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o600, MaxPayload: 1}, &stubChannel{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second daemon on a live socket: %v", err)
	}
	_ = first.Shutdown(context.Background())
	<-done
	fi, err := os.Stat(sock)
	if err == nil {
		t.Fatalf("socket left after shutdown: %v", fi.Mode())
	}

	// A crash leaves the socket file behind with nobody listening: that
	// stale socket is replaced, and the new server answers on it.
	crashed, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	crashed.SetUnlinkOnClose(false)
	crashed.Close()
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no stale socket to replace: %v %v", fi, err)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatal("the stale socket still answers")
	}
	second, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o600, MaxPayload: 1}, &stubChannel{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	done = make(chan struct{})
	go func() { defer close(done); _ = second.Serve() }()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the replacing server does not answer: %v", err)
	}
	c.Close()
	_ = second.Shutdown(context.Background())
	<-done

	// A path that is not a socket is never removed.
	if err := os.WriteFile(sock, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o600, MaxPayload: 1}, &stubChannel{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file at the socket path: %v", err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "data" {
		t.Fatalf("the regular file was touched: %q %v", b, err)
	}
}
