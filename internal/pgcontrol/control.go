package pgcontrol

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DBState is ControlFileData.state (the DBState enum of pg_control.h, the
// same values from PostgreSQL 9.6 to 19).
type DBState int32

// The states; only the recovery ones and production matter to standbyd.
const (
	DBStartup              DBState = 0
	DBShutdowned           DBState = 1
	DBShutdownedInRecovery DBState = 2
	DBShutdowning          DBState = 3
	DBInCrashRecovery      DBState = 4
	DBInArchiveRecovery    DBState = 5
	DBInProduction         DBState = 6
)

func (s DBState) String() string {
	switch s {
	case DBStartup:
		return "starting up"
	case DBShutdowned:
		return "shut down"
	case DBShutdownedInRecovery:
		return "shut down in recovery"
	case DBShutdowning:
		return "shutting down"
	case DBInCrashRecovery:
		return "in crash recovery"
	case DBInArchiveRecovery:
		return "in archive recovery"
	case DBInProduction:
		return "in production"
	}
	return fmt.Sprintf("state %d", int32(s))
}

// Control is the head of ControlFileData that standbyd reads.
type Control struct {
	SystemIdentifier uint64
	// Version is pg_control_version (1300 for PostgreSQL 13 to 16, 1700,
	// 1800, 19xx).
	Version uint32
	State   DBState
	// CheckpointTimeline is checkPointCopy.ThisTimeLineID: the timeline of
	// the last checkpoint (or restartpoint, on a standby). It lags behind a
	// promotion until the checkpoint that follows it completes.
	CheckpointTimeline uint32
}

// Offsets in ControlFileData, unchanged since PostgreSQL 11 (which removed
// prevCheckPoint) up to 19: system_identifier u64 at 0,
// pg_control_version u32 at 8, catalog_version_no u32 at 12, state (an enum,
// 4 bytes) at 16, time (pg_time_t, int64 aligned to 8) at 24, checkPoint
// u64 at 32, checkPointCopy at 40: redo u64 at 40, ThisTimeLineID u32 at 48.
const (
	offVersion  = 8
	offState    = 16
	offTimeline = 48
	headSize    = 52
)

// Supported control file versions: PostgreSQL 11 and 12 (1100, 1201), 13 to
// 16 (1300), 17 (1700), 18 (1800) and 19 (bumped during its development:
// 1900-1999). Another version may have moved the fields: refused.
func supported(v uint32) bool {
	switch {
	case v == 1100, v == 1201, v == 1300, v == 1700, v == 1800:
		return true
	case v >= 1900 && v < 2000:
		return true
	}
	return false
}

// Read reads the head of the control file of the cluster in dataDir.
func Read(dataDir string) (Control, error) {
	path := filepath.Join(dataDir, "global", "pg_control")
	f, err := os.Open(path)
	if err != nil {
		return Control{}, fmt.Errorf("reading the control file: %w", err)
	}
	defer f.Close()
	// One read of the head: PostgreSQL rewrites the file with one write of
	// its 8 kB, and the fields read here are in its first sector.
	var buf [512]byte
	if _, err := io.ReadFull(f, buf[:headSize]); err != nil {
		return Control{}, fmt.Errorf("reading %s: %w", path, err)
	}
	c := Control{
		SystemIdentifier:   binary.NativeEndian.Uint64(buf[0:]),
		Version:            binary.NativeEndian.Uint32(buf[offVersion:]),
		State:              DBState(int32(binary.NativeEndian.Uint32(buf[offState:]))),
		CheckpointTimeline: binary.NativeEndian.Uint32(buf[offTimeline:]),
	}
	if c.SystemIdentifier == 0 {
		return Control{}, fmt.Errorf("%s: system identifier is 0, not a control file", path)
	}
	if !supported(c.Version) {
		return Control{}, fmt.Errorf("%s: pg_control_version %d is not one standbyd knows the layout of", path, c.Version)
	}
	return c, nil
}
