package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/conninfo"
	"github.com/standbyd/standbyd/internal/pgconf"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// Registered handlers used by the tests (op codes 256-263).
const (
	opEcho     = 256 // sql: 'echo:' || payload
	opPut      = 257 // plpgsql: upsert into e2e.kv, returns 'ok'
	opFail     = 258 // raises 22P02 with a message
	opNap      = 259 // pg_sleep(payload as text seconds)
	opCount    = 260 // rows of e2e.kv as text
	opSecret   = 261 // no EXECUTE for the channel role
	opBump     = 262 // UPDATE e2e.counter, returns the new value
	opDeferred = 263 // violates a deferred foreign key: fails at commit
)

const handlerSQL = `
DROP SCHEMA IF EXISTS e2e CASCADE;
CREATE SCHEMA e2e;
GRANT USAGE ON SCHEMA e2e TO standbyd_repl;
CREATE TABLE e2e.kv(k text PRIMARY KEY, v bytea);
CREATE TABLE e2e.counter(id int PRIMARY KEY, n bigint NOT NULL) WITH (autovacuum_enabled = off);
INSERT INTO e2e.counter VALUES (1, 0);
CREATE TABLE e2e.parent(id int PRIMARY KEY);
CREATE TABLE e2e.child(pid int REFERENCES e2e.parent DEFERRABLE INITIALLY DEFERRED);
GRANT ALL ON ALL TABLES IN SCHEMA e2e TO standbyd_repl;
CREATE FUNCTION e2e.echo(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'echo:'::bytea || b $$;
CREATE FUNCTION e2e.put(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO e2e.kv VALUES (convert_from(b, 'UTF8'), b) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
  RETURN 'ok'::bytea;
END $$;
CREATE FUNCTION e2e.fail(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bad request of % bytes', length(b) USING ERRCODE = '22P02'; END $$;
CREATE FUNCTION e2e.nap(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT pg_sleep(convert_from(b, 'UTF8')::float8)::text::bytea $$;
CREATE FUNCTION e2e.count(b bytea) RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT convert_to(count(*)::text, 'UTF8') FROM e2e.kv $$;
CREATE FUNCTION e2e.secret(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'secret'::bytea $$;
CREATE FUNCTION e2e.bump(b bytea) RETURNS bytea LANGUAGE sql AS $$
  UPDATE e2e.counter SET n = n + 1 WHERE id = 1 RETURNING convert_to(n::text, 'UTF8') $$;
CREATE FUNCTION e2e.deferred(b bytea) RETURNS bytea LANGUAGE sql AS $$
  INSERT INTO e2e.child VALUES (-1) RETURNING 'inserted'::bytea $$;
REVOKE ALL ON FUNCTION e2e.secret(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION e2e.echo(bytea), e2e.put(bytea), e2e.fail(bytea), e2e.nap(bytea),
  e2e.count(bytea), e2e.bump(bytea), e2e.deferred(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(256, 'echo', 'e2e.echo(bytea)');
SELECT standbyd.register_handler(257, 'put', 'e2e.put(bytea)');
SELECT standbyd.register_handler(258, 'fail', 'e2e.fail(bytea)');
SELECT standbyd.register_handler(259, 'nap', 'e2e.nap(bytea)');
SELECT standbyd.register_handler(260, 'count', 'e2e.count(bytea)');
SELECT standbyd.register_handler(261, 'secret', 'e2e.secret(bytea)');
SELECT standbyd.register_handler(262, 'bump', 'e2e.bump(bytea)');
SELECT standbyd.register_handler(263, 'deferred', 'e2e.deferred(bytea)');
`

var handlersOnce sync.Once

// registerHandlers installs the test handlers on the shared primary once
// (they replicate to the standby).
func registerHandlers(t *testing.T) {
	t.Helper()
	var err error
	handlersOnce.Do(func() {
		_, err = env.PrimarySQL(context.Background(), handlerSQL)
		if err == nil {
			err = waitStandbyCaughtUp()
		}
	})
	if err != nil {
		t.Fatalf("registering handlers: %v", err)
	}
}

func waitStandbyCaughtUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lsn, err := env.PrimarySQL(ctx, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		ok, err := env.SQL(ctx, "standby", "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn")
		if err == nil && ok == "t" {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("standby did not catch up")
}

// channelSession opens a conn.Session exactly as the daemon does.
func channelSession(t *testing.T) *conn.Session {
	t.Helper()
	cfg, err := pgconf.LoadDataDir(env.StandbyData, pgconf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := cfg.Get("primary_conninfo")
	res, err := conninfo.Parse(s.Value, conninfo.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := conn.Dial(ctxT(t, 30*time.Second), conn.DialOptions{Config: res.Config, ClientName: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	return sess
}

func wantServerError(t *testing.T, err error, sqlstate, msg string) {
	t.Helper()
	var se *protocol.ServerError
	if !errors.As(err, &se) || se.SQLState != sqlstate || !strings.Contains(se.Message, msg) {
		t.Fatalf("want primary error %s containing %q, got %v", sqlstate, msg, err)
	}
}

// claim: extension.handler-error-reply
// claim: api.op-names
// claim: readme.handler-by-name
func TestHandlersThroughDaemon(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)

	if out, e, code := d.call("echo", "hello", "world"); code != 0 || out != "echo:hello world\n" {
		t.Fatalf("call echo: %d %q %q", code, out, e)
	}
	if out, _, code := d.call("256", "x"); code != 0 || out != "echo:x\n" {
		t.Fatalf("call 256: %d %q", code, out)
	}
	if _, e, code := d.call("fail", "abc"); code != 3 || !strings.Contains(e, "22P02") || !strings.Contains(e, "bad request of 3 bytes") {
		t.Fatalf("call fail: %d %q", code, e)
	}
	if _, e, code := d.call("secret"); code != 3 || !strings.Contains(e, "42501") {
		t.Fatalf("call secret without EXECUTE: %d %q", code, e)
	}
	if _, e, code := d.call("0x01FF"); code != 3 || !strings.Contains(e, "42883") {
		t.Fatalf("unregistered op: %d %q", code, e)
	}
	ops, err := d.client().Ops(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]uint16{}
	for _, o := range ops.Ops {
		names[o.Name] = o.Code
	}
	for name, code := range map[string]uint16{"echo": opEcho, "put": opPut, "deferred": opDeferred, "ping": protocol.OpPing, "page": protocol.OpPage} {
		if names[name] != code {
			t.Errorf("ops: %s = %d, want %d (%v)", name, names[name], code, names)
		}
	}
}

// A reply never reports a write that could still be lost: when "ok" arrives
// the row is visible to everybody.
// claim: extension.commit-before-reply
// claim: protocol.transactions
func TestHandlerWriteIsCommittedBeforeTheReply(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	sess := channelSession(t)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 20; i++ {
		key := "commit-" + strconv.Itoa(i)
		out, err := sess.Call(ctx, opPut, []byte(key))
		if err != nil || string(out) != "ok" {
			t.Fatalf("put: %q %v", out, err)
		}
		if got := primarySQL(t, "SELECT count(*) FROM e2e.kv WHERE k = '"+key+"'"); got != "1" {
			t.Fatalf("row %s not visible right after the reply (%s)", key, got)
		}
	}
	// A commit that fails (a deferred foreign key) is the reply, and the
	// channel goes on.
	_, err := sess.Call(ctx, opDeferred, nil)
	wantServerError(t, err, "23503", "foreign key")
	if got := primarySQL(t, "SELECT count(*) FROM e2e.child"); got != "0" {
		t.Fatalf("the failed commit left %s rows", got)
	}
	if out, err := sess.Call(ctx, opEcho, []byte("after")); err != nil || string(out) != "echo:after" {
		t.Fatalf("after a failed commit: %q %v", out, err)
	}
}

// statement_timeout applies per handler call; a cancel during a call becomes
// an error reply; both leave the channel usable.
// claim: extension.handler-timeout-cancel
// claim: protocol.transactions
func TestHandlerTimeoutAndCancel(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	pc := superuser(t, "primary", "options='-c statement_timeout=300'")
	ch := enter(t, pc)
	start := time.Now()
	r := ch.call(opNap, 1, []byte("5"))
	var se *protocol.ServerError
	if !errors.As(r.Err(), &se) || se.SQLState != "57014" || !strings.Contains(se.Message, "statement timeout") {
		t.Fatalf("nap 5 with statement_timeout 300ms: %v", r.Err())
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("the timeout did not interrupt the handler (%s)", el)
	}
	time.Sleep(500 * time.Millisecond) // idle longer than the timeout: fine
	if r := ch.call(opNap, 2, []byte("0.01")); r.Err() != nil {
		t.Fatalf("short nap after a timeout: %v", r.Err())
	}
	ch.finish()

	// A cancel from another session, sent once the handler is inside
	// pg_sleep, interrupts that call only.
	pc2 := superuser(t, "primary", "")
	ch2 := enter(t, pc2)
	ch2.send(protocol.AppendRequest(nil, opNap, 4, []byte("20")))
	waitWaitEvent(t, pc2.PID(), "PgSleep")
	if got := primarySQL(t, "SELECT pg_cancel_backend("+strconv.Itoa(int(pc2.PID()))+")"); got != "t" {
		t.Fatalf("pg_cancel_backend: %s", got)
	}
	r = ch2.reply() // waits 10 s at most: the nap's 20 s would fail it
	if !errors.As(r.Err(), &se) || se.SQLState != "57014" || !strings.Contains(se.Message, "user request") || r.ID != 4 {
		t.Fatalf("cancel during a handler: id %d %v", r.ID, r.Err())
	}
	if r := ch2.call(protocol.OpPing, 5, nil); r.Err() != nil || r.ID != 5 {
		t.Fatalf("ping after a cancel: %v", r.Err())
	}
	ch2.finish()
}

// pg_terminate_backend during a handler ends the session with FATAL 57P01.
// claim: extension.terminate-fatal
func TestHandlerTerminated(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	ch.send(protocol.AppendRequest(nil, opNap, 1, []byte("20")))
	waitWaitEvent(t, pc.PID(), "PgSleep")
	primarySQL(t, "SELECT pg_terminate_backend("+strconv.Itoa(int(pc.PID()))+")")
	_, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" {
		t.Fatalf("want FATAL 57P01, got %v", err)
	}
}

// After 10,000 handler calls that read and write, the idle channel is active
// with no xmin, no transaction and no lock at all (not even a virtualxid),
// VACUUM removes the dead rows, and CREATE INDEX CONCURRENTLY on the table
// finishes while the channel stays open.
// claim: extension.nothing-held
// claim: extension.idle-no-xmin
func TestTenThousandHandlerCallsLeaveNothingHeld(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	sess := channelSession(t)
	ctx := ctxT(t, 5*time.Minute)
	before := primarySQL(t, "SELECT n FROM e2e.counter WHERE id = 1")
	for i := 0; i < 10000; i++ {
		op := uint16(opBump)
		if i%2 == 1 {
			op = opCount
		}
		if _, err := sess.Call(ctx, op, nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	b, _ := strconv.Atoi(before)
	if got := primarySQL(t, "SELECT n FROM e2e.counter WHERE id = 1"); got != strconv.Itoa(b+5000) {
		t.Fatalf("counter = %s, want %d", got, b+5000)
	}
	pid := strconv.Itoa(int(sess.BackendPID()))
	if xmin := primarySQL(t, "SELECT state || '/' || coalesce(backend_xmin::text, 'NULL') || '/' || coalesce(backend_xid::text, 'NULL') || '/' || coalesce(xact_start::text, 'NULL') FROM pg_stat_activity WHERE pid = "+pid); xmin != "active/NULL/NULL/NULL" {
		t.Fatalf("state/backend_xmin/backend_xid/xact_start = %s after the calls", xmin)
	}
	// No lock at all, not even the virtual transaction ID's (there is no
	// transaction).
	if locks := primarySQL(t, "SELECT string_agg(locktype || ':' || mode, ',') FROM pg_locks WHERE pid = "+pid); locks != "" {
		t.Fatalf("locks held while idle: %s", locks)
	}
	// 5,000 updates of one row: page pruning (which needs the same horizon
	// as VACUUM) keeps the table at a page or two when nothing holds xmin
	// back, and VACUUM finds no dead row it must keep.
	if _, kept := vacuum(t, "e2e.counter"); kept != 0 {
		t.Fatalf("VACUUM kept %d dead rows", kept)
	}
	if pages := primarySQL(t, "SELECT pg_relation_size('e2e.counter') / 8192"); pages > "3" || len(pages) > 1 {
		t.Fatalf("e2e.counter grew to %s pages: dead versions were not pruned", pages)
	}
	cic := make(chan error, 1)
	go func() {
		_, err := env.PrimarySQL(context.Background(), "CREATE INDEX CONCURRENTLY IF NOT EXISTS counter_n ON e2e.counter(n)")
		cic <- err
	}()
	select {
	case err := <-cic:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("CREATE INDEX CONCURRENTLY still waiting after 60s: the channel holds something")
	}
	if _, err := sess.Call(ctx, opBump, nil); err != nil {
		t.Fatalf("channel after CIC: %v", err)
	}
}

// Built-ins and handlers against a hot standby as upstream (cascading).
// claim: extension.hot-standby-read-only
// claim: protocol.wal-reply-layout
func TestHotStandbyUpstream(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	ch := enter(t, superuser(t, "standby", ""))
	r := ch.call(protocol.OpWAL, 1, nil)
	w, err := protocol.ParseWALReport(r.Payload)
	if r.Err() != nil || err != nil || len(r.Payload) != 53 || !w.InRecovery || w.Replayed == 0 || w.Received == 0 || w.Flush != 0 || w.Insert != 0 || w.Write != 0 {
		t.Fatalf("wal on a standby: %+v %v %v", w, r.Err(), err)
	}
	if r := ch.call(opEcho, 2, []byte("ro")); r.Err() != nil || string(r.Payload) != "echo:ro" {
		t.Fatalf("read-only handler on a standby: %q %v", r.Payload, r.Err())
	}
	wantError(t, ch.call(opPut, 3, []byte("nope")), opPut, 3, "25006")
	if r := ch.call(protocol.OpSetting, 4, []byte("hot_standby")); r.Err() != nil || string(r.Payload) != "on" {
		t.Fatalf("setting on a standby: %q %v", r.Payload, r.Err())
	}
	ch.finish()
}

// claim: protocol.setting-errors
// claim: extension.setting-privilege
// claim: extension.page-privilege
// claim: protocol.page-errors
// claim: readme.builtin-ops
func TestSettingWALAndPageBuiltins(t *testing.T) {
	needEnv(t)
	sess := channelSession(t)
	ctx := ctxT(t, 30*time.Second)
	out, err := sess.Call(ctx, protocol.OpSetting, []byte("max_wal_senders"))
	if err != nil || string(out) != primarySQL(t, "SHOW max_wal_senders") {
		t.Fatalf("setting: %q %v", out, err)
	}
	_, err = sess.Call(ctx, protocol.OpSetting, []byte("no_such_setting"))
	wantServerError(t, err, "42704", "no_such_setting")
	_, err = sess.Call(ctx, protocol.OpSetting, []byte("data_directory"))
	wantServerError(t, err, "42501", "pg_read_all_settings")
	out, err = sess.Call(ctx, protocol.OpWAL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 53 {
		t.Fatalf("wal reply of %d bytes, want 53", len(out))
	}
	w, _ := protocol.ParseWALReport(out)
	flush, _ := protocol.ParseLSN(primarySQL(t, "SELECT pg_current_wal_flush_lsn()"))
	if w.InRecovery || w.Flush == 0 || w.Flush > flush || w.Insert < w.Flush || w.Received != 0 || w.Replayed != 0 || !w.LastReplayedCommit.IsZero() {
		t.Fatalf("wal on the primary: %+v (flush now %s)", w, flush)
	}
	// page needs superuser, as get_raw_page does: refused for the channel
	// role, also with pg_read_all_data, then allowed to a superuser.
	_, err = sess.Call(ctx, protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_class"))
	wantServerError(t, err, "42501", "superuser")
	primarySQL(t, "GRANT pg_read_all_data TO standbyd_repl")
	defer primarySQL(t, "REVOKE pg_read_all_data FROM standbyd_repl")
	_, err = sess.Call(ctx, protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_class"))
	wantServerError(t, err, "42501", "superuser")
	primarySQL(t, "ALTER ROLE standbyd_repl SUPERUSER")
	defer primarySQL(t, "ALTER ROLE standbyd_repl NOSUPERUSER")
	out, err = sess.Call(ctx, protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_catalog.pg_class"))
	if err != nil || len(out) != 8192 {
		t.Fatalf("page: %d bytes, %v", len(out), err)
	}
	// The page's own header: pd_lower and pd_upper within the page.
	lower := int(out[12]) | int(out[13])<<8
	upper := int(out[14]) | int(out[15])<<8
	if lower < 24 || upper > 8192 || lower > upper {
		t.Fatalf("not a heap page: pd_lower %d pd_upper %d", lower, upper)
	}
	_, err = sess.Call(ctx, protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 1<<30, "pg_class"))
	wantServerError(t, err, "22023", "out of range")
	_, err = sess.Call(ctx, protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "no_such_table"))
	wantServerError(t, err, "42P01", "no_such_table")
	if _, err := sess.Call(ctx, protocol.OpPing, nil); err != nil {
		t.Fatalf("after page errors: %v", err)
	}
}

// The wal reply's fields are the server's own positions: on a primary the
// insert, write and flush LSNs lie between pg_current_wal_insert_lsn(),
// pg_current_wal_lsn() and pg_current_wal_flush_lsn() read just before and
// just after; on a standby the received and replayed LSNs lie between
// pg_last_wal_receive_lsn() and pg_last_wal_replay_lsn() before and after,
// and the commit time between pg_last_xact_replay_timestamp() before and
// after. The timeline is checked on timeline 2 (a promoted standby, and a
// standby that follows it), so that a timeline stuck at 1 would show.
// claim: protocol.wal-reply-layout
func TestWALReplyFieldsMatchTheServer(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := ctxT(t, 3*time.Minute)
	port2, err := e.AddStandby(ctx, "standby2")
	if err != nil {
		t.Fatal(err)
	}
	promote(t, e, "standby")
	repoint(t, e, "standby2", e.StandbyPort)
	if !pollFor(60*time.Second, func() bool { return receivedTimeline(e, "standby2") == "2" }) {
		t.Fatalf("standby2 did not follow timeline 2 (received %q)", receivedTimeline(e, "standby2"))
	}
	sql := func(server, q string) []string {
		t.Helper()
		out, err := e.SQL(ctx, server, q)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(out, "|")
	}
	lsns := func(fields []string) []protocol.LSN {
		t.Helper()
		var out []protocol.LSN
		for _, f := range fields {
			l, err := protocol.ParseLSN(f)
			if err != nil {
				t.Fatalf("%q: %v", f, err)
			}
			out = append(out, l)
		}
		return out
	}
	between := func(name string, lo, got, hi protocol.LSN) {
		t.Helper()
		if got == 0 || got < lo || got > hi {
			t.Errorf("%s %s, want between %s and %s", name, got, lo, hi)
		}
	}
	wal := func(port int) protocol.WALReport {
		t.Helper()
		pc, err := pgconn.Connect(ctx, "host="+e.SocketDir+" port="+strconv.Itoa(port)+" user=postgres dbname=postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(context.Background())
		ch := enter(t, pc)
		r := ch.call(protocol.OpWAL, 1, nil)
		w, err := protocol.ParseWALReport(r.Payload)
		if r.Err() != nil || err != nil || len(r.Payload) != 53 {
			t.Fatalf("wal: %d bytes, %v %v", len(r.Payload), r.Err(), err)
		}
		ch.finish()
		return w
	}

	// The promoted standby, a primary on timeline 2, with WAL moving.
	sql("standby", "CREATE TABLE walt(x int); INSERT INTO walt VALUES (1)")
	const primaryPos = "SELECT pg_current_wal_insert_lsn() || '|' || pg_current_wal_lsn() || '|' || pg_current_wal_flush_lsn()"
	before := lsns(sql("standby", primaryPos))
	w := wal(e.StandbyPort)
	after := lsns(sql("standby", primaryPos))
	if w.InRecovery || w.Timeline != 2 {
		t.Errorf("primary: in recovery %v, timeline %d; want false, 2", w.InRecovery, w.Timeline)
	}
	between("primary: insert LSN", before[0], w.Insert, after[0])
	between("primary: write LSN", before[1], w.Write, after[1])
	between("primary: flush LSN", before[2], w.Flush, after[2])
	if w.Received != 0 || w.Replayed != 0 || !w.LastReplayedCommit.IsZero() {
		t.Errorf("primary: received %s, replayed %s, commit time %v; want zeros", w.Received, w.Replayed, w.LastReplayedCommit)
	}

	// standby2, replaying timeline 2, once it has replayed a commit.
	sql("standby", "INSERT INTO walt VALUES (2)")
	target := sql("standby", "SELECT pg_current_wal_lsn()")[0]
	if !pollFor(60*time.Second, func() bool {
		v, _ := e.SQL(ctx, "standby2", "SELECT pg_last_wal_replay_lsn() >= '"+target+"'::pg_lsn AND pg_last_xact_replay_timestamp() IS NOT NULL")
		return v == "t"
	}) {
		t.Fatal("standby2 did not replay the commit")
	}
	const standbyPos = "SELECT pg_last_wal_receive_lsn() || '|' || pg_last_wal_replay_lsn() || '|' || (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::bigint"
	b := sql("standby2", standbyPos)
	w = wal(port2)
	a := sql("standby2", standbyPos)
	if !w.InRecovery || w.Timeline != 2 {
		t.Errorf("standby: in recovery %v, timeline %d; want true, 2", w.InRecovery, w.Timeline)
	}
	lb, la := lsns(b[:2]), lsns(a[:2])
	between("standby: received LSN", lb[0], w.Received, la[0])
	between("standby: replayed LSN", lb[1], w.Replayed, la[1])
	tb, _ := strconv.ParseInt(b[2], 10, 64)
	ta, _ := strconv.ParseInt(a[2], 10, 64)
	if got := w.LastReplayedCommit.UnixMicro(); w.LastReplayedCommit.IsZero() || got < tb || got > ta {
		t.Errorf("standby: commit time %d us, want between pg_last_xact_replay_timestamp() %d and %d", got, tb, ta)
	}
	if w.Insert != 0 || w.Write != 0 || w.Flush != 0 {
		t.Errorf("standby: insert %s, write %s, flush %s; want zeros", w.Insert, w.Write, w.Flush)
	}
}
