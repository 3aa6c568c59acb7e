package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
)

// fakeSystemd is a NOTIFY_SOCKET: the datagrams sd_notify sends arrive on
// msgs, one string each.
func fakeSystemd(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return msgs
}

// refusedSupervisor never gets a session: its Dial is refused.
func refusedSupervisor(t *testing.T) *conn.Supervisor {
	t.Helper()
	sup, err := conn.NewSupervisor(conn.SupervisorConfig{
		Dial: func(context.Context, func()) (*conn.Session, error) {
			return nil, errors.New("connection refused")
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sup
}

// next waits for a datagram that satisfies ok, and returns it.
func next(t *testing.T, msgs <-chan string, what string, ok func(string) bool) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if ok(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s from notifySystemd", what)
		}
	}
}

// Under systemd: a STATUS line that names the state and the last error, a
// WATCHDOG=1 while the supervisor's loops go round, STATUS=stopping at the
// end.
// claim: liveness.watchdog
func TestNotifySystemdStatusAndWatchdog(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the socket closed
	msgs := fakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	cancel, wait := runSupervisorAndNotify(t)

	if m := next(t, msgs, "first line", func(string) bool { return true }); m != "STATUS=starting" {
		t.Fatalf("first message %q", m)
	}
	next(t, msgs, "STATUS with the error", func(m string) bool {
		return strings.HasPrefix(m, "STATUS=channel ") && strings.Contains(m, "0 of 1 sessions ready: connection refused")
	})
	next(t, msgs, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	// Every half period (100ms here, shorter than 2s): a second holds
	// about ten; three is far from both that and the one a 2s tick sends.
	start := time.Now()
	for i := 0; i < 3; i++ {
		next(t, msgs, "WATCHDOG=1 every half period", func(m string) bool { return m == "WATCHDOG=1" })
	}
	if took := time.Since(start); took >= 2*time.Second {
		t.Fatalf("three WATCHDOG=1 took %s with a 200ms watchdog period", took)
	}
	cancel()
	next(t, msgs, "STATUS=stopping", func(m string) bool { return m == "STATUS=stopping" })
	wait()
}

// With a long watchdog period (10s) WATCHDOG=1 comes every 2 seconds, not
// every half period (5s).
// claim: liveness.watchdog
func TestNotifySystemdWatchdogAtMostTwoSecondsApart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the socket closed
	msgs := fakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "10000000")
	cancel, wait := runSupervisorAndNotify(t)
	next(t, msgs, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	start := time.Now()
	next(t, msgs, "a second WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	// 2s expected; 4.5s leaves room for a loaded machine and stays below 5s.
	if gap := time.Since(start); gap > 4500*time.Millisecond {
		t.Fatalf("WATCHDOG=1 %s apart with a 10s period, want 2s", gap)
	}
	cancel()
	wait()
}

// runSupervisorAndNotify runs a supervisor whose primary refuses, and
// notifySystemd for it, until cancel; wait returns when both have.
func runSupervisorAndNotify(t *testing.T) (cancel func(), wait func()) {
	t.Helper()
	sup := refusedSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	supDone, notifyDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(supDone); sup.Run(ctx) }()
	go func() { defer close(notifyDone); notifySystemd(ctx, sup, config.ChannelConfig{}, zap.NewNop()) }()
	return cancel, func() { <-notifyDone; <-supDone }
}

// A supervisor whose loops do not go round gets no WATCHDOG=1, so that
// systemd restarts the daemon.
func TestNotifySystemdWithholdsTheWatchdogFromAStuckSupervisor(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the socket closed
	msgs := fakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 50ms ticks
	sup := refusedSupervisor(t)         // never Run: its loops never beat
	// A new supervisor counts as alive for one period (its loops are
	// starting); wait that out.
	for sup.Alive(100 * time.Millisecond) {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	notifyDone := make(chan struct{})
	go func() { defer close(notifyDone); notifySystemd(ctx, sup, config.ChannelConfig{}, zap.NewNop()) }()
	next(t, msgs, "a STATUS line", func(m string) bool { return strings.HasPrefix(m, "STATUS=channel ") })
	// The window for something that must not happen: ten ticks.
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-notifyDone
	giveUp := time.After(time.Second)
	for {
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				t.Fatal("WATCHDOG=1 sent for a supervisor whose loops do not run")
			}
			if m == "STATUS=stopping" {
				return
			}
		case <-giveUp:
			t.Fatal("no STATUS=stopping")
		}
	}
}

