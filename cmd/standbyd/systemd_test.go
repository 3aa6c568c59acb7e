package main

import (
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/config"
)

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
