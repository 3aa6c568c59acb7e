package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqlState runs sql on pc and returns the SQLSTATE and message of its
// error ("" when it succeeded).
func sqlState(t *testing.T, pc *pgconn.PgConn, sql string) (string, string) {
	t.Helper()
	_, err := pc.Exec(ctxT(t, 30*time.Second), sql).ReadAll()
	if err == nil {
		return "", ""
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: %v", sql, err)
	}
	return pe.Code, pe.Message + " | " + pe.Hint
}

// standbyd.call() checks, with the standby's replicated catalog and before
// anything is sent: the op (built-ins refused, unknown ops), the caller's
// EXECUTE on the handler's function. Only then does it need the daemon,
// and on a primary it refuses to run. No daemon runs here: a call that
// passes every check fails to connect, naming standbyd.socket.
// claim: extension.call-checks-before-sending
// claim: extension.call-on-primary
// claim: extension.call-privileges
func TestCallChecksBeforeSending(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE SCHEMA IF NOT EXISTS e2e_call;
CREATE OR REPLACE FUNCTION e2e_call.echo(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
REVOKE EXECUTE ON FUNCTION e2e_call.echo(bytea) FROM PUBLIC;
DO $$ BEGIN CREATE ROLE e2e_call_user; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA standbyd TO e2e_call_user;
GRANT EXECUTE ON FUNCTION standbyd.call(text, bytea, boolean) TO e2e_call_user;
GRANT EXECUTE ON FUNCTION standbyd.call(integer, bytea, boolean) TO e2e_call_user;
SELECT standbyd.register_handler(290, 'call_echo', 'e2e_call.echo(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), `SELECT standbyd.unregister_handler(290); DROP SCHEMA e2e_call CASCADE;
REVOKE ALL ON FUNCTION standbyd.call(text, bytea, boolean), standbyd.call(integer, bytea, boolean) FROM e2e_call_user;
REVOKE ALL ON SCHEMA standbyd FROM e2e_call_user; DROP ROLE e2e_call_user`)
	})
	public := primarySQL(t, `SELECT string_agg(p.oid::regprocedure || '=' || EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'), ',' ORDER BY 1)
FROM pg_proc p WHERE p.pronamespace = 'standbyd'::regnamespace AND p.proname = 'call'`)
	if public != "standbyd.call(integer,bytea,boolean)=false,standbyd.call(text,bytea,boolean)=false" {
		t.Fatalf("EXECUTE for PUBLIC on standbyd.call: %s", public)
	}
	lsn := primarySQL(t, "SELECT pg_current_wal_insert_lsn()")
	waitFor(t, 30*time.Second, "the standby to replay the registration", func() bool {
		out, err := env.SQL(context.Background(), "standby", "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'")
		return err == nil && out == "t"
	})

	sb := superuser(t, "standby", "")
	nowhere := env.Base + "/no-daemon-here.sock"
	if code, msg := sqlState(t, sb, "SET standbyd.socket = '"+nowhere+"'"); code != "" {
		t.Fatalf("SET standbyd.socket: %s %s", code, msg)
	}
	for _, c := range []struct{ sql, code, in string }{
		{"SELECT standbyd.call(NULL::text)", "22004", "NULL"},
		{"SELECT standbyd.call('ping')", "42501", "built-in"},
		{"SELECT standbyd.call(87)", "42501", "built-in"},
		{"SELECT standbyd.call('nosuch')", "42883", "replayed"},
		{"SELECT standbyd.call(291)", "42883", "no handler"},
		// a superuser passes the privilege check and needs the daemon
		{"SELECT standbyd.call('call_echo', '\\x01')", "08001", nowhere},
		{"SET ROLE e2e_call_user", "", ""},
		{"SELECT standbyd.call('call_echo', '\\x01')", "42501", "permission denied for function echo"},
		{"SELECT standbyd.call(290)", "42501", "permission denied for function echo"},
		{"RESET ROLE", "", ""},
	} {
		code, msg := sqlState(t, sb, c.sql)
		if code != c.code || !strings.Contains(msg, c.in) {
			t.Fatalf("on the standby, %s: got %s %q, want %s containing %q", c.sql, code, msg, c.code, c.in)
		}
	}

	// The same checks come before the recovery check, so a primary gives
	// the same errors; what passes them is 55000 there.
	pp := superuser(t, "primary", "")
	for _, c := range []struct{ sql, code, in string }{
		{"SELECT standbyd.call(NULL::text)", "22004", "NULL"},
		{"SELECT standbyd.call(290, NULL)", "22004", "NULL"},
		{"SELECT standbyd.call('ping')", "42501", "built-in"},
		{"SELECT standbyd.call(87)", "42501", "built-in"},
		{"SELECT standbyd.call('nosuch')", "42883", "replayed"},
		{"SELECT standbyd.call(291)", "42883", "no handler"},
		{"SET ROLE e2e_call_user", "", ""},
		{"SELECT standbyd.call('call_echo', '\\x01')", "42501", "permission denied for function echo"},
		{"SELECT standbyd.call(290)", "42501", "permission denied for function echo"},
		{"RESET ROLE", "", ""},
		{"SELECT standbyd.call('call_echo', '\\x01')", "55000", "e2e_call.echo(bytea)"},
	} {
		code, msg := sqlState(t, pp, c.sql)
		if code != c.code || !strings.Contains(msg, c.in) {
			t.Fatalf("on the primary, %s: got %s %q, want %s containing %q", c.sql, code, msg, c.code, c.in)
		}
	}
	if _, msg := sqlState(t, pp, "SELECT standbyd.call(290)"); !strings.Contains(msg, "standbyd.call() runs on a standby |") || !strings.Contains(msg, "| ") || !strings.Contains(msg[strings.Index(msg, "| "):], "e2e_call.echo(bytea)") {
		t.Fatalf("on the primary: %q, want the message saying it runs on a standby and a hint naming e2e_call.echo(bytea)", msg)
	}

	// Granted on the primary, the grant replicates: the same role passes.
	primarySQL(t, "GRANT EXECUTE ON FUNCTION e2e_call.echo(bytea) TO e2e_call_user")
	lsn = primarySQL(t, "SELECT pg_current_wal_insert_lsn()")
	waitFor(t, 30*time.Second, "the standby to replay the grant", func() bool {
		out, err := env.SQL(context.Background(), "standby", "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'")
		return err == nil && out == "t"
	})
	sqlState(t, sb, "SET ROLE e2e_call_user")
	if code, msg := sqlState(t, sb, "SELECT standbyd.call(290, '\\x01')"); code != "08001" || !strings.Contains(msg, nowhere) {
		t.Fatalf("after the grant: %s %q, want 08001 naming %s", code, msg, nowhere)
	}
	sqlState(t, sb, "RESET ROLE")
}
