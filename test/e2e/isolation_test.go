package e2e

// Isolation of the handler path: what one request does must not reach the
// next one, nor the idle channel, nor the server around it. Every test here
// talks to the real extension through a raw channel (extension_test.go).

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// Handlers of this file (op codes 300-309).
const (
	opIsoNow      = 300 // now() and statement_timestamp() as epoch seconds
	opIsoSetGUCs  = 301 // SET and set_config(..., false) of work_mem, search_path, application_name
	opIsoShowGUCs = 302 // the three settings as the handler sees them
	opIsoAdvLock  = 303 // takes session-level advisory lock 4242
	opIsoInsert   = 304 // inserts 37 rows into iso.ins
	opIsoHold     = 305 // sleeps as many seconds as the payload says, holding its snapshot
	opIsoEcho     = 306 // returns its payload
	opIsoOwned    = 307 // a function owned by a plain role: refused by the owner policy
	opIsoSwap     = 308 // re-registered during a test
)

const isolationSQL = `
DROP SCHEMA IF EXISTS iso CASCADE;
DROP ROLE IF EXISTS iso_plain;
CREATE ROLE iso_plain;
CREATE SCHEMA iso;
GRANT USAGE ON SCHEMA iso TO standbyd_repl, iso_plain;
GRANT CREATE ON SCHEMA iso TO iso_plain;
CREATE TABLE iso.ins(n int);
CREATE TABLE iso.victim(n int) WITH (autovacuum_enabled = off);
INSERT INTO iso.victim SELECT generate_series(1, 1000);
GRANT ALL ON ALL TABLES IN SCHEMA iso TO standbyd_repl;
CREATE FUNCTION iso.now(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT convert_to(extract(epoch FROM now())::text || ' ' || extract(epoch FROM statement_timestamp())::text, 'UTF8') $$;
CREATE FUNCTION iso.setgucs(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('work_mem', '77MB', false);
  PERFORM set_config('application_name', 'hijacked', false);
  SET search_path = iso_nowhere;
  RETURN 'set'::bytea;
END $$;
CREATE FUNCTION iso.showgucs(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT convert_to(current_setting('work_mem') || '|' || current_setting('search_path') || '|' || current_setting('application_name'), 'UTF8') $$;
CREATE FUNCTION iso.advlock(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT pg_advisory_lock(4242)::text::bytea $$;
CREATE FUNCTION iso.ins(b bytea) RETURNS bytea LANGUAGE sql AS $$
  INSERT INTO iso.ins SELECT generate_series(1, 37) RETURNING 'ok'::bytea $$;
CREATE FUNCTION iso.hold(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT count(*)::text::bytea FROM iso.victim, pg_sleep(convert_from(b, 'UTF8')::float8) $$;
CREATE FUNCTION iso.echo(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
CREATE FUNCTION iso.one(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'one'::bytea $$;
CREATE FUNCTION iso.two(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'two'::bytea $$;
SET ROLE iso_plain;
CREATE FUNCTION iso.owned(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'owned'::bytea $$;
RESET ROLE;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA iso TO standbyd_repl;
SELECT standbyd.register_handler(300, 'iso_now', 'iso.now(bytea)');
SELECT standbyd.register_handler(301, 'iso_setgucs', 'iso.setgucs(bytea)');
SELECT standbyd.register_handler(302, 'iso_showgucs', 'iso.showgucs(bytea)');
SELECT standbyd.register_handler(303, 'iso_advlock', 'iso.advlock(bytea)');
SELECT standbyd.register_handler(304, 'iso_insert', 'iso.ins(bytea)');
SELECT standbyd.register_handler(305, 'iso_hold', 'iso.hold(bytea)');
SELECT standbyd.register_handler(306, 'iso_echo', 'iso.echo(bytea)');
SELECT standbyd.register_handler(308, 'iso_swap', 'iso.one(bytea)');
`

// The owner policy refuses iso.owned at registration (42501), so it is put
// into the table directly, as a restore or an older version could have.
const isolationOwnedSQL = `
INSERT INTO standbyd.handlers(op, name, handler) VALUES (307, 'iso_owned', 'iso.owned(bytea)');
`

var isolationOnce sync.Once

// isolationHandlers installs this file's handlers on the shared primary once.
func isolationHandlers(t *testing.T) {
	t.Helper()
	var err error
	isolationOnce.Do(func() {
		err = installIsolation(env)
		if err == nil {
			err = waitStandbyCaughtUp()
		}
	})
	if err != nil {
		t.Fatalf("installing the isolation handlers: %v", err)
	}
}

func installIsolation(e *testcluster.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := e.PrimarySQL(ctx, isolationSQL); err != nil {
		return err
	}
	_, err := e.PrimarySQL(ctx, isolationOwnedSQL)
	return err
}

