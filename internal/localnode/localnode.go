// Package localnode tells whether the node standbyd runs on is still a
// standby, and on which timeline, without a connection to it: from its
// data directory. standbyd serves only standbys; after a promotion the
// channel to the old primary must close (internal/conn refuses).
//
// Sources, all cheap to poll every second:
//
//   - standby.signal in the data directory: present while the node is (or
//     will start as) a standby; PostgreSQL removes it when it promotes.
//   - global/pg_control: the cluster state (in archive recovery, in
//     production, ...) and the timeline of the last checkpoint. The state
//     turns to "in production" the moment recovery ends.
//   - the timeline history files in pg_wal (0000000N.history): written as
//     soon as the node promotes (N is its new timeline), fetched as soon as
//     a standby follows a new timeline, copied by pg_rewind. The highest N
//     is at least the node's timeline; pg_control's checkpoint timeline
//     lags behind until the next checkpoint or restartpoint.
//
// The optional local connection (standby.conninfo, see Watcher) adds
// pg_is_in_recovery() and the timeline the server itself reports.
package localnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// Role is what the local node is.
type Role int

const (
	// RoleUnknown: nothing could be read (no data directory configured,
	// unreadable files): standbyd does not refuse on it.
	RoleUnknown Role = iota
	// RoleStandby: in recovery, or stopped and set to start as a standby.
	RoleStandby
	// RolePrimary: not a standby (promoted, or a primary).
	RolePrimary
)

func (r Role) String() string {
	switch r {
	case RoleStandby:
		return "standby"
	case RolePrimary:
		return "primary"
	}
	return "unknown"
}

// Node is one reading of the local node.
type Node struct {
	Role Role
	// Timeline is the node's timeline as far as the sources tell (0:
	// unknown): the highest of the history files, pg_control's checkpoint
	// timeline and the local connection's.
	Timeline uint32
	// StandbySignal: standby.signal exists.
	StandbySignal bool
	// State is pg_control's cluster state (-1 when unread).
	State pgcontrol.DBState
	// Source says what decided the role: "files" or "local connection".
	Source string
}

// Equal reports whether two readings say the same.
func (n Node) Equal(o Node) bool { return n == o }

// ReadFiles reads the node's role and timeline from its data directory.
//
// The node is a standby when standby.signal exists and pg_control does not
// say "in production": a primary being prepared to rejoin (standby.signal
// written while it still runs) is still a primary until it restarts, and a
// stopped node with standby.signal will start as a standby. Without
// standby.signal the node is not a standby (PostgreSQL 12 and later start
// a standby only with it).
func ReadFiles(dataDir string) (Node, error) {
	n := Node{State: -1, Source: "files"}
	if dataDir == "" {
		return n, errors.New("no data directory")
	}
	_, err := os.Stat(filepath.Join(dataDir, "standby.signal"))
	switch {
	case err == nil:
		n.StandbySignal = true
	case errors.Is(err, os.ErrNotExist):
	default:
		return n, fmt.Errorf("looking for standby.signal: %w", err)
	}
	ctl, err := pgcontrol.Read(dataDir)
	if err != nil {
		return n, err
	}
	n.State = ctl.State
	n.Timeline = ctl.CheckpointTimeline
	hist, err := HighestHistory(filepath.Join(dataDir, "pg_wal"))
	if err != nil {
		return n, err
	}
	n.Timeline = max(n.Timeline, hist)
	if n.StandbySignal && ctl.State != pgcontrol.DBInProduction {
		n.Role = RoleStandby
	} else {
		n.Role = RolePrimary
	}
	return n, nil
}

// HighestHistory returns the highest N of the 0000000N.history files in
// dir (0 when there is none: a cluster still on timeline 1).
func HighestHistory(dir string) (uint32, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("reading the timeline history files: %w", err)
	}
	defer f.Close()
	var top uint32
	for {
		// Names only, in batches: pg_wal may hold thousands of segments.
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if tli, ok := historyTimeline(name); ok && tli > top {
				top = tli
			}
		}
		if errors.Is(err, io.EOF) {
			return top, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading the timeline history files: %w", err)
		}
	}
}

// historyTimeline parses "0000000N.history" (8 hex digits).
func historyTimeline(name string) (uint32, bool) {
	hex, ok := strings.CutSuffix(name, ".history")
	if !ok || len(hex) != 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil || v == 0 {
		return 0, false
	}
	return uint32(v), true
}
