package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// standbyd check --connect explains, in plain words, a missing pg_hba.conf
// line for the channel's database, a missing extension and a missing GRANT,
// and classifies each failure: these (and a missing database) as
// configuration, a refused connection as transient.
// claim: readme.check-connect-explains
// claim: liveness.configuration-classes
// claim: liveness.transient-classes
// claim: readme.own-hba-line
func TestCheckConnectExplainsCommonFailures(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := context.Background()
	d := startDaemon(t, conninfoVia(e.PrimaryPort, passfileFor(t, e)))
	d.waitReady(30 * time.Second)
	cfg := readFile(t, d.dir+"/standbyd.yaml")
	check := func(database string) (string, int) {
		t.Helper()
		p := filepath.Join(d.dir, "check-"+database+".yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(cfg, "channel:\n", "channel:\n  database: "+database+"\n", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, code := d.cli("check", "--config", p, "--connect")
		return out, code
	}
	sql := func(q string) {
		t.Helper()
		if _, err := e.PrimarySQL(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := check("postgres"); code != 0 {
		t.Fatalf("check --connect on a working setup: exit %d\n%s", code, out)
	}

	// The extension not created in the channel's database.
	sql("CREATE DATABASE noext")
	const configuration = "connect: FAILED (configuration)"
	if out, code := check("nosuchdb"); code != 4 || !strings.Contains(out, configuration) || !strings.Contains(out, `database "nosuchdb" does not exist`) {
		t.Fatalf("a missing database: exit %d\n%s", code, out)
	}
	if out, code := check("noext"); code != 4 || !strings.Contains(out, configuration) || !strings.Contains(out, `the standbyd extension is not created in database "noext"`) || !strings.Contains(out, "CREATE EXTENSION standbyd") {
		t.Fatalf("without the extension: exit %d\n%s", code, out)
	}

	// No EXECUTE on standbyd.serve() for the channel's role.
	sql("REVOKE EXECUTE ON PROCEDURE standbyd.serve() FROM " + testcluster.ChannelRole)
	if out, code := check("postgres"); code != 4 || !strings.Contains(out, configuration) || !strings.Contains(out, "GRANT EXECUTE ON PROCEDURE standbyd.serve()") {
		t.Fatalf("without the GRANT: exit %d\n%s", code, out)
	}
	sql("GRANT EXECUTE ON PROCEDURE standbyd.serve() TO " + testcluster.ChannelRole)

	// pg_hba.conf with lines for postgres and replication only, as when the
	// channel's database was forgotten.
	hba := filepath.Join(e.PrimaryData, "pg_hba.conf")
	b, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	narrowed := strings.Replace(string(b), "host    all          all        127.0.0.1/32", "host    postgres     all        127.0.0.1/32", 1)
	if narrowed == string(b) {
		t.Fatalf("pg_hba.conf has no line to narrow:\n%s", b)
	}
	if err := os.WriteFile(hba, []byte(narrowed), 0o600); err != nil {
		t.Fatal(err)
	}
	sql("SELECT pg_reload_conf()")
	// The reload is asynchronous: ask until the new rules apply.
	var out string
	var code int
	waitFor(t, 10*time.Second, "check --connect to explain the missing pg_hba.conf line", func() bool {
		out, code = check("noext")
		return strings.Contains(out, `pg_hba.conf has no line for database "noext"`)
	})
	if code != 4 || !strings.Contains(out, configuration) {
		t.Fatalf("without a pg_hba.conf line: exit %d\n%s", code, out)
	}

	// Nothing listening: transient, retried with the backoff.
	if err := e.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	if out, code := check("postgres"); code != 4 || !strings.Contains(out, "connect: FAILED (transient)") || !strings.Contains(out, "nothing listens at that address") {
		t.Fatalf("with the primary stopped: exit %d\n%s", code, out)
	}
}