func wantOK(t *testing.T, r protocol.Reply, what string) []byte {
	t.Helper()
	if err := r.Err(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return r.Payload
}

func wantServerErrorReply(t *testing.T, r protocol.Reply, sqlstate, msg string) {
	t.Helper()
	var se *protocol.ServerError
	if !errors.As(r.Err(), &se) || se.SQLState != sqlstate || !strings.Contains(se.Message, msg) {
		t.Fatalf("want error %s containing %q, got %v", sqlstate, msg, r.Err())
	}
}

// pollSQL runs sql on the primary until it prints want or the deadline passes.
func pollSQL(t *testing.T, e *testcluster.Env, sql, want string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var got string
	for {
		out, err := e.PrimarySQL(context.Background(), sql)
		got = out
		if err == nil && out == want {
			return got
		}
		if time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// now() and statement_timestamp() inside a handler are the time of its
// request, and an idle channel shows no open transaction.
// claim: extension.call-own-transaction
// claim: protocol.transactions
func TestIsolationRequestTimeAndNoIdleTransaction(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping")
	// Let the clock move past the CALL and the previous request.
	time.Sleep(300 * time.Millisecond)
	before := float64(time.Now().UnixMicro()) / 1e6
	got := string(wantOK(t, ch.call(opIsoNow, 2, nil), "now"))
	after := float64(time.Now().UnixMicro()) / 1e6
	for i, f := range strings.Fields(got) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("now reply %q: %v", got, err)
		}
		// microsecond rounding on both sides
		if v < before-0.001 || v > after+0.001 {
			t.Fatalf("value %d of %q is not within the request [%f, %f]", i, got, before, after)
		}
	}
	pid := strconv.Itoa(int(pc.PID()))
	if xs := primarySQL(t, "SELECT coalesce(xact_start::text, 'NULL') FROM pg_stat_activity WHERE pid = "+pid); xs != "NULL" {
		t.Fatalf("idle channel has xact_start %s", xs)
	}
	// During a call, pg_stat_activity.xact_start is the request's time too.
	time.Sleep(300 * time.Millisecond)
	before = float64(time.Now().UnixMicro()) / 1e6
	ch.send(protocol.AppendRequest(nil, opIsoHold, 3, []byte("1")))
	if got := pollSQL(t, env, "SELECT wait_event FROM pg_stat_activity WHERE pid = "+pid, "PgSleep", 10*time.Second); got != "PgSleep" {
		t.Fatalf("the handler did not start sleeping: wait_event %q", got)
	}
	xs := primarySQL(t, "SELECT extract(epoch FROM xact_start) FROM pg_stat_activity WHERE pid = "+pid)
	seen := float64(time.Now().UnixMicro()) / 1e6
	v, err := strconv.ParseFloat(xs, 64)
	if err != nil || v < before-0.001 || v > seen+0.001 {
		t.Fatalf("xact_start during the call is %q, not within [%f (request sent), %f]", xs, before, seen)
	}
	wantOK(t, ch.reply(), "hold")
	ch.finish()
}

// A handler that writes and then raises: its write is rolled back with its
// transaction, the error is the reply, the channel goes on.
// claim: extension.handler-error-reply
func TestIsolationHandlerErrorRollsBackItsWrite(t *testing.T) {
	needEnv(t)
	primarySQL(t, `DROP SCHEMA IF EXISTS iso_err CASCADE; CREATE SCHEMA iso_err; CREATE TABLE iso_err.t(v text);
CREATE FUNCTION iso_err.write_then_fail(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN INSERT INTO iso_err.t VALUES ('written'); RAISE EXCEPTION 'after the write' USING ERRCODE = '22P02'; END $$;
CREATE FUNCTION iso_err.write(b bytea) RETURNS bytea LANGUAGE sql AS $$ INSERT INTO iso_err.t VALUES ('kept') RETURNING 'ok'::bytea $$;
SELECT standbyd.register_handler(323, 'iso_write_then_fail', 'iso_err.write_then_fail(bytea)');
SELECT standbyd.register_handler(324, 'iso_write', 'iso_err.write(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(323); SELECT standbyd.unregister_handler(324); DROP SCHEMA IF EXISTS iso_err CASCADE")
	})
	ch := enter(t, superuser(t, "primary", ""))
	wantServerErrorReply(t, ch.call(323, 1, nil), "22P02", "after the write")
	wantOK(t, ch.call(324, 2, nil), "a write after the error")
	if got := primarySQL(t, "SELECT string_agg(v, ',') FROM iso_err.t"); got != "kept" {
		t.Fatalf("iso_err.t holds %q, want only the second call's row", got)
	}
	ch.finish()
}

// The setting built-in reports the channel session's value: one the
// channel's role or its connection options set, never one a handler set;
// a superuser-only parameter needs pg_read_all_settings, and a grant of it
// is seen at the next request. The role may only enter the channel: hello,
// ping, N and wal need no more.
// claim: extension.setting-privilege
// claim: extension.builtins-need-entering
func TestIsolationSettingValueAndPrivilege(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	primarySQL(t, `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'iso_settings') THEN CREATE ROLE iso_settings LOGIN; END IF;
END $$;
GRANT USAGE ON SCHEMA standbyd TO iso_settings;
GRANT EXECUTE ON PROCEDURE standbyd.serve() TO iso_settings;
ALTER ROLE iso_settings SET work_mem = '5MB'`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), `REVOKE pg_read_all_settings FROM iso_settings; REVOKE ALL ON PROCEDURE standbyd.serve() FROM iso_settings;
REVOKE ALL ON SCHEMA standbyd FROM iso_settings; DROP ROLE IF EXISTS iso_settings`)
	})
	ch := enter(t, superuser(t, "primary", "user=iso_settings"))
	// hello, ping, N and wal need nothing beyond entering the channel.
	wantOK(t, ch.call(protocol.OpHello, 11, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1 << 20}.Append(nil)), "hello")
	wantOK(t, ch.call(protocol.OpPing, 12, nil), "ping")
	wantOK(t, ch.call(protocol.OpN, 13, protocol.AppendN(nil, [3]int32{1, 2, 3})), "N")
	wantOK(t, ch.call(protocol.OpWAL, 14, nil), "wal")
	if got := string(wantOK(t, ch.call(protocol.OpSetting, 1, []byte("work_mem")), "work_mem set by the role")); got != "5MB" {
		t.Fatalf("work_mem set by ALTER ROLE: %q", got)
	}
	// The message names the parameter; pg_read_all_settings is in it on 15,
	// in the detail from 16 on.
	wantServerErrorReply(t, ch.call(protocol.OpSetting, 2, []byte("data_directory")), "42501", `"data_directory"`)
	primarySQL(t, "GRANT pg_read_all_settings TO iso_settings")
	if got, want := string(wantOK(t, ch.call(protocol.OpSetting, 3, []byte("data_directory")), "data_directory after the grant")), primarySQL(t, "SHOW data_directory"); got != want {
		t.Fatalf("data_directory after the grant: %q, want %q", got, want)
	}
	ch.finish()

	su := enter(t, superuser(t, "primary", "options='-c work_mem=7MB'"))
	if got := string(wantOK(t, su.call(protocol.OpSetting, 1, []byte("work_mem")), "work_mem from the connection options")); got != "7MB" {
		t.Fatalf("work_mem from the connection options: %q", got)
	}
	wantOK(t, su.call(opIsoSetGUCs, 2, nil), "a handler sets work_mem to 77MB")
	if got := string(wantOK(t, su.call(protocol.OpSetting, 3, []byte("work_mem")), "work_mem after the handler")); got != "7MB" {
		t.Fatalf("work_mem after a handler set it: %q, want the session's 7MB", got)
	}
	su.finish()
}

// A handler's SET, set_config(..., false) and search_path change end with
// its request: the next handler and the setting built-in see the session's
// values.
// claim: extension.settings-undone
func TestIsolationSettingsDoNotLeak(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	pc := superuser(t, "primary", "application_name=isoapp")
	ch := enter(t, pc)
	base := string(wantOK(t, ch.call(opIsoShowGUCs, 1, nil), "show before"))
	wantOK(t, ch.call(opIsoSetGUCs, 2, nil), "set")
	if got := string(wantOK(t, ch.call(opIsoShowGUCs, 3, nil), "show after")); got != base {
		t.Fatalf("settings after a handler changed them: %q, before %q", got, base)
	}
	if got := string(wantOK(t, ch.call(protocol.OpSetting, 4, []byte("work_mem")), "setting")); got == "77MB" {
		t.Fatal("the setting built-in sees work_mem set by a handler")
	}
	ch.finish()
}

// A session-level advisory lock taken by a handler does not outlive its
// request.
// claim: extension.advisory-locks-released
func TestIsolationAdvisoryLockReleased(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	wantOK(t, ch.call(opIsoAdvLock, 1, nil), "advisory lock")
	pid := strconv.Itoa(int(pc.PID()))
	if locks := primarySQL(t, "SELECT count(*) FROM pg_locks WHERE pid = "+pid+" AND locktype = 'advisory'"); locks != "0" {
		t.Fatalf("the idle channel holds %s advisory locks", locks)
	}
	// Another session can take the lock at once.
	if got := primarySQL(t, "SELECT pg_try_advisory_lock(4242)"); got != "t" {
		t.Fatalf("pg_try_advisory_lock after the request: %s", got)
	}
	ch.finish()
	if !strings.Contains(env.Log("primary"), "released session-level advisory locks taken by op 303") {
		t.Fatal("the server log does not say that the lock was released")
	}
}

// Writes of handlers reach pg_stat_user_tables while the channel stays open.
// claim: extension.statistics-while-open
// claim: extension.statistics-idle
func TestIsolationStatisticsWhileOpen(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	before, _ := strconv.Atoi(primarySQL(t, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'iso.ins'::regclass"))
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	for i := 1; i <= 3; i++ {
		wantOK(t, ch.call(opIsoInsert, uint32(i), nil), "insert")
	}
	want := strconv.Itoa(before + 3*37)
	if got := pollSQL(t, env, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'iso.ins'::regclass", want, 20*time.Second); got != want {
		t.Fatalf("n_tup_ins = %s while the channel is open, want %s", got, want)
	}
	ch.finish()
}

// A cancel while idle is dropped and the channel goes on; a cancel during a
// handler is that request's error reply 57014 and the channel goes on.
// claim: extension.cancel-idle-ignored
// claim: protocol.transactions
func TestIsolationCancelIdleAndDuringHandler(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping")
	pid := strconv.Itoa(int(pc.PID()))
	seen := strings.Count(env.Log("primary"), "ignored a cancel request while idle")
	if got := primarySQL(t, "SELECT pg_cancel_backend("+pid+")"); got != "t" {
		t.Fatalf("pg_cancel_backend: %s", got)
	}
	// The server log says the cancel was ignored; the bound is generous (the
	// line comes as soon as the backend handles the interrupt).
	waitFor(t, 30*time.Second, "the server log line about the ignored cancel", func() bool {
		return strings.Count(env.Log("primary"), "ignored a cancel request while idle") > seen
	})
	wantOK(t, ch.call(protocol.OpPing, 2, nil), "ping after a cancel while idle")

	ch.send(protocol.AppendRequest(nil, opIsoHold, 3, []byte("30")))
	// Cancel once the handler is running (its wait event is PgSleep).
	if got := pollSQL(t, env, "SELECT wait_event FROM pg_stat_activity WHERE pid = "+pid, "PgSleep", 10*time.Second); got != "PgSleep" {
		t.Fatalf("the handler did not start sleeping: wait_event %q", got)
	}
	primarySQL(t, "SELECT pg_cancel_backend("+pid+")")
	wantServerErrorReply(t, ch.reply(), "57014", "user request")
	wantOK(t, ch.call(protocol.OpPing, 4, nil), "ping after a cancelled handler")
	ch.finish()
}

// A reply larger than the maximum frame the client announced in hello is an
// error reply; the channel goes on.
// claim: extension.reply-over-client-max
// claim: protocol.reply-over-client-max
// claim: protocol.hello-client-max-frame
func TestIsolationReplyOverClientMaxFrame(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	ch := enter(t, superuser(t, "primary", ""))
	hello := protocol.HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 4096, ClientName: "iso"}
	wantOK(t, ch.call(protocol.OpHello, 1, hello.Append(nil)), "hello")
	wantOK(t, ch.call(opIsoEcho, 2, make([]byte, 4096-12)), "echo that just fits")
	wantServerErrorReply(t, ch.call(opIsoEcho, 3, make([]byte, 4096-11)), "54000", "client's maximum frame size")
	wantOK(t, ch.call(protocol.OpPing, 4, nil), "ping after a refused reply")
	ch.finish()
}

// Handlers are cached per session; a re-registration, a DROP FUNCTION, a
// REVOKE and the owner policy take effect at the next call.
// claim: extension.owner-policy
// claim: extension.registry-by-name
// claim: extension.handler-cache
func TestIsolationHandlerCacheFollowsChanges(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	ch := enter(t, superuser(t, "primary", "user=standbyd_repl"))
	if got := string(wantOK(t, ch.call(opIsoSwap, 1, nil), "swap")); got != "one" {
		t.Fatalf("swap = %q", got)
	}
	primarySQL(t, "SELECT standbyd.register_handler(308, 'iso_swap', 'iso.two(bytea)')")
	if got := string(wantOK(t, ch.call(opIsoSwap, 2, nil), "swap after re-registration")); got != "two" {
		t.Fatalf("swap after re-registration = %q", got)
	}
	primarySQL(t, "REVOKE EXECUTE ON FUNCTION iso.two(bytea) FROM standbyd_repl, PUBLIC")
	wantServerErrorReply(t, ch.call(opIsoSwap, 3, nil), "42501", "permission denied")
	primarySQL(t, "DROP FUNCTION iso.two(bytea)")
	wantServerErrorReply(t, ch.call(opIsoSwap, 4, nil), "42883", `function iso.two(bytea) registered for handler "iso_swap" does not exist`)
	wantServerErrorReply(t, ch.call(opIsoOwned, 5, nil), "42501", `"iso_plain"`)
	ch.finish()
}

// The handler cache follows changes to the function (a new body, a new
// owner, a rename, a drop and re-create), to the owner's role (losing
// superuser) and to the function's schema (a rename): each is seen at the
// next call of a channel opened before it. The owner policy refuses a
// function of a plain role at registration with 42501, and a later ALTER
// FUNCTION ... OWNER TO at the next call, naming the handler and the owner.
// A cached registry costs no query per call: the registry table is scanned
// when the channel loads it (first call, after a change), never by the
// calls in between.
// claim: extension.owner-policy
// claim: extension.handler-cache
func TestIsolationHandlerCacheFollowsFunctionRoleSchema(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	primarySQL(t, `DROP SCHEMA IF EXISTS iso_cache CASCADE; DROP SCHEMA IF EXISTS iso_cache2 CASCADE;
DROP ROLE IF EXISTS iso_su; CREATE ROLE iso_su SUPERUSER;
CREATE SCHEMA iso_cache; GRANT USAGE ON SCHEMA iso_cache TO standbyd_repl;
CREATE FUNCTION iso_cache.f(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$ BEGIN RETURN 'v1'::bytea; END $$;
ALTER FUNCTION iso_cache.f(bytea) OWNER TO iso_su;
CREATE FUNCTION iso_cache.scans(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT (pg_stat_get_xact_numscans('standbyd.handlers'::regclass) + coalesce((SELECT sum(pg_stat_get_xact_numscans(indexrelid))
    FROM pg_index WHERE indrelid = 'standbyd.handlers'::regclass), 0))::text::bytea $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA iso_cache TO standbyd_repl;
SELECT standbyd.register_handler(320, 'iso_cache', 'iso_cache.f(bytea)');
SELECT standbyd.register_handler(321, 'iso_scans', 'iso_cache.scans(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), `SELECT standbyd.unregister_handler(320); SELECT standbyd.unregister_handler(321);
DROP SCHEMA IF EXISTS iso_cache CASCADE; DROP SCHEMA IF EXISTS iso_cache2 CASCADE; DROP ROLE IF EXISTS iso_su`)
	})
	// At registration: a function of a plain role is refused with 42501.
	_, err := superuser(t, "primary", "").Exec(ctxT(t, 10*time.Second), "SELECT standbyd.register_handler(322, 'iso_refused', 'iso.owned(bytea)')").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, `owned by role "iso_plain"`) {
		t.Fatalf("registering a function of a plain role: %v, want 42501 naming iso_plain", err)
	}

	ch := enter(t, superuser(t, "primary", "user=standbyd_repl"))
	id := uint32(0)
	want := func(what, out string) {
		t.Helper()
		id++
		if got := string(wantOK(t, ch.call(320, id, nil), what)); got != out {
			t.Fatalf("%s: %q, want %q", what, got, out)
		}
	}
	wantErr := func(what, sqlstate, msg string) {
		t.Helper()
		id++
		r := ch.call(320, id, nil)
		var se *protocol.ServerError
		if !errors.As(r.Err(), &se) || se.SQLState != sqlstate || !strings.Contains(se.Message, msg) {
			t.Fatalf("%s: %v, want %s containing %q", what, r.Err(), sqlstate, msg)
		}
	}
	want("first call", "v1")
	primarySQL(t, "CREATE OR REPLACE FUNCTION iso_cache.f(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$ BEGIN RETURN 'v2'::bytea; END $$")
	want("after CREATE OR REPLACE", "v2")
	primarySQL(t, "ALTER FUNCTION iso_cache.f(bytea) OWNER TO iso_plain")
	wantErr("after ALTER FUNCTION OWNER TO a plain role", "42501", `handler "iso_cache" is not run: its function iso_cache.f(bytea) is owned by role "iso_plain"`)
	primarySQL(t, "ALTER FUNCTION iso_cache.f(bytea) OWNER TO iso_su")
	want("after ALTER FUNCTION OWNER TO a superuser", "v2")
	primarySQL(t, "ALTER ROLE iso_su NOSUPERUSER")
	wantErr("after the owner lost superuser", "42501", `owned by role "iso_su"`)
	primarySQL(t, "ALTER ROLE iso_su SUPERUSER")
	want("after the owner is superuser again", "v2")
	primarySQL(t, "ALTER FUNCTION iso_cache.f(bytea) RENAME TO g")
	wantErr("after renaming the function", "42883", "function iso_cache.f(bytea) registered for handler")
	primarySQL(t, "ALTER FUNCTION iso_cache.g(bytea) RENAME TO f")
	want("after renaming it back", "v2")
	primarySQL(t, "ALTER SCHEMA iso_cache RENAME TO iso_cache2")
	wantErr("after renaming the schema", "42883", "function iso_cache.f(bytea) registered for handler")
	primarySQL(t, "ALTER SCHEMA iso_cache2 RENAME TO iso_cache")
	want("after renaming the schema back", "v2")
	primarySQL(t, `DROP FUNCTION iso_cache.f(bytea);
CREATE FUNCTION iso_cache.f(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$ BEGIN RETURN 'v3'::bytea; END $$;
ALTER FUNCTION iso_cache.f(bytea) OWNER TO iso_su; GRANT EXECUTE ON FUNCTION iso_cache.f(bytea) TO standbyd_repl`)
	want("after DROP and CREATE", "v3")

	// The backend's scan counts of standbyd.handlers (and its indexes) not
	// yet sent to the statistics: they only grow between two sends (at most
	// one a second), so calls back to back that do not read the registry
	// show the same count, or a smaller one after a send.
	scans := func() int {
		id++
		n, err := strconv.Atoi(string(wantOK(t, ch.call(321, id, nil), "scans")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	primarySQL(t, "SELECT standbyd.register_handler(320, 'iso_cache', 'iso_cache.f(bytea)')") // a change: read again
	if n := scans(); n < 1 {
		t.Fatalf("the call after a registry change shows %d scans of standbyd.handlers: the count does not see the registry being read", n)
	}
	prev := scans()
	for i := 0; i < 20; i++ {
		want("a cached call", "v3")
		n := scans()
		if n > prev {
			t.Fatalf("standbyd.handlers scanned %d more times by cached calls (call %d)", n-prev, i)
		}
		prev = n
	}
	ch.finish()
}

// page needs superuser: pg_read_all_data is not enough (it would show dead
// tuples and rows hidden by row-level security). A missing fork is a clear
// error.
func TestIsolationPagePrivilegeAndMissingFork(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	primarySQL(t, `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'iso_reader') THEN
    CREATE ROLE iso_reader LOGIN IN ROLE pg_read_all_data;
  END IF;
END $$;
GRANT USAGE ON SCHEMA standbyd TO iso_reader;
GRANT EXECUTE ON PROCEDURE standbyd.serve() TO iso_reader`)
	page := append([]byte{0, 0, 0, 0, 0}, "iso.victim"...)
	ch := enter(t, superuser(t, "primary", "user=iso_reader"))
	wantServerErrorReply(t, ch.call(protocol.OpPage, 1, page), "42501", "superuser")
	ch.finish()

	su := enter(t, superuser(t, "primary", ""))
	if p := wantOK(t, su.call(protocol.OpPage, 2, page), "page as superuser"); len(p) != 8192 {
		t.Fatalf("page of %d bytes", len(p))
	}
	primarySQL(t, "DROP TABLE IF EXISTS iso.nofsm; CREATE TABLE iso.nofsm(n int); INSERT INTO iso.nofsm VALUES (1)")
	fsm := append([]byte{1, 0, 0, 0, 0}, "iso.nofsm"...)
	wantServerErrorReply(t, su.call(protocol.OpPage, 3, fsm), "22023", `has no fsm fork`)
	su.finish()
}

// The channel on a server of its own: settings changed by reload, a client
// that stops reading, and a recovery conflict on a hot standby upstream.
// claim: extension.recovery-conflict
// claim: extension.client-stops-reading
// claim: protocol.transactions
// claim: extension.settings-table
func TestIsolationOwnServer(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	if err := installIsolation(e); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 5*time.Minute)
	setIdleTimeout := func(t *testing.T, v string) { t.Helper(); setIdleTimeoutByReload(t, e, v) }

	t.Run("turning idle_timeout on by reload keeps a busy channel", func(t *testing.T) {
		setIdleTimeout(t, "0")
		pc := connectTo(t, e, "")
		ch := enter(t, pc)
		id := uint32(0)
		pingFor := func(d time.Duration) {
			for end := time.Now().Add(d); time.Now().Before(end); {
				id++
				wantOK(t, ch.call(protocol.OpPing, id, nil), "ping")
				time.Sleep(100 * time.Millisecond)
			}
		}
		pingFor(1500 * time.Millisecond)
		setIdleTimeout(t, "1s")
		pingFor(2 * time.Second)
		ch.finish()
	})

	t.Run("a client that stops reading is ended by idle_timeout", func(t *testing.T) {
		setIdleTimeout(t, "1s")
		pc := connectTo(t, e, "")
		enter(t, pc)
		pid := strconv.Itoa(int(pc.PID()))
		payload := make([]byte, 512*1024)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fe := pc.Frontend()
			for i := 0; i < 64; i++ {
				fe.Send(&pgproto3.CopyData{Data: protocol.AppendRequest(nil, opIsoEcho, uint32(i+1), payload)})
				if err := fe.Flush(); err != nil {
					return // the backend is gone
				}
			}
		}()
		// A generous bound (the timeout is 1 s) for a loaded machine.
		gone := pollSQL(t, e, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid, "0", 60*time.Second)
		if gone != "0" {
			t.Fatalf("the backend of a client that stopped reading is still there")
		}
		<-done
		// The log names the configured timeout (1s): the time without
		// progress after which the channel was dropped.
		said := false
		for _, l := range strings.Split(e.Log("primary"), "\n") {
			said = said || strings.Contains(l, "["+pid+"]") && strings.Contains(l, "terminating standbyd channel: the client read no reply for 1000 ms")
		}
		if !said {
			t.Fatal("the server log does not say why the channel ended, with the timeout of 1000 ms")
		}
	})

	t.Run("a client that stops reading can be terminated", func(t *testing.T) {
		setIdleTimeout(t, "0")
		// A reply of 1 MB, which no socket buffer holds, written after a
		// mark the test can see.
		if _, err := e.PrimarySQL(ctx, `CREATE TABLE iso.marks(n int);
CREATE FUNCTION iso.big(b bytea) RETURNS bytea LANGUAGE sql AS $$
  INSERT INTO iso.marks VALUES (1) RETURNING convert_to(repeat('x', 1048576), 'UTF8') $$;
SELECT standbyd.register_handler(311, 'iso_big', 'iso.big(bytea)')`); err != nil {
			t.Fatal(err)
		}
		pc := connectTo(t, e, "")
		ch := enter(t, pc)
		pid := strconv.Itoa(int(pc.PID()))
		ch.send(protocol.AppendRequest(nil, 311, 1, nil))
		// Committed before the reply is written: then the backend is stuck.
		if got := pollSQL(t, e, "SELECT count(*) FROM iso.marks", "1", 30*time.Second); got != "1" {
			t.Fatalf("the request did not run: %q", got)
		}
		// idle_timeout 0 turns it off: 3 s later the stuck backend is still
		// there (at 1 s the previous subtest's was ended).
		time.Sleep(3 * time.Second)
		if n := pollSQL(t, e, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid, "1", 10*time.Second); n != "1" {
			t.Fatal("with standbyd.idle_timeout = 0 the backend of a client that stopped reading was ended")
		}
		if _, err := e.PrimarySQL(ctx, "SELECT pg_terminate_backend("+pid+")"); err != nil {
			t.Fatal(err)
		}
		if gone := pollSQL(t, e, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid, "0", 30*time.Second); gone != "0" {
			t.Fatal("pg_terminate_backend did not end a backend whose client stopped reading")
		}
	})

	t.Run("a recovery conflict on a hot standby is an error reply", func(t *testing.T) {
		for _, sql := range []string{"ALTER SYSTEM SET max_standby_streaming_delay = '100ms'", "SELECT pg_reload_conf()"} {
			if _, err := e.SQL(ctx, "standby", sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		sc, err := pgconn.Connect(ctx, "host="+e.SocketDir+" port="+strconv.Itoa(e.StandbyPort)+" user=postgres dbname=postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close(context.Background())
		// The standby has the tables and the new setting.
		if got := pollStandby(t, e, "SELECT current_setting('max_standby_streaming_delay') || '/' || count(*) FROM iso.victim", "100ms/1000"); got != "100ms/1000" {
			t.Fatalf("standby not ready: %q", got)
		}
		ch := enter(t, sc)
		pid := strconv.Itoa(int(sc.PID()))
		ch.send(protocol.AppendRequest(nil, opIsoHold, 1, []byte("60")))
		if got := pollStandby(t, e, "SELECT wait_event FROM pg_stat_activity WHERE pid = "+pid, "PgSleep"); got != "PgSleep" {
			t.Fatalf("the handler did not start: %q", got)
		}
		// Rows the handler's snapshot can still see are removed on the primary.
		if _, err := e.PrimarySQL(ctx, "DELETE FROM iso.victim"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.PrimarySQL(ctx, "VACUUM iso.victim"); err != nil {
			t.Fatal(err)
		}
		wantServerErrorReply(t, ch.reply(), "40001", "conflict with recovery")
		wantOK(t, ch.call(protocol.OpPing, 2, nil), "ping after the conflict")
		ch.finish()
	})
}

// pollStandby is pollSQL on the standby.
func pollStandby(t *testing.T, e *testcluster.Env, sql, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.SQL(context.Background(), "standby", sql)
		if err == nil && out == want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A LANGUAGE sql handler is planned once per session, not at every call
// (each call is a transaction of its own; the plan must outlive it).
// claim: extension.handler-cache
func TestIsolationSQLHandlerPlannedOnce(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	pc := superuser(t, "primary", "options='-c log_planner_stats=on'")
	ch := enter(t, pc)
	tag := "[" + strconv.Itoa(int(pc.PID())) + "]"
	plans := func() int {
		n := 0
		for _, line := range strings.Split(env.Log("primary"), "\n") {
			if strings.Contains(line, tag) && strings.Contains(line, "PLANNER STATISTICS") {
				n++
			}
		}
		return n
	}
	// The plan cache tries custom plans for the first five executions.
	for i := 1; i <= 10; i++ {
		wantOK(t, ch.call(opIsoEcho, uint32(i), []byte("x")), "echo")
	}
	wantOK(t, ch.call(protocol.OpPing, 11, nil), "ping")
	before := plans()
	if before == 0 {
		t.Fatal("log_planner_stats logged nothing: the test cannot see planning")
	}
	for i := 12; i <= 31; i++ {
		if got := string(wantOK(t, ch.call(opIsoEcho, uint32(i), []byte("y")), "echo")); got != "y" {
			t.Fatalf("echo = %q", got)
		}
	}
	ch.finish()
	if after := plans(); after != before {
		t.Fatalf("20 calls of a SQL handler planned %d times", after-before)
	}
}

// Text in frames is UTF-8 whatever the database encoding: a handler's error
// message and a setting's value from a LATIN1 database (set for the
// database: ALTER DATABASE ... SET).
// claim: protocol.conventions
// claim: extension.setting-privilege
func TestIsolationTextIsUTF8(t *testing.T) {
	needEnv(t)
	primarySQL(t, "DROP DATABASE IF EXISTS iso_latin1")
	primarySQL(t, "CREATE DATABASE iso_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	t.Cleanup(func() { _, _ = env.PrimarySQL(context.Background(), "DROP DATABASE IF EXISTS iso_latin1 WITH (FORCE)") })
	setup := superuser(t, "primary", "dbname=iso_latin1 client_encoding=UTF8")
	// Run here, the value is stored in LATIN1, as the database reads it.
	if _, err := setup.Exec(ctxT(t, 30*time.Second), `
ALTER DATABASE iso_latin1 SET iso.word = 'café';
CREATE EXTENSION standbyd;
CREATE FUNCTION public.fails(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'crème brûlée' USING ERRCODE = '22P02'; END $$;
SELECT standbyd.register_handler(300, 'fails', 'public.fails(bytea)');`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	pc := superuser(t, "primary", "dbname=iso_latin1 client_encoding=UTF8")
	ch := enter(t, pc)
	wantServerErrorReply(t, ch.call(opIsoNow, 1, nil), "22P02", "crème brûlée")
	if got := string(wantOK(t, ch.call(protocol.OpSetting, 2, []byte("iso.word")), "setting")); got != "café" {
		t.Fatalf("setting iso.word = %q (% x)", got, got)
	}
	ch.finish()
}

// With transaction_timeout (PostgreSQL 17+) set for the channel's session,
// an idle channel lives on: it is outside any transaction between requests;
// a call that outlives it ends the session with FATAL 25P04.
// claim: extension.transaction-timeout
func TestIsolationTransactionTimeoutSparesIdleChannel(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	if v, _ := strconv.Atoi(primarySQL(t, "SHOW server_version_num")); v < 170000 {
		// Nothing to spare before 17: check that the server indeed has no
		// such timer. make test-majors runs this test on 17, 18 and 19.
		if _, err := env.PrimarySQL(context.Background(), "SHOW transaction_timeout"); err == nil ||
			!strings.Contains(err.Error(), "unrecognized configuration parameter") {
			t.Fatalf("server %d: SHOW transaction_timeout: %v, want unrecognized", v, err)
		}
		return
	}
	pc := superuser(t, "primary", "options='-c transaction_timeout=300'")
	ch := enter(t, pc)
	wantOK(t, ch.call(opIsoEcho, 1, []byte("a")), "a SQL request")
	// Idle for several times the timeout, then again after a SQL request.
	time.Sleep(time.Second)
	wantOK(t, ch.call(opIsoEcho, 2, []byte("b")), "a SQL request after idling")
	time.Sleep(time.Second)
	wantOK(t, ch.call(protocol.OpPing, 3, nil), "ping after idling")
	// A handler that sleeps 5 s, ten times the timeout's 300 ms, is in its
	// call's transaction: the timeout fires and ends the session.
	ch.send(protocol.AppendRequest(nil, opIsoHold, 4, []byte("5")))
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 30*time.Second))
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			if pe.Severity != "FATAL" || pe.Code != "25P04" {
				t.Fatalf("a call outliving transaction_timeout: %s %s %s, want FATAL 25P04", pe.Severity, pe.Code, pe.Message)
			}
			return
		}
		if err != nil {
			t.Fatalf("a call outliving transaction_timeout: %v, want FATAL 25P04", err)
		}
		if d, ok := msg.(*pgproto3.CopyData); ok {
			t.Fatalf("a call outliving transaction_timeout got a reply % x, want FATAL 25P04", d.Data)
		}
	}
}

// idle_session_timeout and idle_in_transaction_session_timeout never fire
// on an idle channel (its backend is active): with both at 300 ms for the
// channel's session it lives through idling several times that long. The
// same options end an ordinary idle session, so they are in effect.
// claim: extension.idle-timeout
func TestIsolationIdleSessionTimeoutsNeverFire(t *testing.T) {
	needEnv(t)
	const opts = "options='-c idle_session_timeout=300 -c idle_in_transaction_session_timeout=300'"
	plain := superuser(t, "primary", opts)
	pc := superuser(t, "primary", opts)
	if got := func() string {
		r, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT current_setting('idle_session_timeout') || ' ' || current_setting('idle_in_transaction_session_timeout')").ReadAll()
		if err != nil || len(r) != 1 || len(r[0].Rows) != 1 {
			t.Fatalf("reading the timeouts: %v", err)
		}
		return string(r[0].Rows[0][0])
	}(); got != "300ms 300ms" {
		t.Fatalf("the channel session's timeouts are %q, want 300ms 300ms", got)
	}
	ch := enter(t, pc)
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping")
	time.Sleep(1500 * time.Millisecond)
	wantOK(t, ch.call(protocol.OpPing, 2, nil), "ping after idling 1.5 s")
	time.Sleep(1500 * time.Millisecond)
	wantOK(t, ch.call(protocol.OpSetting, 3, []byte("idle_session_timeout")), "setting after idling again")
	ch.finish()
	// The control: the ordinary session idled as long and was ended.
	if _, err := plain.Exec(ctxT(t, 10*time.Second), "SELECT 1").ReadAll(); err == nil {
		t.Fatal("an ordinary session with the same options survived 3 s idle: the timeouts were not in effect")
	}
}

// page takes any relation name SQL can write: two quoted identifiers of 63
// characters are 131 bytes.
// claim: protocol.page-name-length
func TestIsolationPageLongQualifiedName(t *testing.T) {
	needEnv(t)
	schema, table := strings.Repeat("S", 63), strings.Repeat("t", 63)
	name := `"` + schema + `"."` + table + `"`
	primarySQL(t, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE; CREATE SCHEMA "`+schema+`"; CREATE TABLE `+name+`(n int); INSERT INTO `+name+` VALUES (1)`)
	t.Cleanup(func() { _, _ = env.PrimarySQL(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	ch := enter(t, superuser(t, "primary", ""))
	if p := wantOK(t, ch.call(protocol.OpPage, 1, append([]byte{0, 0, 0, 0, 0}, name...)), "page of a long name"); len(p) != 8192 {
		t.Fatalf("page of %d bytes", len(p))
	}
	ch.finish()
}

// standbyd.idle_timeout is on by default, at wal_sender_timeout's 60 s: a
// half-open connection does not keep a backend for ever.
func TestIsolationIdleTimeoutDefault(t *testing.T) {
	needEnv(t)
	if got := primarySQL(t, "LOAD 'standbyd'; SELECT setting || ' ' || boot_val FROM pg_settings WHERE name = 'standbyd.idle_timeout'"); got != "60000 60000" {
		t.Fatalf("standbyd.idle_timeout setting and default: %q", got)
	}
}

// One unusable registry row does not break the other ops nor hello: a
// function in a schema the channel role cannot use (called like a call by
// OID, EXECUTE being what counts) and a name that is no function name.
func TestIsolationOneBadRowBreaksNothingElse(t *testing.T) {
	needEnv(t)
	isolationHandlers(t)
	primarySQL(t, `DROP SCHEMA IF EXISTS iso_private CASCADE; CREATE SCHEMA iso_private;
CREATE FUNCTION iso_private.f(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'private'::bytea $$;
GRANT EXECUTE ON FUNCTION iso_private.f(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(309, 'iso_private', 'iso_private.f(bytea)');
INSERT INTO standbyd.handlers(op, name, handler) VALUES (310, 'iso_badname', 'a.b.c')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "DELETE FROM standbyd.handlers WHERE op IN (309, 310); DROP SCHEMA IF EXISTS iso_private CASCADE")
	})
	ch := enter(t, superuser(t, "primary", "user=standbyd_repl"))
	hello := protocol.HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 1 << 20, ClientName: "iso"}
	wantOK(t, ch.call(protocol.OpHello, 1, hello.Append(nil)), "hello")
	if got := string(wantOK(t, ch.call(opIsoEcho, 2, []byte("still")), "another handler")); got != "still" {
		t.Fatalf("echo = %q", got)
	}
	if got := string(wantOK(t, ch.call(309, 3, nil), "a handler in a schema without USAGE")); got != "private" {
		t.Fatalf("private = %q", got)
	}
	wantServerErrorReply(t, ch.call(310, 4, nil), "42602", `"a.b.c"`)
	ch.finish()
}
