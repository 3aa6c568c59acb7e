package testcluster

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testskip"
)

func TestPrimaryAndStreamingStandby(t *testing.T) {
	if testing.Short() {
		testskip.Skip(t, "starts PostgreSQL servers")
	}
	e := New(t, Options{Standby: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if got, err := e.PrimarySQL(ctx, "SELECT pg_is_in_recovery()"); err != nil || got != "f" {
		t.Fatalf("primary in recovery = %q, %v", got, err)
	}
	if got, err := e.SQL(ctx, "standby", "SELECT pg_is_in_recovery()"); err != nil || got != "t" {
		t.Fatalf("standby in recovery = %q, %v", got, err)
	}
	if got, err := e.PrimarySQL(ctx, "SELECT state FROM pg_stat_replication"); err != nil || got != "streaming" {
		t.Fatalf("replication state = %q, %v", got, err)
	}
	if got, err := e.PrimarySQL(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'standbyd'"); err != nil || got == "" {
		t.Fatalf("extension on the primary: %q, %v", got, err)
	}
	auto, err := os.ReadFile(e.StandbyData + "/postgresql.auto.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(auto), "passfile=''"+e.PassFile+"''") {
		t.Fatalf("primary_conninfo does not name the passfile:\n%s", auto)
	}

	// Stop really stops: the postmaster is gone afterwards.
	pid, err := e.PostmasterPID("primary")
	if err != nil {
		t.Fatal(err)
	}
	e.Stop()
	if _, err := os.Stat(e.Base); !os.IsNotExist(err) {
		t.Fatalf("base directory still there after Stop: %v", err)
	}
	// The postmaster removes its pid file just before it exits.
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running 10s after Stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid runs (a zombie counts as gone).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
