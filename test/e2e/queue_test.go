package e2e

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// Calls waiting for the session are served in arrival order: each bump
// (a counter the handler increments) arrives while the session is held by
// a nap and the ones before it wait; the values come back in that order.
// claim: api.arrival-order
func TestWaitingCallsServedInArrivalOrder(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	// One request in flight: the others wait, in the order they came.
	d := startDaemon(t, "  max_in_flight: 1\n")
	d.waitReady(30 * time.Second)

	var wg sync.WaitGroup
	call := func(op string, payload []byte, out *string, err *error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(d.socket)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, e := c.Call(ctx, op, payload)
			*out, *err = string(b), e
		}()
	}
	var napOut string
	var napErr error
	call("nap", []byte("1"), &napOut, &napErr)
	waitFor(t, 10*time.Second, "the nap in flight", func() bool {
		n, _ := d.metric("standbyd_requests_in_flight")
		return n == 1
	})
	const n = 5
	outs, errs := make([]string, n), make([]error, n)
	for i := 0; i < n; i++ {
		call("bump", nil, &outs[i], &errs[i])
		waitFor(t, 10*time.Second, strconv.Itoa(i+1)+" calls waiting", func() bool {
			w, _ := d.metric("standbyd_calls_waiting")
			return w == float64(i+1)
		})
	}
	wg.Wait()
	if napErr != nil {
		t.Fatalf("nap: %v", napErr)
	}
	prev := int64(-1)
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("bump %d: %v", i, errs[i])
		}
		v, err := strconv.ParseInt(outs[i], 10, 64)
		if err != nil {
			t.Fatalf("bump %d replied %q", i, outs[i])
		}
		if v <= prev {
			t.Fatalf("bump %d (arrived %d-th) got %d after %d: not served in arrival order %v", i, i+1, v, prev, outs)
		}
		prev = v
	}
}
