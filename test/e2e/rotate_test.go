package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePassfile replaces the passfile at once (rename), as a secret
// manager would.
func writePassfile(t *testing.T, path, role, password string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("*:*:*:%s:%s\n", role, password)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Like libpq, the daemon reads the passfile at every connection attempt: a
// password rotated on the primary and in the passfile is used by the next
// attempt, without a reload.
// claim: liveness.password-rotated-without-reload
func TestPasswordRotationWithoutReload(t *testing.T) {
	needEnv(t)
	const role = "sbd_rotate"
	primarySQL(t, fmt.Sprintf("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD 'first' IN ROLE standbyd_repl", role, role))
	t.Cleanup(func() {
		primarySQL(t, fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'", role))
		_, _ = env.PrimarySQL(ctxT(t, 30*time.Second), "DROP ROLE IF EXISTS "+role)
	})
	passfile := filepath.Join(t.TempDir(), "pgpass")
	writePassfile(t, passfile, role, "first")
	d := startDaemon(t, fmt.Sprintf("  conninfo: \"host=127.0.0.1 port=%d user=%s sslmode=disable passfile=%s\"\n",
		env.PrimaryPort, role, passfile))
	d.waitReady(20 * time.Second)
	connects := d.metricSum("standbyd_channel_connects_total")

	primarySQL(t, fmt.Sprintf("ALTER ROLE %s PASSWORD 'second'", role))
	writePassfile(t, passfile, role, "second")
	primarySQL(t, fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'", role))

	// backoff_max is 1s: the channel is back within a step or two.
	if !d.poll(10*time.Second, func() bool {
		return d.metricSum("standbyd_channel_connects_total") > connects && d.readyz() == 200
	}) {
		t.Fatalf("the channel did not come back with the rotated password (last error: %s)", d.lastError())
	}
	if n, _ := d.metric(`standbyd_channel_connect_errors_total{class="configuration"}`); n != 0 {
		t.Fatalf("%v configuration errors: an attempt used the old password", n)
	}
}
