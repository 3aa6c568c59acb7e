package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The man command writes a page for the root and each visible subcommand,
// naming the version, and none for itself (hidden).
func TestManPagesWritten(t *testing.T) {
	dir := t.TempDir()
	root := &cobra.Command{Use: "standbyd", Version: "9.9.9"}
	root.AddCommand(newRunCommand(), newCallCommand(), newStatusCommand(), newCheckCommand(), newManCommand())
	root.SetArgs([]string{"man", dir})
	old := version
	version = "9.9.9"
	t.Cleanup(func() { version = old })
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"standbyd.1", "standbyd-run.1", "standbyd-call.1", "standbyd-status.1", "standbyd-check.1"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(string(b), `.TH "STANDBYD" "1"`) || !strings.Contains(string(b), "standbyd 9.9.9") {
			t.Errorf("%s: no header with section 1 and version:\n%.300s", name, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "standbyd-man.1")); err == nil {
		t.Error("a page was written for the hidden man command")
	}
}
