package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// standbyd call --direct opens a one-shot channel session with the daemon's
// configuration: it answers with no daemon running, where the same call
// through the socket finds nobody (exit 4).
// claim: api.call-direct
func TestCallDirectNeedsNoDaemon(t *testing.T) {
	needEnv(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "standbyd.yaml")
	sock := filepath.Join(dir, "api.sock") // no daemon listens here
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("standby:\n  data_directory: %s\napi:\n  socket: %s\n", env.StandbyData, sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(args ...string) (string, string, int) {
		cmd := exec.Command(daemonBin, append([]string{"call", "--config", cfg}, args...)...)
		cmd.Env = raceEnv()
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return o.String(), e.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), 0
	}
	if out, errOut, code := call("N", "100", "200", "300"); code != 4 {
		t.Fatalf("through the socket with no daemon: exit %d, %q %q; want 4", code, out, errOut)
	}
	if out, errOut, code := call("--direct", "N", "100", "200", "300"); code != 0 || out != "400 500 600\n" {
		t.Fatalf("--direct: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The primary's own answer, an error, comes back the same way.
	if _, errOut, code := call("--direct", "N", "2147483647", "0", "0"); code != 3 || !bytes.Contains([]byte(errOut), []byte("22003")) {
		t.Fatalf("--direct overflow: exit %d, stderr %q", code, errOut)
	}
}
