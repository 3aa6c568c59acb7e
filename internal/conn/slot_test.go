package conn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	started := &startCounter{}
	cfg.Observer = started
	var closed atomic.Int32
	p.OnCopyDone(func() { closed.Add(1) })
	sup := run(t, cfg)
	<-entered
	sup.Restart() // a reload lands while the attempt is under way
	close(release)
	waitFor(t, "a second attempt with the new settings", func() bool { return dials.Load() == 2 })
	waitReady(t, sup)
	// The session the first attempt opened was closed (with CopyDone)
	// without serving: one session started, the second.
	if n := started.n.Load(); n != 1 {
		t.Fatalf("%d sessions started, want 1: the first attempt's session served", n)
	}
	if n := closed.Load(); n != 1 || p.Accepted() != 2 {
		t.Fatalf("%d sessions closed with CopyDone of %d accepted, want the first one closed", n, p.Accepted())
	}
}

// startCounter counts the sessions that started serving.
type startCounter struct {
	nopObserver
	n atomic.Int32
}

func (c *startCounter) SessionStarted(SessionInfo) { c.n.Add(1) }

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

// Under steady traffic the heartbeat still runs on its interval: requests
// do not postpone it. With back-to-back requests and a 30ms interval, ten
// pings come with no gap between two of them anywhere near a second (a
// heartbeat postponed by each request would never come).
// claim: liveness.heartbeat-under-traffic
func TestHeartbeatUnderSteadyTraffic(t *testing.T) {
	for _, v := range []uint16{protocol.Version1, protocol.Version2} {
		t.Run(fmt.Sprintf("version%d", v), func(t *testing.T) {
			p := conntest.Start(t)
			p.SetMaxVersion(v)
			p.Handle(opEcho, echo)
			var mu sync.Mutex
			var pings []time.Time
			p.Handle(protocol.OpPing, func(c *conntest.Conn, req conntest.Request) bool {
				mu.Lock()
				pings = append(pings, time.Now())
				mu.Unlock()
				return c.Reply(req, conntest.AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), Timeline: 1}))
			})
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(pings) }
			cfg := fastConfig(p)
			cfg.HeartbeatInterval = 30 * time.Millisecond
			sup := run(t, cfg)
			waitReady(t, sup)
			// Requests back to back, each gap far shorter than the interval.
			first := count()
			deadline := time.Now().Add(10 * time.Second)
			for count() < first+10 {
				if time.Now().After(deadline) {
					t.Fatalf("%d pings under steady traffic in 10s, want 10", count()-first)
				}
				if _, err := sup.Call(ctx5(t), opEcho, nil); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for i := first + 1; i < len(pings); i++ {
				// 30ms configured; a loaded machine may stretch one, not to a second.
				if gap := pings[i].Sub(pings[i-1]); gap > time.Second {
					t.Fatalf("%s between two pings under traffic, heartbeat interval 30ms", gap)
				}
			}
		})
	}
}

// While a session closes to reconnect with new settings, the slot says
// stopping and is not ready: it no longer serves.
// claim: liveness.stopping-not-serving
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
	if st.State == StateReady || st.Sessions[0].State != StateStopping {
		t.Fatalf("state %s (slot %s) during the restart's close, want not ready (slot stopping)", st.State, st.Sessions[0].State)
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
