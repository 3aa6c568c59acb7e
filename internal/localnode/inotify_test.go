package localnode

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// runWatcher runs w until the test ends, or until stop (which may be
// called again) is called.
func runWatcher(t *testing.T, w *Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// startStandbyWatcher runs a watcher with the default options on a
// standby's data directory, once it has read it.
func startStandbyWatcher(t *testing.T) (*Watcher, string) {
	t.Helper()
	dir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	w, err := NewWatcher(Options{DataDirectory: func() string { return dir }})
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitRole(t, w, "first reading", func(n Node) bool { return n.Role == RoleStandby })
	return w, dir
}

// waitRole waits up to 5 s until w's reading satisfies ok.
func waitRole(t *testing.T, w *Watcher, what string, ok func(Node) bool) {
	t.Helper()
	waitRoleWithin(t, w, what, 5*time.Second, ok)
}

func waitRoleWithin(t *testing.T, w *Watcher, what string, within time.Duration, ok func(Node) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok(w.Current()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: last reading %+v", what, w.Current())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A watched data directory wakes the watcher only when something changes:
// an idle daemon's threads sleep (its idle CPU was 0.3% of a core with a
// look at standby.signal every 100ms, against 0.02% before it).
// claim: liveness.failover-idle-watch
func TestWatcherSleepsWhileNothingChanges(t *testing.T) {
	w, dir := startStandbyWatcher(t)
	// Files the role does not depend on: WAL segments, the server's own.
	before := w.wakeups.Load()
	os.WriteFile(filepath.Join(dir, "pg_wal", "000000010000000000000003"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "postmaster.pid"), nil, 0o600)
	time.Sleep(time.Second)
	if n := w.wakeups.Load() - before; n > 1 {
		t.Fatalf("the watcher went round %d times in a second with nothing to see", n)
	}
	// A promotion wakes it at once, with the timeline of the new history
	// file (written before standby.signal goes, as PostgreSQL does).
	os.WriteFile(filepath.Join(dir, "pg_wal", "00000002.history"), nil, 0o600)
	os.Remove(filepath.Join(dir, "standby.signal"))
	waitRole(t, w, "promotion", func(n Node) bool { return n.Role != RoleStandby && n.Timeline == 2 })
	// A rejoin puts standby.signal back (pg_control is then shut down).
	setControl(t, dir, pgcontrol.DBShutdowned, 2)
	os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600)
	waitRole(t, w, "rejoin", func(n Node) bool { return n.Role == RoleStandby })
}

// Where the data directory cannot be watched (here: no pg_wal to watch),
// the watcher polls: standby.signal every SignalInterval.
// claim: liveness.failover-signal-watched
func TestWatcherPollsWhenItCannotWatch(t *testing.T) {
	dir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	if err := os.RemoveAll(filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitRole(t, w, "first reading", func(n Node) bool { return n.StandbySignal })
	if !w.noWatch.Load() {
		t.Fatal("a data directory without pg_wal was watched")
	}
	os.Remove(filepath.Join(dir, "standby.signal"))
	waitRole(t, w, "promotion", func(n Node) bool { return !n.StandbySignal && n.Role != RoleStandby })
}
