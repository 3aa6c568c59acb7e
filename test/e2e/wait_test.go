package e2e

import (
	"strconv"
	"testing"
	"time"
)

// waitFor polls cond until it holds, and fails the test naming what it waited
// for when timeout passes first: tests wait on conditions, never on sleeps.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitWaitEvent waits until the primary backend pid waits on event (for
// example PgSleep: a handler is inside pg_sleep).
func waitWaitEvent(t *testing.T, pid uint32, event string) {
	t.Helper()
	q := "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = " + strconv.Itoa(int(pid))
	waitFor(t, 10*time.Second, "backend "+strconv.Itoa(int(pid))+" to wait on "+event, func() bool {
		return primarySQL(t, q) == event
	})
}
