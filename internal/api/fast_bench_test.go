package api

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// benchServe runs a server whose channel answers at once: what is measured
// is the local path alone.
func benchServe(b *testing.B, opts ...client.Option) *client.Client {
	b.Helper()
	dir := b.TempDir()
	cfg := ServerConfig{Socket: filepath.Join(dir, "s"), SocketMode: 0o600, DefaultTimeout: time.Second, MaxTimeout: 2 * time.Second,
		MaxPayload: 1 << 20, SlowThreshold: time.Second}
	srv, err := Listen(cfg, echoChannel())
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	c := client.New(cfg.Socket, opts...)
	b.Cleanup(func() {
		c.Close()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	return c
}

func benchCalls(b *testing.B, c *client.Client, callers int) {
	payload := []byte("12345678")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
	var wg sync.WaitGroup
	per := b.N/callers + 1
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if _, err := c.Call(ctx, "N", payload); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// cpuTime is this process's CPU time (client and server together).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkLocalFast1(b *testing.B) { benchCalls(b, benchServe(b), 1) }
func BenchmarkLocalFast8(b *testing.B) { benchCalls(b, benchServe(b), 8) }
func BenchmarkLocalHTTP1(b *testing.B) { benchCalls(b, benchServe(b, client.WithHTTP()), 1) }
func BenchmarkLocalHTTP8(b *testing.B) {
	benchCalls(b, benchServe(b, client.WithHTTP(), client.WithPoolSize(8)), 8)
}
