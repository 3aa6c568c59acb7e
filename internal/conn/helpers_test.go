package conn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/conn/conntest"
)

// Ops the tests register on the fake primary.
const (
	opEcho  uint16 = 0x0100 // answers with its payload
	opBlock uint16 = 0x0101 // see the test
)

// echo answers with the request's payload.
func echo(c *conntest.Conn, req conntest.Request) bool { return c.Reply(req, req.Payload) }

// recorder is an Observer that keeps what tests look at.
type recorder struct {
	nopObserver
	mu       sync.Mutex
	ended    []error
	finished func(op uint16, err error)
}

func (r *recorder) SessionEnded(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = append(r.ended, err)
}

func (r *recorder) CallFinished(op uint16, _ time.Duration, err error) {
	if r.finished != nil {
		r.finished(op, err)
	}
}

func (r *recorder) reasons() []DisconnectReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DisconnectReason
	for _, e := range r.ended {
		out = append(out, ReasonOf(e))
	}
	return out
}

// fastConfig is a supervisor config for the fake primary with short times.
func fastConfig(p *conntest.Primary) SupervisorConfig {
	return SupervisorConfig{
		Dial: func(ctx context.Context, connected func()) (*Session, error) {
			return Dial(ctx, DialOptions{Config: p.Config(), ClientName: "test", OnConnected: connected})
		},
		HeartbeatInterval: time.Minute, ReplyTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, CloseTimeout: time.Second,
	}
}

// run starts a supervisor and stops it at the end of the test.
func run(t *testing.T, cfg SupervisorConfig) *Supervisor {
	t.Helper()
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return sup
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitReady(t *testing.T, sup *Supervisor) {
	t.Helper()
	waitFor(t, "a ready session", func() bool { return sup.State() == StateReady })
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// errRefusedDial is the error a dial to a primary that is down gives.
var errRefusedDial = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

// dialFailingFirst dials p after its first failures attempts fail with
// errRefusedDial; attempts counts every attempt.
func dialFailingFirst(p *conntest.Primary, failures int32) (dial func(context.Context, func()) (*Session, error), attempts *atomic.Int32) {
	attempts = new(atomic.Int32)
	return func(ctx context.Context, connected func()) (*Session, error) {
		if attempts.Add(1) <= failures {
			return nil, errRefusedDial
		}
		return Dial(ctx, DialOptions{Config: p.Config(), ClientName: "test", OnConnected: connected})
	}, attempts
}
