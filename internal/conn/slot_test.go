package conn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// claim: liveness.reload-during-attempt
func TestRestartDuringConnectAttempt(t *testing.T) {
	p := conntest.Start(t)
	var dials atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	cfg := fastConfig(p)
	cfg.Dial = func(ctx context.Context, connected func()) (*Session, error) {
		if dials.Add(1) == 1 {
			close(entered)
			<-release // the first attempt is slow
		}
		return Dial(ctx, DialOptions{Config: p.Config(), OnConnected: connected})
	}
	sup := run(t, cfg)
	<-entered
	sup.Restart() // a reload lands while the attempt is under way
	close(release)
	waitFor(t, "a second attempt with the new settings", func() bool { return dials.Load() == 2 })
	waitReady(t, sup)
}

// claim: liveness.reload-ends-backoff-wait
func TestRestartDuringBackoffWait(t *testing.T) {
	var dials atomic.Int32
	sup := run(t, SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			dials.Add(1)
			return nil, &ConfigError{Err: errors.New("password authentication failed")}
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		// A configuration error waits near backoff_max: a minute here.
		BackoffMin: time.Second, BackoffMax: time.Minute,
	})
	waitFor(t, "backing off", func() bool { return sup.State() == StateBackingOff })
	sup.Restart()
	waitFor(t, "an attempt at once after the restart", func() bool { return dials.Load() == 2 })
}

// claim: liveness.heartbeat-under-traffic
func TestHeartbeatUnderSteadyTraffic(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	cfg := fastConfig(p)
	cfg.HeartbeatInterval = 30 * time.Millisecond
	sup := run(t, cfg)
	waitReady(t, sup)
	// Requests back to back, each gap far shorter than the interval.
	deadline := time.Now().Add(5 * time.Second)
	for p.Received(protocol.OpPing) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pings under steady traffic in 5s, want 3", p.Received(protocol.OpPing))
		}
		if _, err := sup.Call(ctx5(t), opEcho, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestartCloseIsNotReady(t *testing.T) {
	p := conntest.Start(t)
	closing := make(chan struct{})
	release := make(chan struct{})
	var once atomic.Bool
	p.OnCopyDone(func() {
		if once.CompareAndSwap(false, true) {
			close(closing)
			<-release
		}
	})
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	sup.Restart()
	<-closing // the polite close is under way
	st := sup.Status()
	close(release)
	if st.State == StateReady || st.Sessions[0].State == StateReady {
		t.Fatalf("state %s (slot %s) during the restart's close, want not ready", st.State, st.Sessions[0].State)
	}
	waitReady(t, sup)
}

// claim: liveness.watchdog
func TestAliveNeedsEverySlot(t *testing.T) {
	p := conntest.Start(t)
	release := make(chan struct{})
	defer close(release)
	var n atomic.Int32
	cfg := fastConfig(p)
	cfg.Sessions = 2
	cfg.Dial = func(ctx context.Context, connected func()) (*Session, error) {
		if n.Add(1) == 1 {
			<-release // this slot is stuck
			return nil, errors.New("released")
		}
		return Dial(ctx, DialOptions{Config: p.Config(), OnConnected: connected})
	}
	cfg.HeartbeatInterval = 10 * time.Millisecond
	sup := run(t, cfg)
	waitReady(t, sup)
	waitFor(t, "the watchdog to see the stuck slot", func() bool { return !sup.Alive(200 * time.Millisecond) })
}

// claim: liveness.watchdog
func TestAliveDuringLongBackoff(t *testing.T) {
	sup := run(t, SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			return nil, &ConfigError{Err: errors.New("no pg_hba.conf entry")}
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		BackoffMin: time.Minute, BackoffMax: time.Minute,
	})
	waitFor(t, "backing off", func() bool { return sup.State() == StateBackingOff })
	// Watch past the first beat gap: the sleeping loop is seen alive all along.
	for end := time.Now().Add(maxBeatGap + 500*time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !sup.Alive(maxBeatGap + 300*time.Millisecond) {
			t.Fatal("a slot waiting in backoff starved the watchdog")
		}
	}
}

// claim: liveness.statement-timeout-lowered
func TestStatementTimeoutSetBeforeEntering(t *testing.T) {
	p := conntest.Start(t)
	ctx := ctx5(t)
	s, err := Dial(ctx, DialOptions{Config: p.Config(), StatementTimeout: StatementTimeoutFor(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	q := p.Conns()[0].Queries()
	if len(q) != 2 || !strings.Contains(q[0], "set_config('statement_timeout', '1600'") || !strings.HasPrefix(q[1], "CALL ") {
		t.Fatalf("queries before the channel: %q", q)
	}
}

// claim: liveness.statement-timeout-lowered
func TestStatementTimeoutFor(t *testing.T) {
	for _, c := range []struct{ reply, want time.Duration }{
		{5 * time.Second, 4 * time.Second},
		{2 * time.Second, 1600 * time.Millisecond},
		{time.Second, 750 * time.Millisecond},
		{400 * time.Millisecond, 200 * time.Millisecond},
	} {
		if got := StatementTimeoutFor(c.reply); got != c.want || got >= c.reply {
			t.Errorf("StatementTimeoutFor(%s) = %s, want %s", c.reply, got, c.want)
		}
	}
}
