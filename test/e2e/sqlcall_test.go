package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// A standby session's call runs the writing handler on the primary, and is
// committed there when the function returns: a ROLLBACK on the standby does
// not undo it, and a call in a query runs once per row. With
// wait_for_replay the very next statement on the standby sees the write,
// every time.
// claim: sqlcall.write-on-primary
// claim: sqlcall.rollback-keeps
// claim: sqlcall.once-per-row
// claim: sqlcall.read-your-writes
// claim: sqlcall.by-code
// claim: sqlcall.kept-connection
// claim: readme.demo-read-back
func TestSQLCallWriteAndReadYourWrites(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	s.mustCall(scWrite, []byte("plain-"+run), false, "written:plain-"+run)
	if n := primaryRows(t, env, "plain-"+run); n != 1 {
		t.Fatalf("%d rows on the primary after one call, want 1", n)
	}
	// By code, the same handler.
	s.mustCall("700", []byte("code-"+run), false, "written:code-"+run)
	if n := primaryRows(t, env, "code-"+run); n != 1 {
		t.Fatalf("%d rows on the primary after a call by code, want 1", n)
	}

	// A standby ROLLBACK does not undo what the primary committed.
	if _, err := s.query("BEGIN; SELECT standbyd.call('" + scWrite + "', convert_to('tx-" + run + "', 'UTF8')); ROLLBACK"); err != nil {
		t.Fatalf("a call inside a rolled back transaction: %v", err)
	}
	if n := primaryRows(t, env, "tx-"+run); n != 1 {
		t.Fatalf("%d rows on the primary after ROLLBACK on the standby, want 1", n)
	}
	// Once per row: two rows, two writes.
	if _, err := s.query("SELECT standbyd.call('" + scWrite + "', convert_to('twice-" + run + "', 'UTF8')) FROM generate_series(1, 2)"); err != nil {
		t.Fatal(err)
	}
	if n := primaryRows(t, env, "twice-"+run); n != 2 {
		t.Fatalf("%d rows on the primary for a call in a two-row query, want 2", n)
	}

	// Read-your-writes: never a miss in 50 rounds.
	var with, without []time.Duration
	for i := range 50 {
		v := fmt.Sprintf("ryw-%s-%d", run, i)
		start := time.Now()
		s.mustCall(scWrite, []byte(v), true, "written:"+v)
		with = append(with, time.Since(start))
		if got := s.mustQuery("SELECT count(*) FROM sqlcall.t WHERE v = '" + v + "'"); got != "1" {
			t.Fatalf("round %d: the standby's next statement sees %s rows of its own write, want 1", i, got)
		}
	}
	// For comparison only (not asserted): the same without waiting, and how
	// often the next statement misses the write then.
	misses := 0
	for i := range 50 {
		v := fmt.Sprintf("nowait-%s-%d", run, i)
		start := time.Now()
		s.mustCall(scWrite, []byte(v), false, "written:"+v)
		without = append(without, time.Since(start))
		if s.mustQuery("SELECT count(*) FROM sqlcall.t WHERE v = '"+v+"'") != "1" {
			misses++
		}
	}
	t.Logf("median call: %s with wait_for_replay, %s without; without it the next statement missed the write %d times in 50",
		median(with), median(without), misses)
	// One session, one connection to the daemon for all of its calls.
	if n := fastConnections(d); n != 1 {
		t.Fatalf("%d fast path connections for one session's calls, want 1", n)
	}
}

// fastConnections is how many fast path connections the daemon opened.
func fastConnections(d *daemon) int {
	return strings.Count(d.log(), "api fast path: connection opened")
}

