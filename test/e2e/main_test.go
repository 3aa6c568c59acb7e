// Package e2e runs standbyd end to end against real PostgreSQL servers: a
// primary with the standbyd extension and a streaming standby made with
// pg_basebackup -R (internal/testcluster, scripts/cluster.sh), and the real
// daemon binary (STANDBYD_BIN, or built here when unset). The servers are the
// host's 15, or another major in a chroot (STANDBYD_PG_MAJOR,
// STANDBYD_PG_CHROOT; scripts/majors.sh).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/standbyd/standbyd/internal/testcluster"
	"github.com/standbyd/standbyd/internal/testskip"
)

var (
	env       *testcluster.Env
	daemonBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: -short given, end-to-end tests skipped")
		os.Exit(m.Run())
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	daemonBin = os.Getenv("STANDBYD_BIN")
	if daemonBin == "" {
		dir, err := os.MkdirTemp("", "standbyd-bin-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		root, err := testcluster.RepoRoot()
		if err != nil {
			return 0, err
		}
		daemonBin = filepath.Join(dir, "standbyd")
		cmd := exec.Command("go", "build", "-o", daemonBin, "./cmd/standbyd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("building standbyd: %v\n%s", err, out)
		}
	}
	var err error
	env, err = testcluster.Start(testcluster.Options{Standby: true})
	if err != nil {
		return 0, err
	}
	code := m.Run()
	if code != 0 {
		fmt.Println("--- primary.log (tail) ---\n" + env.LogTail("primary", 60))
		fmt.Println("--- standby.log (tail) ---\n" + env.LogTail("standby", 30))
	}
	env.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			return 1, fmt.Errorf("goroutines leaked: %w", err)
		}
	}
	return code, nil
}

func needEnv(t *testing.T) {
	t.Helper()
	if testing.Short() {
		testskip.Skip(t, "end-to-end: needs PostgreSQL servers")
	}
}
