package e2e

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/protocol"
)

// SIGTERM with a request in flight and calls waiting: the request in flight
// gets its reply, the waiting calls get shutting_down, the daemon exits 0.
// claim: liveness.shutdown-in-flight-and-waiting
func TestShutdownAnswersInFlightAndWaitingCalls(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	// One request in flight, so that the next calls wait.
	d := startDaemon(t, "  max_in_flight: 1\n")
	d.waitReady(30 * time.Second)

	type result struct {
		out []byte
		err error
	}
	var wg sync.WaitGroup
	call := func(op string, payload []byte, res *result) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(d.socket)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res.out, res.err = c.Call(ctx, op, payload)
		}()
	}
	var inFlight result
	waiting := make([]result, 2)
	call("nap", []byte("1"), &inFlight) // well inside the 2s reply timeout
	waitFor(t, 10*time.Second, "the nap in flight", func() bool {
		n, _ := d.metric("standbyd_requests_in_flight")
		return n == 1
	})
	for i := range waiting {
		call("N", protocol.AppendN(nil, [3]int32{1, 2, 3}), &waiting[i])
	}
	waitFor(t, 10*time.Second, "two calls waiting", func() bool {
		n, _ := d.metric("standbyd_calls_waiting")
		return n == 2
	})
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if inFlight.err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", inFlight.err)
	}
	for i, w := range waiting {
		var ae *client.Error
		if !errors.As(w.err, &ae) || ae.Kind != client.KindShuttingDown {
			t.Errorf("waiting call %d: want shutting_down, got %v (reply %q)", i, w.err, w.out)
		}
	}
	select {
	case err := <-d.done:
		d.exited, d.exitErr = true, err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("standbyd did not exit within 20s of SIGTERM")
	}
}
