package localnode

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// The intervals docs/liveness.md states, as configured: the local
// connection is asked every second (and the files read every second where
// the directory cannot be watched), standby.signal is looked at every
// 100ms in between, and a watched directory is read every 10s without a
// change.
// claim: liveness.failover-intervals
// claim: liveness.failover-idle-watch
// claim: liveness.failover-signal-watched
func TestWatcherIntervals(t *testing.T) {
	if PollInterval != time.Second || SignalInterval != 100*time.Millisecond || SafetyInterval != 10*time.Second {
		t.Fatalf("intervals: poll %s, standby.signal %s, safety %s; docs/liveness.md says 1s, 100ms, 10s",
			PollInterval, SignalInterval, SafetyInterval)
	}
	w, err := NewWatcher(Options{DataDirectory: func() string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if w.interval != PollInterval {
		t.Fatalf("default interval %s, want PollInterval", w.interval)
	}
}

// Each change is logged as "local node" with role, timeline,
// standby_signal, control_state and source; a reading that changes nothing
// is not logged again.
// claim: liveness.failover-local-node-logged
func TestLocalNodeLogLine(t *testing.T) {
	dir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	core, logs := observer.New(zapcore.InfoLevel)
	w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll(context.Background())
	w.Poll(context.Background())
	got := logs.FilterMessage("local node").All()
	if len(got) != 1 {
		t.Fatalf("%d \"local node\" lines for one state, want 1", len(got))
	}
	m := got[0].ContextMap()
	want := map[string]any{"role": RoleStandby.String(), "timeline": uint64(1), "standby_signal": true,
		"control_state": pgcontrol.DBInArchiveRecovery.String(), "source": "files"}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("local node %s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
}

// A history file of an abandoned timeline left in pg_wal counts: the node
// is taken for being on that timeline (and so refuses upstreams older).
// claim: liveness.failover-abandoned-history
func TestAbandonedHistoryFileCounts(t *testing.T) {
	// Followed timeline 2, but a history file of a timeline 5 that was
	// abandoned (a promotion rewound away) is still there.
	n, err := ReadFiles(dataDir(t, true, pgcontrol.DBInArchiveRecovery, 2, "00000002.history", "00000005.history"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Role != RoleStandby || n.Timeline != 5 {
		t.Fatalf("%+v, want a standby taken for being on timeline 5", n)
	}
}

// A local connection that does not answer (the node stopped or
// restarting): the files decide, and the log says so once.
// claim: liveness.failover-local-connection
func TestFilesDecideWhenTheNodeDoesNotAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there: connection refused
	for _, c := range []struct {
		name string
		dir  string
		role Role
		tli  uint32
	}{
		{"standby", dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1), RoleStandby, 1},
		{"promoted", dataDir(t, false, pgcontrol.DBInProduction, 1, "00000002.history"), RolePrimary, 2},
	} {
		core, logs := observer.New(zapcore.WarnLevel)
		dir := c.dir
		w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Logger: zap.New(core),
			Conninfo: fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2", port)})
		if err != nil {
			t.Fatal(err)
		}
		var n Node
		for i := 0; i < 3; i++ {
			n = w.Poll(context.Background())
		}
		if n.Role != c.role || n.Timeline != c.tli || n.Source != "files" {
			t.Errorf("%s: %+v, want role %s timeline %d from the files", c.name, n, c.role, c.tli)
		}
		if k := logs.FilterMessageSnippet("does not answer").Len(); k != 1 {
			t.Errorf("%s: %d warnings that the node does not answer over three readings, want 1", c.name, k)
		}
	}
}

// Neither source readable: the role is unknown, and the log says so once
// however many readings fail.
// claim: liveness.failover-unknown-role
func TestUnknownRoleLoggedOnce(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	empty := filepath.Join(t.TempDir(), "no-such-dir")
	w, err := NewWatcher(Options{DataDirectory: func() string { return empty }, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if n := w.Poll(context.Background()); n.Role != RoleUnknown {
			t.Fatalf("an unreadable data directory gave role %s", n.Role)
		}
	}
	if k := logs.FilterMessageSnippet("reading the local node's role").Len(); k != 1 {
		t.Fatalf("%d warnings over three failed readings, want 1", k)
	}
}
