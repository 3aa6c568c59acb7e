package callcli

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/testsock"
)

// peer serves each fast path connection on a Unix socket with serve,
// after the preamble (version v, max frame 1 KiB) and one request; it is
// stopped at the test's end. A fake peer: these are the framing's edge cases, which
// the real daemon never produces.
func peer(t *testing.T, v byte, serve func(c net.Conn, h fastproto.Header, body []byte)) (string, *atomic.Int32) {
	t.Helper()
	var requests atomic.Int32
	sock := testsock.Serve(t, func(c net.Conn) {
		var pre [fastproto.ClientPreambleSize]byte
		if _, err := io.ReadFull(c, pre[:]); err != nil {
			return
		}
		if _, err := c.Write(fastproto.AppendServerPreamble(nil, fastproto.ServerPreamble{Version: v, MaxFrame: 1024, MaxInFlight: 1})); err != nil {
			return
		}
		h, body, err := fastproto.ReadFrame(c, 1<<20)
		if err != nil {
			return
		}
		requests.Add(1)
		serve(c, h, body)
	})
	return sock, &requests
}

func callPeer(sock, op string, payload []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return viaFastPath(ctx, sock, op, payload)
}

func TestFastCallSendsTheRequestAsFramed(t *testing.T) {
	var got fastproto.Request
	sock, _ := peer(t, fastproto.Version2, func(c net.Conn, h fastproto.Header, body []byte) {
		got, _ = fastproto.ParseRequestBody(h, body)
		_, _ = c.Write(fastproto.AppendReply(nil, h.Op, h.ID, []byte("pong")))
	})
	reply, err := callPeer(sock, "place_order", []byte("teapot"), 3*time.Second)
	if err != nil || string(reply) != "pong" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if got.Name != "place_order" || string(got.Payload) != "teapot" || got.TimeoutMS < 2000 || got.TimeoutMS > 3000 {
		t.Errorf("the daemon got %+v", got)
	}
	if _, err := callPeer(sock, "300", nil, time.Second); err != nil {
		t.Fatal(err)
	}
	if got.Name != "" || got.Op != 300 {
		t.Errorf("op 300 went as %+v", got)
	}
}

// Every failure gets the exit code its outcome calls for: nothing written
// (4), written and no complete answer (5), refused before sending (2).
func TestFastCallFailures(t *testing.T) {
	reply := func(frame func(h fastproto.Header) []byte) func(net.Conn, fastproto.Header, []byte) {
		return func(c net.Conn, h fastproto.Header, _ []byte) { _, _ = c.Write(frame(h)) }
	}
	cases := []struct {
		name    string
		version byte
		serve   func(net.Conn, fastproto.Header, []byte)
		payload int
		exit    int
		sent    bool
		msg     string
	}{
		{"reply to another request", fastproto.Version2, reply(func(h fastproto.Header) []byte {
			return fastproto.AppendReply(nil, h.Op, h.ID+1, nil)
		}), 0, ExitUnknown, true, "answered request 2, not 1"},
		{"a frame that is not a reply", fastproto.Version2, reply(func(h fastproto.Header) []byte {
			return fastproto.AppendRequest(nil, fastproto.Request{ID: h.ID, Op: h.Op})
		}), 0, ExitUnknown, true, "frame of kind 0x51"},
		{"a reply cut short", fastproto.Version2, reply(func(h fastproto.Header) []byte {
			f := fastproto.AppendReply(nil, h.Op, h.ID, []byte("0123456789"))
			return f[:len(f)-3]
		}), 0, ExitUnknown, true, "closed the connection"},
		{"a malformed error reply", fastproto.Version2, reply(func(h fastproto.Header) []byte {
			f := fastproto.AppendErrorV(nil, fastproto.Version2, h.Op, h.ID, fastproto.ErrorReply{Kind: "busy", Message: "m"})
			return f[:len(f)-2]
		}), 0, ExitUnknown, true, ""},
		{"an unknown status", fastproto.Version2, reply(func(h fastproto.Header) []byte {
			f := fastproto.AppendReply(nil, h.Op, h.ID, nil)
			f[1] = 9
			return f
		}), 0, ExitUnknown, true, "status 9"},
		{"a version it did not offer", fastproto.MaxVersion + 1, nil, 0, ExitUnavailable, false, "unsupported fast path version"},
		{"a payload over the daemon's maximum frame", fastproto.Version2, nil, 2000, ExitUsage, false, "larger than the daemon's maximum of 1024"},
		{"the daemon's own error, version 1 layout", fastproto.Version1, reply(func(h fastproto.Header) []byte {
			return fastproto.AppendError(nil, h.Op, h.ID, fastproto.ErrorReply{Kind: "busy", Message: "1000 calls wait"})
		}), 0, ExitUnavailable, true, "busy: 1000 calls wait"},
	}
	for _, c := range cases {
		sock, requests := peer(t, c.version, c.serve)
		_, err := callPeer(sock, "echo", make([]byte, c.payload), 2*time.Second)
		if got := Exit(err, nil).Code; got != c.exit {
			t.Errorf("%s: exit %d (%v), want %d", c.name, got, err, c.exit)
		}
		if err != nil && !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %q does not say %q", c.name, err, c.msg)
		}
		if sent := requests.Load() > 0; sent != c.sent {
			t.Errorf("%s: request sent %v, want %v", c.name, sent, c.sent)
		}
	}
}

// A daemon that takes the request and says nothing: the caller waits for
// the deadline and the grace (the daemon would say why by then), no longer.
func TestFastCallWaitsTheGraceThenGivesUp(t *testing.T) {
	stop := make(chan struct{})
	sock, _ := peer(t, fastproto.Version2, func(net.Conn, fastproto.Header, []byte) { <-stop })
	defer close(stop)
	start := time.Now()
	_, err := callPeer(sock, "echo", nil, 200*time.Millisecond)
	took := time.Since(start)
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want outcome unknown after the deadline", err)
	}
	if took < answerGrace || took > answerGrace+5*time.Second {
		t.Errorf("gave up after %v, want the deadline and the %v grace", took, answerGrace)
	}
}

func TestFastCallRefusesBadNames(t *testing.T) {
	for _, op := range []string{"", strings.Repeat("x", fastproto.MaxNameSize+1)} {
		_, err := callPeer("/nonexistent/s", op, nil, time.Second)
		var de *DaemonError
		if !errors.As(err, &de) || de.Kind != fastproto.ErrorKindBadRequest || Exit(err, nil).Code != ExitUsage {
			t.Errorf("op of %d bytes: %v", len(op), err)
		}
	}
}
