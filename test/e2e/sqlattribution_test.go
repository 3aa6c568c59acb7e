package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A standby session's standbyd.call() reaches the daemon over the fast
// path's version 2 and identifies itself: the daemon's log lines about its
// calls carry its backend pid, role and database, and
// standbyd_api_sql_calls_total counts them by database, role and result;
// a handler's DETAIL and HINT come back to the standby session.
// claim: api.fast-identify
// claim: api.fast-sql-calls-metric
func TestStandbySQLCallsAreAttributed(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	installV3Raise(t)
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	// The standby's server runs as another OS user than the test.
	for p, mode := range map[string]os.FileMode{d.dir: 0o755, d.socket: 0o666} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	set := fmt.Sprintf("SET standbyd.socket = '%s'; ", d.socket)
	out, err := env.SQL(ctx, "standby", set+"SELECT pg_backend_pid(), convert_from(standbyd.call('echo', 'hi'), 'UTF8'), convert_from(standbyd.call(256, 'there'), 'UTF8')")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(out, "|")
	if len(f) != 3 || f[1] != "echo:hi" || f[2] != "echo:there" {
		t.Fatalf("standbyd.call: %q", out)
	}
	pid, _ := strconv.Atoi(f[0])
	_, stderr, err := env.SQLWithStderr(ctx, "standby", set+"SELECT standbyd.call('v3_raise')")
	if err == nil || !strings.Contains(stderr, "ERROR:  out of stock") || !strings.Contains(stderr, "DETAIL:  item 7 has 0 left") ||
		!strings.Contains(stderr, "HINT:  order fewer") {
		t.Fatalf("handler error on the standby: %v %s", err, stderr)
	}
	_, stderr, err = env.SQLWithStderr(ctx, "standby", set+`DO $$ BEGIN PERFORM standbyd.call('v3_raise');
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END $$`)
	if err != nil || !strings.Contains(stderr, "sqlstate P0042") {
		t.Fatalf("the handler's SQLSTATE on the standby: %v %s", err, stderr)
	}

	ok := `standbyd_api_sql_calls_total{database="postgres",result="ok",role="postgres"}`
	perr := `standbyd_api_sql_calls_total{database="postgres",result="primary_error",role="postgres"}`
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric(ok); e, _ := d.metric(perr); return v == 2 && e == 2 }) {
		v, _ := d.metric(ok)
		e, _ := d.metric(perr)
		t.Fatalf("sql calls: ok %v, primary_error %v", v, e)
	}
	calls := 0
	for _, m := range logEntries(d, "call") {
		if m["sql_pid"] == float64(pid) {
			calls++
			if m["sql_role"] != "postgres" || m["sql_database"] != "postgres" {
				t.Fatalf("call log line %v", m)
			}
		}
	}
	if calls != 2 { // the first session's two calls; the raising ones came from other backends
		t.Fatalf("%d call log lines for backend %d\n%s", calls, pid, tailLines(d.log(), 20))
	}
}