// With replay paused on the standby, wait_for_replay cannot return: the
// write is committed on the primary, and statement_timeout ends the wait
// with 57014 and a context saying so. Once replay resumes, a waiting call
// returns and the next statement sees its write.
// claim: sqlcall.replay-wait-bounded
func TestSQLCallWaitForReplayBounded(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		_, _ = env.SQL(ctxT(t, 10*time.Second), "standby", "SELECT pg_wal_replay_resume()")
	})
	if _, err := env.SQL(ctxT(t, 10*time.Second), "standby", "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	if !pollFor(10*time.Second, func() bool {
		v, _ := env.SQL(ctxT(t, 5*time.Second), "standby", "SELECT pg_get_wal_replay_pause_state()")
		return v == "paused"
	}) {
		t.Fatal("replay did not pause")
	}
	s.mustQuery("SET statement_timeout = '500ms'")
	start := time.Now()
	_, err := s.call(ctxT(t, 30*time.Second), scWrite, []byte("paused-"+run), true)
	took := time.Since(start)
	pe := wantSQLState(t, err, "57014")
	if took > 5*time.Second {
		t.Fatalf("statement_timeout 500ms ended the wait for replay after %s", took)
	}
	if !strings.Contains(pe.Where, "succeeded on the primary") {
		t.Fatalf("the context does not say the handler succeeded on the primary: %q", pe.Where)
	}
	if n := primaryRows(t, env, "paused-"+run); n != 1 {
		t.Fatalf("%d rows on the primary for the call whose wait timed out, want 1", n)
	}
	s.mustQuery("RESET statement_timeout")
	if _, err := env.SQL(ctxT(t, 10*time.Second), "standby", "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	v := "resumed-" + run
	s.mustCall(scWrite, []byte(v), true, "written:"+v)
	if got := s.mustQuery("SELECT count(*) FROM sqlcall.t WHERE v IN ('" + v + "', 'paused-" + run + "')"); got != "2" {
		t.Fatalf("after replay resumed the standby sees %s of the session's 2 writes", got)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// A handler's error is raised on the standby with the primary's SQLSTATE,
// message, detail and hint, and the session goes on.
// claim: sqlcall.primary-error
func TestSQLCallHandlerErrorKeepsFields(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	_, err := s.call(ctxT(t, 30*time.Second), scFail, []byte("order 42"), false)
	pe := wantSQLState(t, err, "SC042")
	if pe.Message != "sqlcall refused order 42" || pe.Detail != "the detail of order 42" || pe.Hint != "the hint of order 42" {
		t.Fatalf("message %q, detail %q, hint %q: not the primary's", pe.Message, pe.Detail, pe.Hint)
	}
	if !strings.Contains(pe.Where, scFail) {
		t.Fatalf("the context does not name the handler: %q", pe.Where)
	}
	s.mustCall(scEcho, []byte("after"), false, "echo:after")
}

// statement_timeout bounds a call on a sleeping handler: 57014 well within
// the bound, the same backend goes on and its next call works.
// claim: sqlcall.statement-timeout
// claim: extension.call-interrupts
func TestSQLCallStatementTimeout(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	pid := s.pid()
	s.mustQuery("SET statement_timeout = '300ms'")
	start := time.Now()
	_, err := s.call(ctxT(t, 60*time.Second), scNap, []byte("3"), false)
	took := time.Since(start)
	pe := wantSQLState(t, err, "57014")
	if took > 5*time.Second {
		t.Fatalf("statement_timeout 300ms ended the call after %s", took)
	}
	if !strings.Contains(pe.Where, "outcome") {
		t.Fatalf("the error does not say the outcome on the primary is unknown: %+v", pe)
	}
	s.mustQuery("RESET statement_timeout")
	if got := s.mustQuery("SELECT pg_backend_pid()"); got != strconv.Itoa(int(pid)) {
		t.Fatalf("backend %s after the timeout, was %d", got, pid)
	}
	s.mustCall(scEcho, []byte("later"), false, "echo:later")
	t.Logf("statement_timeout 300ms: 57014 after %s", took.Round(time.Millisecond))
}

// pg_cancel_backend during a call in flight: 57014, the backend goes on
// and its next call works; the daemon sees the caller gone and drops the
// handler's late reply.
// claim: sqlcall.cancel
// claim: sqlcall.caller-gone
// claim: extension.call-interrupts
func TestSQLCallCancel(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	backend := sqlChannelBackend(t, d)
	res := s.asyncCall(scNap, []byte("5"))
	waitHandlerSleeping(t, env, backend)
	start := time.Now()
	if _, err := env.SQL(ctxT(t, 10*time.Second), "standby", fmt.Sprintf("SELECT pg_cancel_backend(%d)", s.pid())); err != nil {
		t.Fatal(err)
	}
	var r callResult
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end within 10 s of pg_cancel_backend")
	}
	if pe := wantSQLState(t, r.err, "57014"); !strings.Contains(pe.Where, "outcome") {
		t.Fatalf("the cancelled call's error does not say the outcome on the primary is unknown: %+v", pe)
	}
	t.Logf("cancelled after %s", time.Since(start).Round(time.Millisecond))
	// The backend closed its connection to the daemon (so the daemon knows
	// the caller has gone) and opens a new one for its next call.
	before := fastConnections(d)
	s.mustCall(scEcho, []byte("after cancel"), false, "echo:after cancel")
	if n := fastConnections(d); n != before+1 {
		t.Fatalf("%d new fast path connections for the call after the cancel, want 1", n-before)
	}
	waitAbandoned(t, d, s.pid())
}

// pg_terminate_backend during a call in flight ends that backend (57P01)
// at once; a new session's call works; the daemon drops the late reply.
// claim: sqlcall.terminate
// claim: sqlcall.caller-gone
// claim: extension.call-interrupts
func TestSQLCallTerminate(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	backend := sqlChannelBackend(t, d)
	res := s.asyncCall(scNap, []byte("5"))
	waitHandlerSleeping(t, env, backend)
	if _, err := env.SQL(ctxT(t, 10*time.Second), "standby", fmt.Sprintf("SELECT pg_terminate_backend(%d)", s.pid())); err != nil {
		t.Fatal(err)
	}
	var r callResult
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end within 10 s of pg_terminate_backend")
	}
	wantSQLState(t, r.err, "57P01")
	if !pollFor(10*time.Second, func() bool {
		v, _ := env.SQL(ctxT(t, 5*time.Second), "standby", fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d", s.pid()))
		return v == "0"
	}) {
		t.Fatal("the terminated backend is still there")
	}
	sqlConnect(t, env, "standby", scUser).mustCall(scEcho, []byte("new session"), false, "echo:new session")
	waitAbandoned(t, d, s.pid())
}

// The standby's postmaster dies while a backend waits for the reply to its
// call: the backend exits at once (it waits with WL_EXIT_ON_PM_DEATH, as a
// backend waiting on any socket does) instead of waiting for the handler
// on the primary to end.
// claim: sqlcall.postmaster-death
// claim: extension.call-interrupts
func TestSQLCallPostmasterDeath(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	d := sqlcallDaemon(t, e)
	s := sqlConnect(t, e, "standby", scUser)
	s.mustCall(scEcho, []byte("up"), false, "echo:up")
	backend := sqlChannelBackend(t, d)
	res := s.asyncCall(scNap, []byte("30"))
	waitHandlerSleeping(t, e, backend)
	b, err := os.ReadFile(filepath.Join(e.StandbyData, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	postmaster, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil || postmaster <= 0 {
		t.Fatalf("postmaster.pid: %q", b)
	}
	if err := syscall.Kill(postmaster, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The handler sleeps 30 s on the primary; the backend must not.
	gone := func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", s.pid())); return os.IsNotExist(err) }
	if !pollFor(10*time.Second, gone) {
		t.Fatalf("standby backend %d still runs 10 s after its postmaster died", s.pid())
	}
	select {
	case r := <-res:
		if r.err == nil {
			t.Fatal("the call of a backend whose postmaster died returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end within 10 s of its backend's exit")
	}
}

// The daemon down: 08001 naming the socket, nothing sent; once it is back
// the same backend's next call works.
// claim: sqlcall.daemon-down
// claim: extension.call-daemon-unreachable
func TestSQLCallDaemonDown(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	s.mustCall(scEcho, []byte("up"), false, "echo:up")
	if err := d.stop(); err != nil {
		t.Fatalf("stopping the daemon: %v", err)
	}
	_, err := s.call(ctxT(t, 30*time.Second), scWrite, []byte("while down"), false)
	pe := wantSQLState(t, err, "08001")
	if !strings.Contains(pe.Message+pe.Detail+pe.Hint, d.socket) {
		t.Fatalf("the error does not name the socket %s: %+v", d.socket, pe)
	}
	n := restartDaemon(t, d)
	n.waitReady(30 * time.Second)
	s.mustCall(scEcho, []byte("back"), false, "echo:back")
	if c := primaryRows(t, env, "while down"); c != 0 {
		t.Fatalf("%d rows of a call refused with 08001 reached the primary", c)
	}
}

// The daemon restarting between two calls of one backend: the second call
// finds the old connection dead and reconnects.
// claim: sqlcall.reconnect
// claim: extension.call-connection
func TestSQLCallDaemonRestart(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	s.mustCall(scEcho, []byte("one"), false, "echo:one")
	if err := d.stop(); err != nil {
		t.Fatalf("stopping the daemon: %v", err)
	}
	n := restartDaemon(t, d)
	n.waitReady(30 * time.Second)
	s.mustCall(scEcho, []byte("two"), false, "echo:two")
	if strings.Count(n.log(), `"sql_pid":`+strconv.Itoa(int(s.pid()))) == 0 {
		t.Fatalf("the restarted daemon did not see backend %d:\n%s", s.pid(), tailLines(n.log(), 20))
	}
}

// sqlSessionWithPrimaryDown starts a cluster of its own, a daemon with o
// and a SQL session on the standby that has called through the channel;
// then it stops the primary and waits for the daemon to see it.
func sqlSessionWithPrimaryDown(t *testing.T, o sqlcallOptions) (*testcluster.Env, *daemon, *sqlSession) {
	t.Helper()
	e := testcluster.New(t, testcluster.Options{Standby: true})
	d := sqlcallDaemonWith(t, e, o)
	s := sqlConnect(t, e, "standby", scUser)
	s.mustCall(scEcho, []byte("up"), false, "echo:up")
	if err := e.StopServer(ctxT(t, 90*time.Second), "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.waitState(false, 20*time.Second); !ok {
		t.Fatal("the daemon still reports ready 20 s after the primary stopped")
	}
	return e, d, s
}

// The primary down: a call waits for the channel until its deadline, then
// fails with 08006 and sends nothing; when the primary is back, calls work
// again. The deadline is the daemon's api.default_call_timeout (8 s here)
// when statement_timeout is 0: the call does not end before it. With a
// statement_timeout of 500 ms the call ends long before those 8 s, with
// 08006 (the daemon's deadline) or 57014 (the standby's own timer), which
// of the two passes first.
// claim: sqlcall.channel-unavailable
func TestSQLCallPrimaryDown(t *testing.T) {
	needEnv(t)
	e, d, s := sqlSessionWithPrimaryDown(t, sqlcallOptions{callTimeout: "8s"})
	start := time.Now()
	_, err := s.call(ctxT(t, 30*time.Second), scWrite, []byte("while primary down"), false)
	took := time.Since(start)
	pe := wantSQLState(t, err, "08006")
	t.Logf("primary down: %s after %s", pe.Message, took.Round(time.Millisecond))
	// A lower bound only (a slow machine makes it longer, never shorter);
	// the daemon's deadline is measured from the request's arrival.
	if took < 7*time.Second {
		t.Fatalf("the call failed after %s, before api.default_call_timeout's 8 s", took)
	}
	s.mustQuery("SET statement_timeout = '500ms'")
	start = time.Now()
	_, err = s.call(ctxT(t, 30*time.Second), scWrite, []byte("while primary down"), false)
	took = time.Since(start)
	var code string
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		code = pe.Code
	}
	if code != "08006" && code != "57014" {
		t.Fatalf("statement_timeout 500ms, primary down: %v, want 08006 or 57014", err)
	}
	// Generous: 500 ms expected, 8 s (the daemon's default) if
	// statement_timeout were not the deadline.
	if took > 6*time.Second {
		t.Fatalf("statement_timeout 500ms, primary down: %s after %s", code, took)
	}
	t.Logf("statement_timeout 500ms, primary down: %s after %s", code, took.Round(time.Millisecond))
	s.mustQuery("RESET statement_timeout")
	if err := e.StartServer(ctxT(t, 90*time.Second), "primary"); err != nil {
		t.Fatal(err)
	}
	d.waitReady(60 * time.Second)
	s.mustCall(scEcho, []byte("back"), false, "echo:back")
	if c := primaryRows(t, e, "while primary down"); c != 0 {
		t.Fatalf("%d rows of a call refused with 08006 reached the primary", c)
	}
}

// channel.fail_fast: with the primary down a call fails at once with
// 08006, the daemon's message in the detail, instead of waiting for
// api.default_call_timeout (60 s here).
// claim: sqlcall.channel-unavailable
func TestSQLCallPrimaryDownFailFast(t *testing.T) {
	needEnv(t)
	_, _, s := sqlSessionWithPrimaryDown(t, sqlcallOptions{callTimeout: "60s", channel: "  fail_fast: true\n"})
	start := time.Now()
	_, err := s.call(ctxT(t, 90*time.Second), scWrite, []byte("fail fast"), false)
	took := time.Since(start)
	pe := wantSQLState(t, err, "08006")
	// Generous: at once expected, 60 s without fail_fast.
	if took > 20*time.Second {
		t.Fatalf("fail_fast: 08006 after %s", took)
	}
	if !strings.Contains(pe.Detail, "fail_fast") {
		t.Fatalf("the detail does not carry the daemon's fail_fast message: %+v", pe)
	}
	t.Logf("fail_fast: %s after %s", pe.Detail, took.Round(time.Millisecond))
}

// The channel lost while the handler runs: the outcome is unknown, 08007.
// claim: sqlcall.outcome-unknown
func TestSQLCallChannelLostMidCall(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	backend := sqlChannelBackend(t, d)
	res := s.asyncCall(scNap, []byte("10"))
	waitHandlerSleeping(t, env, backend)
	if _, err := env.PrimarySQL(ctxT(t, 10*time.Second), fmt.Sprintf("SELECT pg_terminate_backend(%d)", backend)); err != nil {
		t.Fatal(err)
	}
	var r callResult
	select {
	case r = <-res:
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not end within 15 s of the channel's loss")
	}
	wantSQLState(t, r.err, "08007")
	d.waitReady(30 * time.Second)
	s.mustCall(scEcho, []byte("after"), false, "echo:after")
}

// Privileges come from the standby's replicated catalog: a role without
// EXECUTE on the handler is refused on the standby and nothing reaches the
// primary (whose channel role could run it); built-ins and unknown ops are
// refused; EXECUTE on standbyd.call itself is not PUBLIC's; api.allow's
// refusal is 42501 too, with a hint.
// claim: sqlcall.handler-privilege
// claim: sqlcall.no-public
// claim: sqlcall.builtins-refused
// claim: sqlcall.unknown-op
// claim: sqlcall.forbidden
// claim: sqlcall.null-argument
// claim: sqlcall.socket-superuser
// claim: extension.call-declaration
func TestSQLCallPrivileges(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx := ctxT(t, 60*time.Second)

	_, err := s.call(ctx, scSecret, []byte(run), false)
	pe := wantSQLState(t, err, "42501")
	if !strings.Contains(pe.Message, "permission denied for function") {
		t.Fatalf("refusal message: %q", pe.Message)
	}
	_, err = s.call(ctx, "704", []byte(run), false)
	wantSQLState(t, err, "42501")
	if c := primaryRows(t, env, "secret:"+run); c != 0 {
		t.Fatalf("a refused call ran on the primary (%d rows)", c)
	}
	// The superuser may: the same handler runs (the check is the standby's).
	su := sqlConnect(t, env, "standby", "postgres")
	su.mustCall(scSecret, []byte(run), false, "secret")
	if c := primaryRows(t, env, "secret:"+run); c != 1 {
		t.Fatalf("the superuser's call: %d rows on the primary, want 1", c)
	}

	no := sqlConnect(t, env, "standby", scNoCall)
	_, err = no.call(ctx, scEcho, []byte("x"), false)
	wantSQLState(t, err, "42501")
	if v := s.mustQuery(`SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
		WHERE p.pronamespace = 'standbyd'::regnamespace AND p.proname = 'call' AND a.grantee = 0`); v != "0" {
		t.Fatalf("PUBLIC holds %s EXECUTE grants on standbyd.call", v)
	}
	if v := s.mustQuery(`SELECT count(*) FROM pg_proc WHERE pronamespace = 'standbyd'::regnamespace AND proname = 'call' AND provolatile = 'v' AND proparallel = 'u' AND NOT proisstrict`); v != "2" {
		t.Fatalf("%s of the two standbyd.call functions are VOLATILE, PARALLEL UNSAFE and called on NULL input", v)
	}

	for _, op := range []string{"ping", "wal", "1"} {
		_, err = s.call(ctx, op, []byte{}, false)
		wantSQLState(t, err, "42501")
	}
	for _, op := range []string{"sqlcall_nosuch", "799"} {
		_, err = s.call(ctx, op, []byte{}, false)
		pe = wantSQLState(t, err, "42883")
		if pe.Hint == "" {
			t.Fatalf("no hint for an unknown op %s", op)
		}
	}
	if _, err := s.query("SELECT standbyd.call('" + scEcho + "', NULL)"); err == nil {
		t.Fatal("a NULL payload was accepted")
	} else {
		wantSQLState(t, err, "22004")
	}

	// The daemon's api.allow lets only root call this one: the server's OS
	// user is refused, with a hint.
	_, err = s.call(ctx, scRootOnly, []byte(run), false)
	pe = wantSQLState(t, err, "42501")
	if !strings.Contains(pe.Hint, "api.allow") {
		t.Fatalf("no hint about api.allow: %+v", pe)
	}
	if c := primaryRows(t, env, "rootonly:"+run); c != 0 {
		t.Fatalf("a call api.allow refused ran on the primary (%d rows)", c)
	}

	// Only a superuser may point calls at another socket: refused once the
	// library is loaded, ignored when set before.
	_, err = s.query("SET standbyd.socket = '/tmp/elsewhere.sock'")
	wantSQLState(t, err, "42501")
	early := sqlConnect(t, env, "standby", scUser)
	_, _ = early.query("SET standbyd.socket = '/tmp/elsewhere.sock'")
	early.mustCall(scEcho, []byte("early"), false, "echo:early")
	if got := early.mustQuery("SHOW standbyd.socket"); got == "/tmp/elsewhere.sock" {
		t.Fatal("a non-superuser's standbyd.socket survived the library's load")
	}
}

// SET ROLE changes whose privileges a call has and whom the daemon
// attributes it to, within one session.
// claim: sqlcall.set-role
func TestSQLCallSetRole(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	su := sqlConnect(t, env, "standby", "postgres")
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx := ctxT(t, 60*time.Second)
	su.mustQuery("SET ROLE " + scUser)
	_, err := su.call(ctx, scSecret, []byte("as-user-"+run), false)
	wantSQLState(t, err, "42501")
	su.mustCall(scEcho, []byte("as user"), false, "echo:as user")
	su.mustQuery("RESET ROLE")
	su.mustCall(scSecret, []byte("as-superuser-"+run), false, "secret")
	if n := primaryRows(t, env, "secret:as-user-"+run); n != 0 {
		t.Fatalf("the call refused after SET ROLE reached the primary (%d rows)", n)
	}
	roles := map[string]bool{}
	pid := `"sql_pid":` + strconv.Itoa(int(su.pid())) + ","
	for _, line := range strings.Split(d.log(), "\n") {
		if !strings.Contains(line, pid) && !strings.Contains(line, strings.TrimSuffix(pid, ",")+"}") {
			continue
		}
		for _, r := range []string{scUser, "postgres"} {
			if strings.Contains(line, `"sql_role":"`+r+`"`) {
				roles[r] = true
			}
		}
	}
	if !roles[scUser] || !roles["postgres"] {
		t.Fatalf("the daemon attributed backend %d's calls to roles %v, want both %s and postgres", su.pid(), roles, scUser)
	}
}

// A payload larger than a frame can carry is refused (54000) and nothing is
// sent; the session goes on. The boundary, with the default
// channel.max_frame_size of 1 MiB: a payload of that less the 12-byte
// header reaches the handler whole, one byte more is refused by the
// daemon (54000); a payload too large for even the fast path's frame is
// refused by the backend itself.
// claim: sqlcall.payload-too-large
func TestSQLCallPayloadTooLarge(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	const largest = 1<<20 - 12
	got, err := s.call(ctxT(t, 60*time.Second), scLen, make([]byte, largest), false)
	if err != nil || string(got) != strconv.Itoa(largest) {
		t.Fatalf("a payload of %d bytes: reply %q, error %v; want the handler to see all of it", largest, got, err)
	}
	_, err = s.call(ctxT(t, 60*time.Second), scLen, make([]byte, largest+1), false)
	pe := wantSQLState(t, err, "54000")
	if !strings.Contains(pe.Detail, strconv.Itoa(largest)) {
		t.Fatalf("one byte over: the detail does not give the limit of %d bytes: %+v", largest, pe)
	}
	mark := "too-large-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	big := []byte(mark + strings.Repeat("x", 1<<20))
	_, err = s.call(ctxT(t, 60*time.Second), scWrite, big, false)
	wantSQLState(t, err, "54000")
	if n, err := env.PrimarySQL(ctxT(t, 10*time.Second), "SELECT count(*) FROM sqlcall.t WHERE v LIKE '"+mark+"%'"); err != nil || n != "0" {
		t.Fatalf("a refused payload reached the primary (%s rows, %v)", n, err)
	}
	s.mustCall(scEcho, []byte("small"), false, "echo:small")
}

// A daemon with no room left (one call in flight, one waiting, queue
// limit 1) refuses a third with busy: 53000 on the standby, nothing sent.
// claim: sqlcall.busy
func TestSQLCallBusy(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemonWith(t, env, sqlcallOptions{channel: "  max_in_flight: 1\n", api: "  queue_limit: 1\n"})
	backend := sqlChannelBackend(t, d)
	a := sqlConnect(t, env, "standby", scUser)
	b := sqlConnect(t, env, "standby", scUser)
	c := sqlConnect(t, env, "standby", scUser)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	ra := a.asyncCall(scNap, []byte("3"))
	waitHandlerSleeping(t, env, backend)
	rb := b.asyncCall(scEcho, []byte("queued"))
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_calls_waiting"); return v == 1 }) {
		t.Fatal("the second call never waited for the session")
	}
	_, err := c.call(ctxT(t, 30*time.Second), scWrite, []byte("busy-"+run), false)
	wantSQLState(t, err, "53000")
	for _, r := range []<-chan callResult{ra, rb} {
		select {
		case res := <-r:
			if res.err != nil {
				t.Fatalf("a call that had room: %v", res.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a call that had room did not end")
		}
	}
	if n := primaryRows(t, env, "busy-"+run); n != 0 {
		t.Fatalf("a call refused as busy reached the primary (%d rows)", n)
	}
	c.mustCall(scEcho, []byte("room again"), false, "echo:room again")
}

// 16 standby sessions call at once; every reply is its own request's, and
// the daemon attributes the calls to each backend (log and metric).
// claim: sqlcall.concurrent
// claim: sqlcall.attribution
func TestSQLCallConcurrentSessions(t *testing.T) {
	needEnv(t)
	d := sqlcallDaemon(t, env)
	const sessions, rounds = 16, 50
	ss := make([]*sqlSession, sessions)
	for i := range ss {
		ss[i] = sqlConnect(t, env, "standby", scUser)
	}
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				want := fmt.Sprintf("session %d pid %d round %d %s", i, s.pid(), r, strings.Repeat("x", r*7))
				op := scEcho
				if r%2 == 1 {
					op = strconv.Itoa(scEchoCode)
				}
				got, err := s.call(ctxT(t, 60*time.Second), op, []byte(want), false)
				if err != nil || string(got) != "echo:"+want {
					t.Errorf("session %d round %d: %q, %v", i, r, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	log := d.log()
	for _, s := range ss {
		if !strings.Contains(log, `"sql_pid":`+strconv.Itoa(int(s.pid()))) {
			t.Fatalf("no log line attributes a call to backend %d", s.pid())
		}
	}
	if !strings.Contains(log, `"sql_role":"`+scUser+`"`) || !strings.Contains(log, `"sql_database":"postgres"`) {
		t.Fatalf("the log does not attribute calls to role and database:\n%s", tailLines(log, 10))
	}
	series := `standbyd_api_sql_calls_total{database="postgres",result="ok",role="` + scUser + `"}`
	if v, ok := d.metric(series); !ok || v < sessions*rounds {
		t.Fatalf("%s = %v (found %v), want at least %d", series, v, ok, sessions*rounds)
	}
}

// 100,000 calls in one backend: it holds as many file descriptors after
// as before, and its memory stays flat. (A superuser's session: reading
// pg_backend_memory_contexts needs it.)
// claim: sqlcall.no-leak
func TestSQLCallNoLeak(t *testing.T) {
	needEnv(t)
	// Info: a debug line per call would make the race-built daemon's log
	// the slow part.
	sqlcallDaemonWith(t, env, sqlcallOptions{logLevel: "info"})
	s := sqlConnect(t, env, "standby", "postgres")
	pid := s.pid()
	batch := func(n int) {
		t.Helper()
		q := fmt.Sprintf(`SELECT count(*) FROM generate_series(1, %d) g
			WHERE standbyd.call(%d, int4send(g)) = 'echo:'::bytea || int4send(g)`, n, scEchoCode)
		if got := s.mustQuery(q); got != strconv.Itoa(n) {
			t.Fatalf("%s of %d calls answered right", got, n)
		}
	}
	contexts := func() int {
		t.Helper()
		v, err := strconv.Atoi(s.mustQuery("SELECT sum(total_bytes) FROM pg_backend_memory_contexts"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Warm up: the connection to the daemon, the handler lookups, and the
	// files and caches the measuring query itself opens.
	batch(1000)
	contexts()
	mem0 := contexts()
	fd0, rss0 := fds(t, pid), procStatusKB(t, pid, "RssAnon")
	start := time.Now()
	for range 10 { // each statement well within its 60 s on a loaded machine
		batch(10000)
	}
	took := time.Since(start)
	mem1 := contexts()
	fd1, rss1 := fds(t, pid), procStatusKB(t, pid, "RssAnon")
	t.Logf("100,000 calls in %s: fds %d -> %d, memory contexts %d -> %d bytes, RssAnon %d -> %d kB",
		took.Round(time.Millisecond), len(fd0), len(fd1), mem0, mem1, rss0, rss1)
	if len(fd1) != len(fd0) {
		t.Fatalf("the backend held %d file descriptors before 100,000 calls and %d after:\nbefore: %s\nafter: %s",
			len(fd0), len(fd1), strings.Join(fd0, ", "), strings.Join(fd1, ", "))
	}
	// A leak of 8 bytes a call would be 800 kB.
	if mem1-mem0 > 512<<10 {
		t.Fatalf("the backend's memory contexts grew by %d bytes over 100,000 calls", mem1-mem0)
	}
	if rss1-rss0 > 8<<10 {
		t.Fatalf("the backend's anonymous memory grew by %d kB over 100,000 calls", rss1-rss0)
	}
}

// On the primary the function refuses (55000) and says what to do instead:
// the hint names the handler function to call directly.
// claim: sqlcall.on-primary
func TestSQLCallOnPrimary(t *testing.T) {
	needEnv(t)
	sqlcallInstall(t, env)
	p := sqlConnect(t, env, "primary", scUser)
	_, err := p.call(ctxT(t, 30*time.Second), scEcho, []byte("x"), false)
	pe := wantSQLState(t, err, "55000")
	if !strings.Contains(pe.Message, "runs on a standby") || !strings.Contains(pe.Hint, "sqlcall.echo(bytea)") {
		t.Fatalf("refusal on the primary: %+v", pe)
	}
}

// On the primary the handler runs as the daemon's channel role, never as
// the standby caller: the row a call by sqlcall_user writes was inserted by
// standbyd_repl.
// claim: sqlcall.runs-as-channel-role
func TestSQLCallRunsAsTheChannelRole(t *testing.T) {
	needEnv(t)
	sqlcallDaemon(t, env)
	s := sqlConnect(t, env, "standby", scUser)
	s.mustCall(scWrite, []byte("who wrote this"), false, "written:who wrote this")
	if who, err := env.PrimarySQL(ctxT(t, 10*time.Second), "SELECT string_agg(who, ',') FROM sqlcall.t WHERE v = 'who wrote this'"); err != nil || who != "standbyd_repl" {
		t.Fatalf("the handler's row was written by %q (%v), want the channel role standbyd_repl", who, err)
	}
}
