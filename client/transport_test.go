package client

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cl") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// serveHTTP runs h on a Unix socket and counts the connections accepted.
func serveHTTP(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return sock, &conns
}

// A pool of n concurrent callers reuses its n connections: the transport's
// per-host idle bound is the pool, not http's default of 2.
// claim: api.go-client-pool
func TestPoolKeepsItsConnections(t *testing.T) {
	const n = 4 // the documented default
	if DefaultPoolSize != n {
		t.Fatalf("DefaultPoolSize is %d, the doc says %d", DefaultPoolSize, n)
	}
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	sock, conns := serveHTTP(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		arrived++
		wait := all
		if arrived%n == 0 {
			close(all)
			all = make(chan struct{})
		}
		mu.Unlock()
		<-wait // n calls at once, so that n connections are in use
		_, _ = w.Write([]byte("ok"))
	})
	c := New(sock, WithHTTP())
	defer c.Close()
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := c.Call(ctx, "N", nil); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if got := conns.Load(); got != n {
		t.Fatalf("%d connections for two rounds of %d concurrent calls, want %d", got, n, n)
	}
}

// An answer larger than the client's limit is an error, whether its length
// is announced or not.
// claim: api.go-client-reply-limit
func TestReplyLimit(t *testing.T) {
	sock, _ := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status" {
			w.(http.Flusher).Flush() // chunked: no length announced
		}
		_, _ = w.Write([]byte(strings.Repeat("x", 4096)))
	})
	c := New(sock, WithHTTP(), WithMaxReply(1024))
	defer c.Close()
	if _, err := c.Call(context.Background(), "N", nil); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("announced: %v", err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("chunked: %v", err)
	}
	big := New(sock, WithHTTP(), WithMaxReply(4096))
	defer big.Close()
	if out, err := big.Call(context.Background(), "N", nil); err != nil || len(out) != 4096 {
		t.Fatalf("at the limit: %d %v", len(out), err)
	}
}

// readRequest reads one request's head from c (the body is empty).
func readRequest(c net.Conn) error {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// Once the request was written, a failure is "outcome unknown", never
// "unreachable": the daemon may have passed it on.
// claim: api.go-client-errors
func TestHandedOverIsOutcomeUnknown(t *testing.T) {
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	hang := make(chan struct{})
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if readRequest(c) == nil && i == 1 {
				<-hang // never answers
			}
			c.Close() // the daemon died after reading the request
		}
	}()
	defer func() { close(hang); ln.Close(); wg.Wait() }()
	c := New(sock, WithHTTP())
	defer c.Close()
	_, err = c.Call(context.Background(), "N", nil)
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrDaemonUnreachable) {
		t.Fatalf("closed after reading: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Call(ctx, "N", nil)
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrDaemonUnreachable) {
		t.Fatalf("no answer by the deadline: %v", err)
	}
	gone := New(socketPath(t), WithHTTP())
	defer gone.Close()
	if _, err := gone.Call(context.Background(), "N", nil); !errors.Is(err, ErrDaemonUnreachable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("no daemon: %v", err)
	}
}
