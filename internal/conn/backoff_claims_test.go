package conn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Every delay lies in the upper half of the current range, [cur/2, cur]:
// never near zero once the range has grown.
// claim: liveness.backoff-upper-half
func TestBackoffDrawsFromTheUpperHalf(t *testing.T) {
	for run := 0; run < 200; run++ {
		b := newBackoff(100*time.Millisecond, 30*time.Second)
		ceil := 100 * time.Millisecond
		for i := 0; i < 12; i++ {
			d := b.next()
			if d < ceil/2 || d > ceil {
				t.Fatalf("step %d: %s outside the upper half [%s, %s]", i, d, ceil/2, ceil)
			}
			ceil = min(ceil*2, 30*time.Second)
		}
	}
}

// Failed attempts never reset the backoff: the gaps between attempts keep
// growing while no session says hello.
// claim: liveness.backoff-not-reset-by-failures
func TestFailedAttemptsDoNotResetTheBackoff(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	sup, err := NewSupervisor(SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			return nil, errors.New("hello: connection reset by peer")
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(at)
		mu.Unlock()
		if n >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(at) < 8 {
		t.Fatalf("only %d attempts", len(at))
	}
	// The 7th delay's range is 640ms (10ms doubled six times): at least
	// its lower half, 320ms. A reset after each failure would keep it 10ms.
	if gap := at[7].Sub(at[6]); gap < 320*time.Millisecond {
		t.Fatalf("the 7th delay was %s: the backoff was reset by a failed attempt", gap)
	}
}
