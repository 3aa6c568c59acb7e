package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// slowCounter counts Observer.SlowRequest (standbyd_slow_requests_total).
type slowCounter struct {
	nopObserver
	mu   sync.Mutex
	slow map[uint16]int
}

func (o *slowCounter) SlowRequest(op uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.slow == nil {
		o.slow = map[uint16]int{}
	}
	o.slow[op]++
}

func (o *slowCounter) count(op uint16) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.slow[op]
}

// A request unanswered after slow_threshold (by default half the reply
// timeout) is logged as "request slow" and counted, and goes on waiting
// for its reply; a prompt one is neither. Both protocol versions: a
// version-2 session times its requests in the pipeline.
// claim: liveness.request-slow
func TestRequestSlowAtHalfTheReplyTimeout(t *testing.T) {
	for _, v := range []uint16{protocol.Version1, protocol.Version2} {
		t.Run(fmt.Sprintf("version%d", v), func(t *testing.T) {
			p := conntest.Start(t)
			p.SetMaxVersion(v)
			p.Handle(opEcho, echo)
			release := make(chan struct{})
			p.Handle(opBlock, func(c *conntest.Conn, req conntest.Request) bool {
				<-release
				return c.Reply(req, []byte("late but in time"))
			})
			core, logs := observer.New(zapcore.WarnLevel)
			obs := &slowCounter{}
			cfg := fastConfig(p) // reply timeout 2s, slow_threshold unset
			cfg.Logger = zap.New(core)
			cfg.Observer = obs
			sup := run(t, cfg)
			if sup.cfg.SlowThreshold != time.Second {
				t.Fatalf("slow threshold %s, want half the 2s reply timeout", sup.cfg.SlowThreshold)
			}
			waitReady(t, sup)
			if _, err := sup.Call(ctx5(t), opEcho, nil); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { _, err := sup.Call(ctx5(t), opBlock, nil); errc <- err }()
			waitFor(t, "request slow", func() bool { return logs.FilterMessage("request slow").Len() > 0 })
			close(release)
			if err := <-errc; err != nil {
				t.Fatalf("the slow request: %v, want its reply", err)
			}
			slow := logs.FilterMessage("request slow").All()
			m := slow[0].ContextMap()
			if len(slow) != 1 || m["op"] != protocol.OpName(opBlock) ||
				m["reply_timeout"] != 2*time.Second || m["waiting"].(time.Duration) < time.Second {
				t.Fatalf("request slow logged %d times, first %v", len(slow), m)
			}
			if obs.count(opBlock) != 1 || obs.count(opEcho) != 0 {
				t.Fatalf("slow requests counted: %v", obs.slow)
			}
		})
	}
}

// During an outage, identical connect failures are logged in full once
// (warn), then at debug level only, and summarised at warn with
// similar_failures_not_logged and failing_since once the summary interval
// passed; a different error is logged at once. When the channel is back,
// "channel back after failed attempts" gives the attempts and how long.
// claim: liveness.failures-summarised
// claim: liveness.channel-back-line
func TestFailuresSummarisedInTheLog(t *testing.T) {
	p := conntest.Start(t)
	core, logs := observer.New(zapcore.DebugLevel)
	var attempts atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	cfg := fastConfig(p)
	cfg.Logger = zap.New(core)
	refused := errRefusedDial
	cfg.Dial = func(ctx context.Context, connected func()) (*Session, error) {
		n := attempts.Add(1)
		switch {
		case !failing.Load():
			return Dial(ctx, DialOptions{Config: p.Config(), ClientName: "test", OnConnected: connected})
		case n == 6:
			return nil, errors.New("the database system is starting up")
		}
		return nil, refused
	}
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runSup(t, sup)
	waitFor(t, "ten failed attempts", func() bool { return attempts.Load() >= 10 })
	failing.Store(false)
	waitReady(t, sup)

	// Attempt 1 (the first), 6 (another error, with the four refusals
	// left out since) and 7 (refused again: another error) at warn; the
	// other refusals at debug only. The test is far shorter than the minute
	// between summaries of a run of one error (TestFailureLogSummarisesRepeats).
	var warn []map[string]any
	debug := 0
	for _, e := range logs.FilterMessage("channel connect failed").All() {
		m := e.ContextMap()
		if m["class"] != string(ClassTransient) {
			t.Errorf("connect failure logged with class %v", m["class"])
		}
		switch e.Level {
		case zapcore.WarnLevel:
			warn = append(warn, m)
		case zapcore.DebugLevel:
			debug++
		}
	}
	if len(warn) != 3 || debug < 7 {
		t.Fatalf("%d warn and %d debug lines, want 3 warn (the first, two changes of error) and the rest debug:\n%v",
			len(warn), debug, warn)
	}
	if _, ok := warn[0]["similar_failures_not_logged"]; ok {
		t.Fatalf("first failure with a count of failures left out: %v", warn[0])
	}
	// failing_since is the run's first failure: before the second attempt.
	all := logs.FilterMessage("channel connect failed").All()
	since, _ := warn[1]["failing_since"].(time.Time)
	if warn[1]["error"] != "the database system is starting up" || warn[1]["similar_failures_not_logged"] != int64(4) ||
		since.Before(start) || since.After(all[1].Time) {
		t.Fatalf("the change of error logged as %v, want 4 similar failures not logged, failing since the first (%v)", warn[1], all[0].Time)
	}
	back := logs.FilterMessage("channel back after failed attempts").All()
	if len(back) != 1 {
		t.Fatalf("%d \"channel back\" lines, want 1", len(back))
	}
	m := back[0].ContextMap()
	if n := int32(m["failed_attempts"].(int64)); n != attempts.Load()-1 {
		t.Fatalf("failed_attempts %d, want %d (every attempt but the last)", n, attempts.Load()-1)
	}
	if _, ok := m["failing_for"].(time.Duration); !ok {
		t.Fatalf("channel back line without failing_for: %v", m)
	}
}

// A single failed attempt (a blip) gives no "channel back" line: the
// connect failure said it all.
// claim: liveness.channel-back-line
func TestNoChannelBackLineAfterOneFailure(t *testing.T) {
	p := conntest.Start(t)
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := fastConfig(p)
	cfg.Logger = zap.New(core)
	var attempts *atomic.Int32
	cfg.Dial, attempts = dialFailingFirst(p, 1)
	sup := run(t, cfg)
	waitReady(t, sup)
	if n := logs.FilterMessage("channel back after failed attempts").Len(); n != 0 || attempts.Load() != 2 {
		t.Fatalf("%d \"channel back\" lines after %d attempts, want none after one failure", n, attempts.Load())
	}
}
