package conn

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/conn/conntest"
)

// A primary that comes back is served by the next attempt, and the session's
// hello resets the backoff: the delay after that session ends is drawn from
// the minimum's range again, not from where the failed attempts had left it.
// claim: liveness.backoff-reset-after-hello
// claim: liveness.back-at-next-attempt
func TestBackoffResetOnlyAfterHello(t *testing.T) {
	const failures = 7
	p := conntest.Start(t)
	dial, attempts := dialFailingFirst(p, failures)
	core, logs := observer.New(zapcore.DebugLevel)
	min := 10 * time.Millisecond
	sup := run(t, SupervisorConfig{
		Dial: dial,
		// The heartbeat finds the killed session without a call.
		HeartbeatInterval: 20 * time.Millisecond, ReplyTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second,
		BackoffMin: min, BackoffMax: 10 * time.Second, CloseTimeout: time.Second,
		Logger: zap.New(core),
	})
	waitFor(t, "a ready session", func() bool { return sup.State() == StateReady })
	if n := attempts.Load(); n != failures+1 {
		t.Fatalf("ready after %d attempts, want %d: the first attempt after the primary came back", n, failures+1)
	}
	retryIn := func(msg string) []time.Duration {
		var out []time.Duration
		for _, e := range logs.FilterMessage(msg).All() {
			out = append(out, e.ContextMap()["retry_in"].(time.Duration))
		}
		return out
	}
	failed := retryIn("channel connect failed")
	if len(failed) != failures {
		t.Fatalf("%d connect failures logged, want %d", len(failed), failures)
	}
	// The 7th delay's range is min doubled six times: at least its half.
	if last := failed[failures-1]; last < min<<5 {
		t.Fatalf("the last delay before hello was %s, want >= %s: the failures did not grow it", last, min<<5)
	}
	p.KillAll() // the session ends after its hello
	waitFor(t, "the session lost", func() bool { return len(retryIn("channel lost")) == 1 })
	if d := retryIn("channel lost")[0]; d > min {
		t.Fatalf("the delay after a session that said hello was %s, want <= backoff_min %s", d, min)
	}
	waitReady(t, sup)
}
