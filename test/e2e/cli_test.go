package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// standbyd call exits 1 for a configuration it cannot use.
// claim: api.call-exit-codes
func TestCallExitsOneOnABadConfiguration(t *testing.T) {
	needEnv(t)
	bad := filepath.Join(t.TempDir(), "standbyd.yaml")
	if err := os.WriteFile(bad, []byte("channel:\n  no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(daemonBin, "call", "--direct", "--config", bad, "N", "1", "2", "3").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "no_such_key") {
		t.Fatalf("call with a bad configuration: %v\n%s", err, out)
	}
}
