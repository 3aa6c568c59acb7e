package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// fakeDaemon accepts connections on a Unix socket and does to each what
// serve says; it is stopped at the test's end.
func fakeDaemon(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait(); os.RemoveAll(dir) })
	return sock
}

// readHead reads a request's head (the calls here have no body).
func readHead(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil || line == "\r\n" {
			return
		}
	}
}

func exitOf(err error) int {
	var ee *exitError
	if errors.As(callExit(err), &ee) {
		return ee.code
	}
	return -1
}

// Exit 4 only when nothing was written to the daemon; once the request was
// handed over, a daemon that dies or does not answer in time is exit 5.
func TestCallExitCodes(t *testing.T) {
	call := func(sock string, timeout time.Duration) error {
		c := client.New(sock, client.WithHTTP())
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Call(ctx, "N", nil)
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	cases := []struct {
		name  string
		serve func(net.Conn)
		want  int
	}{
		{"accepts, reads and closes", func(c net.Conn) { readHead(c) }, exitUnknown},
		{"reads and never answers", func(c net.Conn) { readHead(c); <-stop }, exitUnknown},
		{"forbidden", func(c net.Conn) {
			readHead(c)
			body := `{"error":{"kind":"forbidden","message":"op N is restricted"}}`
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: "+
				itoa(len(body))+"\r\n\r\n"+body)
		}, exitDenied},
		{"busy", func(c net.Conn) {
			readHead(c)
			body := `{"error":{"kind":"busy","message":"1000 calls wait"}}`
			_, _ = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
		}, exitUnavailable},
	}
	for _, c := range cases {
		sock := fakeDaemon(t, c.serve)
		if got := exitOf(call(sock, 300*time.Millisecond)); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
	if got := exitOf(call("/nonexistent/standbyd.sock", time.Second)); got != exitUnavailable {
		t.Errorf("no daemon: exit %d, want %d", got, exitUnavailable)
	}
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

// The same rules on the fast path: "handed over" is a request frame fully
// written.
// claim: api.fast-exit-codes
func TestCallExitCodesFastPath(t *testing.T) {
	call := func(sock string, timeout time.Duration) error {
		c := client.New(sock)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Call(ctx, "N", nil)
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
		{"closes before its preamble", func(c net.Conn) {}, exitUnavailable},
		{"never answers the preamble", func(c net.Conn) { <-stop }, exitUnavailable},
		{"reads the request and closes", func(c net.Conn) { fastHandshake(c) }, exitUnknown},
		{"reads the request, never answers", func(c net.Conn) { fastHandshake(c); <-stop }, exitUnknown},
		{"forbidden", answer(client.KindForbidden), exitDenied},
		{"busy", answer(client.KindBusy), exitUnavailable},
		{"outcome unknown", answer(client.KindOutcomeUnknown), exitUnknown},
		{"primary error", answer(client.KindPrimaryError), exitPrimaryErr},
	}
	for _, c := range cases {
		sock := fakeDaemon(t, c.serve)
		if got := exitOf(call(sock, 300*time.Millisecond)); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
