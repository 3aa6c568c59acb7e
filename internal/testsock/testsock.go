// Package testsock serves a Unix socket for a test: the fake peers of the
// local API's unit tests (the Go client, the call commands) share its
// accept loop.
package testsock

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Serve listens on a new socket in a directory of its own (short enough for
// a socket's path) and serves each connection with serve, in a goroutine of
// its own, closing the connection after it. At the test's end it stops
// listening, waits for every serve to return and removes the directory.
func Serve(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
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
