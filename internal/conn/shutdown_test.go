package conn

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// startRun runs sup until the returned stop is called; stop returns how
// long Run took to return after the cancel (the test fails past limit).
func startRun(t *testing.T, sup *Supervisor, limit time.Duration) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(ctx) }()
	stopped := false
	stop = func() time.Duration {
		stopped = true
		start := time.Now()
		cancel()
		select {
		case <-done:
			return time.Since(start)
		case <-time.After(limit):
			t.Fatalf("Run did not return within %s of the stop", limit)
			return 0
		}
	}
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	return stop
}

// A primary that never answers the CopyDone: the close waits close_timeout,
// then the supervisor stops all the same and says the close failed.
// claim: liveness.shutdown-copydone
func TestShutdownCloseWaitsAtMostCloseTimeout(t *testing.T) {
	p := conntest.Start(t)
	hold := make(chan struct{})
	defer close(hold)
	p.OnCopyDone(func() { <-hold }) // no answer to CopyDone while the test runs
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := fastConfig(p)
	cfg.CloseTimeout = 300 * time.Millisecond
	cfg.Logger = zap.New(core)
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, sup, 10*time.Second)
	waitReady(t, sup)
	took := stop()
	if took < cfg.CloseTimeout {
		t.Fatalf("stopped %s after the cancel, before close_timeout (%s): the close did not wait", took, cfg.CloseTimeout)
	}
	if logs.FilterMessage("closing the channel").Len() != 1 || logs.FilterMessage("channel closed").Len() != 0 {
		t.Fatalf("a close the primary never answered was not logged as failed: %v", logs.All())
	}
}

// At shutdown a request in flight that gets no reply ends at its reply
// timeout (outcome unknown), not at once and not never.
// claim: liveness.shutdown-in-flight-and-waiting
func TestShutdownRequestInFlightEndsAtItsReplyTimeout(t *testing.T) {
	for _, v := range []uint16{protocol.Version1, protocol.Version2} {
		t.Run(fmt.Sprintf("version%d", v), func(t *testing.T) {
			p := conntest.Start(t)
			p.SetMaxVersion(v)
			got := make(chan struct{})
			hold := make(chan struct{})
			defer close(hold)
			p.Handle(opBlock, func(c *conntest.Conn, req conntest.Request) bool {
				close(got)
				<-hold
				return false
			})
			cfg := fastConfig(p)
			cfg.ReplyTimeout = 500 * time.Millisecond
			cfg.CloseTimeout = 100 * time.Millisecond
			sup, err := NewSupervisor(cfg)
			if err != nil {
				t.Fatal(err)
			}
			stop := startRun(t, sup, 10*time.Second)
			waitReady(t, sup)
			errc := make(chan error, 1)
			start := time.Now()
			go func() { _, err := sup.Call(ctx5(t), opBlock, nil); errc <- err }()
			<-got
			stop()
			err = <-errc
			wantUnknown(t, err)
			if took := time.Since(start); took < cfg.ReplyTimeout {
				t.Fatalf("the request in flight ended after %s, before its reply timeout (%s): %v", took, cfg.ReplyTimeout, err)
			}
		})
	}
}

// A connection attempt under way (here one that would hang for a minute)
// does not hold the stop up: the daemon stops at once.
// claim: liveness.shutdown-during-backoff
func TestShutdownDuringConnect(t *testing.T) {
	dialing := make(chan struct{})
	sup, err := NewSupervisor(SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			close(dialing)
			<-ctx.Done()
			return nil, ctx.Err()
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Minute,
		BackoffMin: time.Minute, BackoffMax: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, sup, 10*time.Second) // far below connect_timeout
	<-dialing
	stop()
}
