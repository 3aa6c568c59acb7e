package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// api.socket_group gives the socket to a group whose members may call: the
// nobody user, a member of nogroup only, calls through a socket given to
// nogroup.
// claim: api.socket-group
func TestSocketGroupMembersMayCall(t *testing.T) {
	needEnv(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to the nobody user: run it as root (make test does)")
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatalf("group nogroup: %v", err)
	}
	b := startDaemon(t, "")
	b.waitReady(30 * time.Second)
	cfg := strings.Replace(readFile(t, b.dir+"/standbyd.yaml"), "api:\n", "api:\n  socket_group: nogroup\n", 1)
	_ = b.stop()
	if err := os.WriteFile(b.dir+"/standbyd.yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := restartDaemon(t, b)
	d.waitReady(30 * time.Second)
	if err := os.Chmod(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); gid != g.Gid || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket group %s mode %v, want group nogroup (%s) and 0660", gid, fi.Mode().Perm(), g.Gid)
	}
	binDir, err := os.MkdirTemp("", "sbdbin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "standbyd")
	if data, err := os.ReadFile(daemonBin); err != nil || os.WriteFile(bin, data, 0o755) != nil {
		t.Fatal("copying the binary")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command("runuser", "-u", "nobody", "--", bin, "call", "--socket", d.socket, "N", "1", "2", "3")
	cmd.Env = raceEnv()
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || out.String() != "301 302 303\n" {
		t.Fatalf("nobody (in nogroup) calling: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
}
