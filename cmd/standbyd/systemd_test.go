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
	sup := refusedSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	supDone, notifyDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(supDone); sup.Run(ctx) }()
	go func() { defer close(notifyDone); notifySystemd(ctx, sup, config.ChannelConfig{}, zap.NewNop()) }()

	if m := next(t, msgs, "first line", func(string) bool { return true }); m != "STATUS=starting" {
		t.Fatalf("first message %q", m)
	}
	next(t, msgs, "STATUS with the error", func(m string) bool {
		return strings.HasPrefix(m, "STATUS=channel ") && strings.Contains(m, "0 of 1 sessions ready: connection refused")
	})
	next(t, msgs, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	cancel()
	next(t, msgs, "STATUS=stopping", func(m string) bool { return m == "STATUS=stopping" })
	<-notifyDone
	<-supDone
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
}