// Outside systemd notifySystemd returns at once.
func TestNotifySystemdOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	done := make(chan struct{})
	go func() {
		defer close(done)
		notifySystemd(context.Background(), refusedSupervisor(t), config.ChannelConfig{}, zap.NewNop())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("notifySystemd did not return without NOTIFY_SOCKET")
	}
}

// claim: liveness.watchdog-period-checked
func TestWatchdogProblem(t *testing.T) {
	ch := config.ChannelConfig{ConnectTimeout: 10 * time.Second, ReplyTimeout: 5 * time.Second,
		CloseTimeout: 2 * time.Second, HeartbeatInterval: 2 * time.Second, BackoffMax: 30 * time.Second}
	if p := watchdogProblem(10*time.Second, ch); !strings.Contains(p, "WatchdogSec=10s") || !strings.Contains(p, "20s or more") {
		t.Fatalf("a watchdog as short as connect_timeout: %q", p)
	}
	if p := watchdogProblem(30*time.Second, ch); p != "" {
		t.Fatalf("a watchdog well above every step was refused: %q", p)
	}
	if p := watchdogProblem(0, ch); p != "" {
		t.Fatalf("no watchdog: %q", p)
	}
	// The boundary: the longest step here is connect_timeout, 10s; the
	// period must exceed it by half.
	if p := watchdogProblem(15*time.Second, ch); p == "" {
		t.Fatal("a watchdog of exactly 1.5 times the longest step was accepted")
	}
	if p := watchdogProblem(15*time.Second+time.Millisecond, ch); p != "" {
		t.Fatalf("a watchdog just above 1.5 times the longest step was refused: %q", p)
	}
	// Each step counts: reply_timeout, close_timeout, heartbeat_interval.
	for _, c := range []config.ChannelConfig{
		{ConnectTimeout: time.Second, ReplyTimeout: 10 * time.Second, CloseTimeout: time.Second, HeartbeatInterval: time.Second},
		{ConnectTimeout: time.Second, ReplyTimeout: time.Second, CloseTimeout: 10 * time.Second, HeartbeatInterval: time.Second},
		{ConnectTimeout: time.Second, ReplyTimeout: time.Second, CloseTimeout: time.Second, HeartbeatInterval: 10 * time.Second},
	} {
		if watchdogProblem(15*time.Second, c) == "" || watchdogProblem(16*time.Second, c) != "" {
			t.Errorf("%+v: the longest step (10s) not the one checked", c)
		}
	}
}

// At start, under systemd, a watchdog period too short for the channel's
// steps is logged as an error.
// claim: liveness.watchdog-period-checked
func TestNotifySystemdLogsAShortWatchdog(t *testing.T) {
	msgs := fakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "10000000") // 10s, connect_timeout 10s
	core, logs := observer.New(zapcore.ErrorLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		notifySystemd(ctx, refusedSupervisor(t), config.ChannelConfig{ConnectTimeout: 10 * time.Second}, zap.New(core))
	}()
	next(t, msgs, "a STATUS line", func(m string) bool { return strings.HasPrefix(m, "STATUS=channel ") })
	cancel()
	<-done
	got := logs.FilterMessage("systemd watchdog").All()
	if len(got) != 1 || !strings.Contains(got[0].ContextMap()["problem"].(string), "WatchdogSec=10s is not above 1.5 times") {
		t.Fatalf("errors logged: %v", logs.All())
	}
}
