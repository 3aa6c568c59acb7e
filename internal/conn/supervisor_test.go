package conn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// claim: liveness.backoff-floor
// claim: liveness.wait-then-unavailable
func TestSupervisorWithoutPrimary(t *testing.T) {
	var attempts atomic.Int32
	sup, err := NewSupervisor(SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			attempts.Add(1)
			return nil, errors.New("connection refused")
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(ctx) }()

	cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer ccancel()
	_, err = sup.Call(cctx, 'N', nil)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want ErrUnavailable with the cause, got %v", err)
	}
	if st := sup.Status(); st.State == StateReady || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	// Backoff has a floor: a few attempts in 300ms, not a hot loop.
	if n := attempts.Load(); n < 2 || n > 20 {
		t.Fatalf("%d connection attempts in 300ms", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if sup.State() != StateStopped {
		t.Fatalf("state %s after Run returned", sup.State())
	}
	if _, err := sup.Call(context.Background(), 'N', nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("call after stop: %v", err)
	}
}
