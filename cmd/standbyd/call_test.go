package main

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/callcli"
	"github.com/standbyd/standbyd/internal/testsock"
)

func exitOf(err error) int {
	var ee *exitError
	if errors.As(callExit(err), &ee) {
		return ee.code
	}
	return -1
}

// fastHandshake answers the fast path's preamble and reads one request
// frame; it reports whether it got one.
func fastHandshake(c net.Conn) (fastproto.Header, bool) {
	var pre [fastproto.ClientPreambleSize]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		return fastproto.Header{}, false
	}
	if _, err := c.Write(fastproto.AppendServerPreamble(nil, fastproto.ServerPreamble{Version: fastproto.Version1, MaxFrame: 1 << 20, MaxInFlight: 8})); err != nil {
		return fastproto.Header{}, false
	}
	var hdr [fastproto.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fastproto.Header{}, false
	}
	h := fastproto.ParseHeader(hdr[:])
	if _, err := io.CopyN(io.Discard, c, int64(h.Length)); err != nil {
		return h, false
	}
	return h, true
}

// Exit 4 only when nothing was written to the daemon; once the request was
// handed over (its whole frame written on the fast path, which is what
// `standbyd call` speaks), a daemon that dies or does not answer in time
// is exit 5.
// claim: api.fast-exit-codes
// claim: api.call-exit-codes
func TestCallExitCodesFastPath(t *testing.T) {
	call := func(sock string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := callcli.ViaDaemon(ctx, sock, callcli.Request{Name: "N"})
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	answer := func(kind string) func(net.Conn) {
		return func(c net.Conn) {
			if h, ok := fastHandshake(c); ok {
				_, _ = c.Write(fastproto.AppendError(nil, h.Op, h.ID, fastproto.ErrorReply{Kind: kind, Message: "m"}))
			}
		}
	}
	cases := []struct {
		name  string
		serve func(net.Conn)
		want  int
	}{
		{"closes before its preamble", func(c net.Conn) {}, 4},
		{"answers as HTTP (a daemon without the fast path)", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}, 4},
		{"never answers the preamble", func(c net.Conn) { <-stop }, 4},
		{"reads the request and closes", func(c net.Conn) { fastHandshake(c) }, 5},
		{"reads the request, never answers", func(c net.Conn) { fastHandshake(c); <-stop }, 5},
		// The daemon's own answers, as docs/api.md's table of exit codes
		// gives them (the literal codes, not the constants).
		{"bad request", answer(client.KindBadRequest), 2},
		{"payload too large", answer(client.KindPayloadTooLarge), 2},
		{"primary error", answer(client.KindPrimaryError), 3},
		{"busy", answer(client.KindBusy), 4},
		{"channel unavailable", answer(client.KindChannelUnavailable), 4},
		{"shutting down", answer(client.KindShuttingDown), 4},
		{"outcome unknown", answer(client.KindOutcomeUnknown), 5},
		{"forbidden", answer(client.KindForbidden), 6},
		{"not a standby", answer(client.KindNotStandby), 7},
	}
	for _, c := range cases {
		sock := testsock.Serve(t, c.serve)
		if got := exitOf(call(sock, 300*time.Millisecond)); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
	if got := exitOf(call("/nonexistent/standbyd.sock", time.Second)); got != 4 {
		t.Errorf("no daemon: exit %d, want 4", got)
	}
}
