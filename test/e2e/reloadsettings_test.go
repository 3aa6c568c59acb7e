package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reload that changes a setting shaping the connection but not
// primary_conninfo (here channel.application_name) reconnects, and the
// new session carries it.
// claim: liveness.reload-reconnects
func TestReloadOfConnectionSettingReconnects(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "  application_name: sbd-first\n")
	d.waitReady(30 * time.Second)
	count := func(name string) string {
		return primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+name+"'")
	}
	if !d.poll(10*time.Second, func() bool { return count("sbd-first") == "1" }) {
		t.Fatal("the channel does not carry the configured application_name")
	}
	path := filepath.Join(d.dir, "standbyd.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "sbd-first", "sbd-second", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	if !d.poll(20*time.Second, func() bool { return count("sbd-second") == "1" && count("sbd-first") == "0" }) {
		t.Fatalf("after the reload the channel still runs with the old application_name:\n%s", tailLines(d.log(), 20))
	}
	d.waitReady(30 * time.Second)
	if !strings.Contains(d.log(), "channel.application_name") {
		t.Fatal("the log does not name the changed setting")
	}
}
