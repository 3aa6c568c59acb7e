package pgcontrol

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeControl writes a control file laid out as PostgreSQL 11 to 19 do.
func writeControl(t *testing.T, dir string, version uint32, state DBState, tli uint32) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	binary.NativeEndian.PutUint64(buf[0:], 7711742512479826720)
	binary.NativeEndian.PutUint32(buf[8:], version)
	binary.NativeEndian.PutUint32(buf[12:], 202209061)
	binary.NativeEndian.PutUint32(buf[16:], uint32(state))
	binary.NativeEndian.PutUint64(buf[24:], 1764600000)
	binary.NativeEndian.PutUint64(buf[32:], 0x3000028)
	binary.NativeEndian.PutUint64(buf[40:], 0x3000028)
	binary.NativeEndian.PutUint32(buf[48:], tli)
	binary.NativeEndian.PutUint32(buf[52:], tli-1)
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRead(t *testing.T) {
	for _, v := range []uint32{1300, 1700, 1800, 1905} {
		dir := t.TempDir()
		writeControl(t, dir, v, DBInArchiveRecovery, 3)
		c, err := Read(dir)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if c.SystemIdentifier != 7711742512479826720 || c.Version != v || c.State != DBInArchiveRecovery || c.CheckpointTimeline != 3 {
			t.Fatalf("version %d: %+v", v, c)
		}
	}
	dir := t.TempDir()
	writeControl(t, dir, 942, DBInProduction, 1)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "pg_control_version 942") {
		t.Fatalf("an unknown layout was read: %v", err)
	}
	if _, err := Read(t.TempDir()); err == nil {
		t.Fatal("a missing file was read")
	}
}

func TestDBStateNames(t *testing.T) {
	if DBInProduction.String() != "in production" || DBInArchiveRecovery.String() != "in archive recovery" || DBState(9).String() != "state 9" {
		t.Fatal(DBInProduction.String(), DBInArchiveRecovery.String(), DBState(9).String())
	}
}
