package pgcontrol

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func TestSystemIdentifier(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "global"), 0o700)
	buf := make([]byte, 8192)
	binary.NativeEndian.PutUint64(buf, 7711742512479826720)
	os.WriteFile(filepath.Join(dir, "global", "pg_control"), buf, 0o600)
	id, err := SystemIdentifier(dir)
	if err != nil || id != 7711742512479826720 {
		t.Fatalf("%d %v", id, err)
	}
	os.WriteFile(filepath.Join(dir, "global", "pg_control"), buf[:4], 0o600)
	if _, err := SystemIdentifier(dir); err == nil {
		t.Fatal("short file accepted")
	}
	if _, err := SystemIdentifier(t.TempDir()); err == nil {
		t.Fatal("missing file accepted")
	}
}
