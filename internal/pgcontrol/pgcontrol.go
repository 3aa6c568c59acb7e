// Package pgcontrol reads what standbyd needs from a cluster's control file,
// global/pg_control: the database system identifier, which a standby shares
// with its primary (it is copied by pg_basebackup), the cluster state and
// the timeline of the last checkpoint. standbyd compares the identifier
// with the one the primary reports in hello, to refuse a conninfo that
// points at another cluster, and uses the state to tell a standby from a
// promoted node (internal/localnode).
package pgcontrol

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SystemIdentifier reads the system identifier of the cluster in dataDir.
// It is the first field of ControlFileData (uint64, in the byte order of
// the machine that wrote it; standbyd runs on the same host as the standby).
func SystemIdentifier(dataDir string) (uint64, error) {
	path := filepath.Join(dataDir, "global", "pg_control")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading the standby's control file: %w", err)
	}
	defer f.Close()
	var buf [8]byte
	if _, err := io.ReadFull(f, buf[:]); err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	id := binary.NativeEndian.Uint64(buf[:])
	if id == 0 {
		return 0, fmt.Errorf("%s: system identifier is 0, not a control file", path)
	}
	return id, nil
}
