package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// A backend terminated while the channel is idle: the next request, a
// write that is not idempotent, was never seen by the primary, so it goes
// to the next session and runs exactly once, instead of failing with an
// unknown outcome.
// claim: liveness.not-sent
func TestTerminatedWhileIdleRequestNotSent(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := d.client()
	for i := 0; i < 3; i++ {
		before, err := strconv.Atoi(primarySQL(t, "SELECT n FROM e2e.counter WHERE id = 1"))
		if err != nil {
			t.Fatal(err)
		}
		pid := strconv.Itoa(int(d.status(ctx).ChannelBackendID))
		primarySQL(t, "SELECT pg_terminate_backend("+pid+")")
		if !d.poll(10*time.Second, func() bool {
			return primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
		}) {
			t.Fatal("the terminated backend did not go away")
		}
		out, err := c.Call(ctx, "bump", nil)
		if err != nil {
			t.Fatalf("round %d: a write after the backend was terminated while idle: %v; want it run on the next session", i, err)
		}
		if got := string(out); got != strconv.Itoa(before+1) {
			t.Fatalf("round %d: bump returned %s, want %d (exactly once)", i, got, before+1)
		}
		d.waitReady(30 * time.Second)
	}
}
