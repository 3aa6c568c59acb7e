package localnode

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// dataDir makes a data directory as PostgreSQL 15 leaves it: a control file
// with state and checkpoint timeline, pg_wal with the given history
// files, standby.signal when standby.
func dataDir(t *testing.T, standby bool, state pgcontrol.DBState, ckptTLI uint32, history ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"global", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	setControl(t, dir, state, ckptTLI)
	for _, h := range append(history, "000000010000000000000001", "000000010000000000000002.partial") {
		if err := os.WriteFile(filepath.Join(dir, "pg_wal", h), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if standby {
		if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func setControl(t *testing.T, dir string, state pgcontrol.DBState, tli uint32) {
	t.Helper()
	buf := make([]byte, 8192)
	binary.NativeEndian.PutUint64(buf[0:], 7441136452311785003)
	binary.NativeEndian.PutUint32(buf[8:], 1300)
	binary.NativeEndian.PutUint32(buf[16:], uint32(state))
	binary.NativeEndian.PutUint32(buf[48:], tli)
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// claim: liveness.failover-local-role-from-files
func TestReadFiles(t *testing.T) {
	cases := []struct {
		name    string
		standby bool
		state   pgcontrol.DBState
		ckpt    uint32
		history []string
		role    Role
		tli     uint32
	}{
		{"standby on timeline 1", true, pgcontrol.DBInArchiveRecovery, 1, nil, RoleStandby, 1},
		{"standby that followed timeline 3", true, pgcontrol.DBInArchiveRecovery, 1, []string{"00000002.history", "00000003.history"}, RoleStandby, 3},
		{"stopped standby", true, pgcontrol.DBShutdownedInRecovery, 2, []string{"00000002.history"}, RoleStandby, 2},
		{"promoted, checkpoint not done yet", false, pgcontrol.DBInProduction, 1, []string{"00000002.history"}, RolePrimary, 2},
		{"primary told to rejoin, still running", true, pgcontrol.DBInProduction, 2, []string{"00000002.history"}, RolePrimary, 2},
		{"stopped primary", false, pgcontrol.DBShutdowned, 1, nil, RolePrimary, 1},
		{"rewound, set to start as a standby", true, pgcontrol.DBInArchiveRecovery, 1, []string{"00000002.history"}, RoleStandby, 2},
		{"not history files", true, pgcontrol.DBInArchiveRecovery, 1, []string{"0000000G.history", "00000009.history.tmp", "000000010000000000000003.00000028.backup", "00000000.history"}, RoleStandby, 1},
	}
	for _, c := range cases {
		n, err := ReadFiles(dataDir(t, c.standby, c.state, c.ckpt, c.history...))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n.Role != c.role || n.Timeline != c.tli || n.StandbySignal != c.standby || n.State != c.state {
			t.Errorf("%s: got %+v, want role %s timeline %d", c.name, n, c.role, c.tli)
		}
	}
	if _, err := ReadFiles(t.TempDir()); err == nil {
		t.Fatal("an empty directory read as a node")
	}
	if _, err := ReadFiles(""); err == nil {
		t.Fatal("no directory read as a node")
	}
}

// claim: liveness.failover-local-role-polled
func TestWatcherReportsChanges(t *testing.T) {
	dir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	var mu sync.Mutex
	var seen []Node
	w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Interval: 10 * time.Millisecond, OnChange: func(n Node) {
		mu.Lock()
		seen = append(seen, n)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitRole(t, w, "first reading", func(n Node) bool { return n.Role == RoleStandby && n.Timeline == 1 })
	// A promotion as PostgreSQL does it: the history file of the new
	// timeline, standby.signal removed, state in production.
	os.WriteFile(filepath.Join(dir, "pg_wal", "00000002.history"), []byte("1\t0/3000000\tno recovery target specified\n"), 0o600)
	os.Remove(filepath.Join(dir, "standby.signal"))
	setControl(t, dir, pgcontrol.DBInProduction, 1)
	waitRole(t, w, "promotion", func(n Node) bool { return n.Role == RolePrimary && n.Timeline == 2 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[0].Role != RoleStandby || seen[len(seen)-1].Role != RolePrimary {
		t.Fatalf("changes reported: %+v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Equal(seen[i-1]) {
			t.Fatalf("an unchanged reading was reported again: %+v", seen)
		}
	}
}

// claim: liveness.failover-unknown-role
func TestWatcherUnreadable(t *testing.T) {
	empty := t.TempDir()
	w, err := NewWatcher(Options{DataDirectory: func() string { return empty }})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.Poll(context.Background()); n.Role != RoleUnknown {
		t.Fatalf("an unreadable data directory gave role %s", n.Role)
	}
	if _, err := NewWatcher(Options{Conninfo: "port=notanumber"}); err == nil {
		t.Fatal("a bad standby.conninfo was accepted")
	}
}

// Between full readings, standby.signal is looked at every SignalInterval:
// its removal (a promotion) makes a full reading at once.
// claim: liveness.failover-signal-watched
func TestWatcherNoticesSignalBetweenReadings(t *testing.T) {
	dir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	deadline := time.Now().Add(5 * time.Second)
	for w.Current().Role != RoleStandby && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(dir, "pg_wal", "00000002.history"), nil, 0o600)
	setControl(t, dir, pgcontrol.DBInProduction, 1)
	os.Remove(filepath.Join(dir, "standby.signal"))
	for w.Current().Role != RolePrimary && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := w.Current(); n.Role != RolePrimary || n.Timeline != 2 {
		t.Fatalf("with an hour between full readings, the promotion was not seen: %+v", n)
	}
}

// pg_control's rewrites wake no watch: a reading that caught it unreadable
// (PostgreSQL rewrites it in place) is taken again soon, not at the next
// safety reading 10 s later.
func TestWatcherRereadsAnUnreadableControlFile(t *testing.T) {
	w, dir := startStandbyWatcher(t)
	// A promotion whose pg_control is caught half-written.
	ctl := filepath.Join(dir, "global", "pg_control")
	if err := os.WriteFile(ctl, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "standby.signal")); err != nil {
		t.Fatal(err)
	}
	waitRole(t, w, "the unreadable reading", func(n Node) bool { return n.Role == RoleUnknown })
	setControl(t, dir, pgcontrol.DBInProduction, 1)
	// Well within SafetyInterval: the unknown reading is retried.
	waitRoleWithin(t, w, "the reading after pg_control was written", SafetyInterval/3, func(n Node) bool { return n.Role == RolePrimary })
}
