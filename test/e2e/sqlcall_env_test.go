package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// The standby-side function standbyd.call() tested end to end: a SQL session
// on the hot standby calls handlers registered on the primary through the
// daemon, whose socket the standby's postgresql.conf names (standbyd.socket).

// Handlers of the standbyd.call() tests (op codes 700-706).
const (
	scWrite    = "sqlcall_write"    // 700: inserts its payload (text) into sqlcall.t
	scFail     = "sqlcall_fail"     // 701: raises SC042 with a detail and a hint
	scNap      = "sqlcall_nap"      // 702: sleeps payload (text) seconds
	scEcho     = "sqlcall_echo"     // 703: 'echo:' || payload
	scSecret   = "sqlcall_secret"   // 704: the standby role lacks EXECUTE on it
	scRootOnly = "sqlcall_rootonly" // 705: api.allow lets only root call it
	scLen      = "sqlcall_len"      // 706: the payload's length in bytes, as text
	scEchoCode = 703

	scUser   = "sqlcall_user"   // EXECUTE on standbyd.call and on every handler but secret
	scNoCall = "sqlcall_nocall" // no EXECUTE on standbyd.call
)

const sqlcallSetupSQL = `
DO $$ BEGIN
  CREATE ROLE sqlcall_user LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE sqlcall_nocall LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DROP SCHEMA IF EXISTS sqlcall CASCADE;
CREATE SCHEMA sqlcall;
GRANT USAGE ON SCHEMA sqlcall TO standbyd_repl, sqlcall_user, sqlcall_nocall;
GRANT USAGE ON SCHEMA standbyd TO sqlcall_user, sqlcall_nocall;
CREATE TABLE sqlcall.t(v text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), who name NOT NULL DEFAULT current_user);
GRANT INSERT, SELECT ON sqlcall.t TO standbyd_repl;
GRANT SELECT ON sqlcall.t TO sqlcall_user;
CREATE FUNCTION sqlcall.write(b bytea) RETURNS bytea LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO sqlcall.t(v) VALUES (convert_from(b, 'UTF8'));
  RETURN 'written:'::bytea || b;
END $f$;
CREATE FUNCTION sqlcall.fail(b bytea) RETURNS bytea LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION 'sqlcall refused %', convert_from(b, 'UTF8') USING ERRCODE = 'SC042',
    DETAIL = 'the detail of ' || convert_from(b, 'UTF8'), HINT = 'the hint of ' || convert_from(b, 'UTF8');
END $f$;
CREATE FUNCTION sqlcall.nap(b bytea) RETURNS bytea LANGUAGE sql AS $f$
  SELECT pg_sleep(convert_from(b, 'UTF8')::float8)::text::bytea || 'slept'::bytea $f$;
CREATE FUNCTION sqlcall.echo(b bytea) RETURNS bytea LANGUAGE sql AS $f$ SELECT 'echo:'::bytea || b $f$;
CREATE FUNCTION sqlcall.len(b bytea) RETURNS bytea LANGUAGE sql AS $f$ SELECT length(b)::text::bytea $f$;
CREATE FUNCTION sqlcall.secret(b bytea) RETURNS bytea LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO sqlcall.t(v) VALUES ('secret:' || convert_from(b, 'UTF8'));
  RETURN 'secret'::bytea;
END $f$;
CREATE FUNCTION sqlcall.rootonly(b bytea) RETURNS bytea LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO sqlcall.t(v) VALUES ('rootonly:' || convert_from(b, 'UTF8'));
  RETURN 'rootonly'::bytea;
END $f$;
REVOKE ALL ON FUNCTION sqlcall.write(bytea), sqlcall.fail(bytea), sqlcall.nap(bytea), sqlcall.echo(bytea),
  sqlcall.secret(bytea), sqlcall.rootonly(bytea), sqlcall.len(bytea) FROM PUBLIC;
-- The channel role runs every handler on the primary, secret included: a
-- refusal on the standby is then the standby's own doing.
GRANT EXECUTE ON FUNCTION sqlcall.write(bytea), sqlcall.fail(bytea), sqlcall.nap(bytea), sqlcall.echo(bytea),
  sqlcall.secret(bytea), sqlcall.rootonly(bytea), sqlcall.len(bytea) TO standbyd_repl;
GRANT EXECUTE ON FUNCTION sqlcall.write(bytea), sqlcall.fail(bytea), sqlcall.nap(bytea), sqlcall.echo(bytea),
  sqlcall.rootonly(bytea), sqlcall.len(bytea) TO sqlcall_user;
GRANT EXECUTE ON FUNCTION sqlcall.echo(bytea) TO sqlcall_nocall;
GRANT EXECUTE ON FUNCTION standbyd.call(text, bytea, boolean), standbyd.call(integer, bytea, boolean) TO sqlcall_user;
SELECT standbyd.register_handler(700, 'sqlcall_write', 'sqlcall.write(bytea)');
SELECT standbyd.register_handler(701, 'sqlcall_fail', 'sqlcall.fail(bytea)');
SELECT standbyd.register_handler(702, 'sqlcall_nap', 'sqlcall.nap(bytea)');
SELECT standbyd.register_handler(703, 'sqlcall_echo', 'sqlcall.echo(bytea)');
SELECT standbyd.register_handler(704, 'sqlcall_secret', 'sqlcall.secret(bytea)');
SELECT standbyd.register_handler(705, 'sqlcall_rootonly', 'sqlcall.rootonly(bytea)');
SELECT standbyd.register_handler(706, 'sqlcall_len', 'sqlcall.len(bytea)');
`

var (
	sqlcallMu    sync.Mutex
	sqlcallReady = map[*testcluster.Env]bool{}
)

// sqlcallInstall brings the primary's extension to 1.3 and installs the
// handlers and roles, once per cluster, and waits until the standby has
// replayed them.
func sqlcallInstall(t *testing.T, e *testcluster.Env) {
	t.Helper()
	sqlcallMu.Lock()
	defer sqlcallMu.Unlock()
	if sqlcallReady[e] {
		return
	}
	ctx := ctxT(t, 60*time.Second)
	old, err := e.PrimarySQL(ctx, "SELECT string_to_array(extversion, '.')::int[] < '{1,3}' FROM pg_extension WHERE extname = 'standbyd'")
	if err != nil {
		t.Fatalf("reading the extension's version: %v", err)
	}
	if old == "t" {
		if _, err := e.PrimarySQL(ctx, "ALTER EXTENSION standbyd UPDATE TO '1.3'"); err != nil {
			t.Fatalf("standbyd.call() needs the extension 1.3 installed on this host: %v", err)
		}
	}
	if _, err := e.PrimarySQL(ctx, sqlcallSetupSQL); err != nil {
		t.Fatalf("installing the standbyd.call() handlers: %v", err)
	}
	waitReplayed(t, e)
	sqlcallReady[e] = true
}

// waitReplayed waits until e's standby has replayed the primary's current
// WAL position.
func waitReplayed(t *testing.T, e *testcluster.Env) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	lsn, err := e.PrimarySQL(ctx, "SELECT pg_current_wal_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		if ok, err := e.SQL(ctx, "standby", "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn"); err == nil && ok == "t" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the standby did not replay %s", lsn)
}

// sqlcallDaemon starts the real daemon for e's standby with a socket the
// standby's server (the postgres OS user) may use, api.allow as a DBA would
// write it, and points the standby's standbyd.socket at it.
func sqlcallDaemon(t *testing.T, e *testcluster.Env) *daemon {
	t.Helper()
	return sqlcallDaemonWith(t, e, sqlcallOptions{})
}

// sqlcallOptions change the daemon's configuration.
type sqlcallOptions struct {
	// callTimeout is api.default_call_timeout, the deadline of a call made
	// with statement_timeout 0 (default 60s).
	callTimeout string
	// channel and api are lines added to those sections (indented by two
	// spaces).
	channel, api string
	// logLevel is log.level (default debug).
	logLevel string
}

// sqlcallDaemonWith is sqlcallDaemon with options.
func sqlcallDaemonWith(t *testing.T, e *testcluster.Env, o sqlcallOptions) *daemon {
	t.Helper()
	if o.callTimeout == "" {
		o.callTimeout = "60s"
	}
	if o.logLevel == "" {
		o.logLevel = "debug"
	}
	sqlcallInstall(t, e)
	dir, err := os.MkdirTemp("", "sbd-") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	// The standby's backends run as postgres: they must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "api.sock"),
		metrics: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(dir, "standbyd.log")}
	// A long reply_timeout: the statement_timeout the primary arms around a
	// handler (reply_timeout less a fifth) must outlast the sleeping
	// handlers these tests interrupt.
	cfg := fmt.Sprintf(`standby:
  data_directory: %s
channel:
  heartbeat_interval: 1s
  reply_timeout: 20s
  connect_timeout: 3s
  backoff_min: 100ms
  backoff_max: 1s
%sapi:
  socket: %s
  socket_group: postgres
  default_call_timeout: %s
%s  allow:
    - ops: [sqlcall_write, sqlcall_fail, sqlcall_nap, sqlcall_echo, sqlcall_secret, sqlcall_len]
      users: [postgres, root]
    - ops: [sqlcall_rootonly]
      users: [root]
metrics:
  listen: %s
log:
  format: json
  level: %s
`, e.StandbyData, o.channel, b.socket, o.callTimeout, o.api, b.metrics, o.logLevel)
	if err := os.WriteFile(filepath.Join(dir, "standbyd.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered before the daemon's own cleanup, so it runs after it.
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{b.logPath + ".2", b.logPath + ".2.2"} {
				if s, err := os.ReadFile(p); err == nil {
					t.Logf("--- %s ---\n%s", filepath.Base(p), tailLines(string(s), 60))
				}
			}
		}
		os.RemoveAll(dir)
	})
	d := restartDaemon(t, b)
	d.waitReady(30 * time.Second)
	setStandbySocket(t, e, d.socket)
	return d
}

// setStandbySocket sets standbyd.socket in the standby's postgresql.conf,
// reloads, and waits until a new session sees it.
func setStandbySocket(t *testing.T, e *testcluster.Env, path string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(e.StandbyData, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "standbyd.socket = '%s'\n", path)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.SQL(ctx, "standby", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	if !pollFor(20*time.Second, func() bool {
		v, _ := e.SQL(ctx, "standby", "SHOW standbyd.socket")
		return v == path
	}) {
		t.Fatalf("the standby does not show standbyd.socket = %s", path)
	}
}

// sqlSession is a SQL session on a server, as role.
type sqlSession struct {
	t  *testing.T
	pc *pgconn.PgConn
}

func sqlConnect(t *testing.T, e *testcluster.Env, server, role string) *sqlSession {
	t.Helper()
	port := e.StandbyPort
	if server == "primary" {
		port = e.PrimaryPort
	}
	pc, err := pgconn.Connect(ctxT(t, 10*time.Second), fmt.Sprintf("host=%s port=%d user=%s dbname=postgres", e.SocketDir, port, role))
	if err != nil {
		t.Fatalf("connecting to the %s as %s: %v", server, role, err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return &sqlSession{t: t, pc: pc}
}

func (s *sqlSession) pid() uint32 { return s.pc.PID() }

// call runs standbyd.call(op, payload, wait_for_replay) and returns the
// reply's bytes. An op of digits only is called by code.
func (s *sqlSession) call(ctx context.Context, op string, payload []byte, wait bool) ([]byte, error) {
	q := "SELECT standbyd.call($1::text, $2::bytea, $3::boolean)"
	if _, err := strconv.Atoi(op); err == nil {
		q = "SELECT standbyd.call($1::integer, $2::bytea, $3::boolean)"
	}
	w := "f"
	if wait {
		w = "t"
	}
	rr := s.pc.ExecParams(ctx, q, [][]byte{[]byte(op), payload, []byte(w)}, nil, []int16{0, 1, 0}, []int16{1}).Read()
	if rr.Err != nil {
		return nil, rr.Err
	}
	if len(rr.Rows) != 1 || len(rr.Rows[0]) != 1 {
		return nil, fmt.Errorf("standbyd.call returned %d rows", len(rr.Rows))
	}
	return rr.Rows[0][0], nil
}

// mustCall is call that fails the test on an error or a reply other than want.
func (s *sqlSession) mustCall(op string, payload []byte, wait bool, want string) {
	s.t.Helper()
	got, err := s.call(ctxT(s.t, 60*time.Second), op, payload, wait)
	if err != nil {
		s.t.Fatalf("standbyd.call(%s, %q): %v", op, payload, err)
	}
	if string(got) != want {
		s.t.Fatalf("standbyd.call(%s, %q) = %q, want %q", op, payload, got, want)
	}
}

// query runs sql (simple protocol) and returns the first column of the
// first row as text.
func (s *sqlSession) query(sql string) (string, error) {
	res, err := s.pc.Exec(ctxT(s.t, 60*time.Second), sql).ReadAll()
	if err != nil {
		return "", err
	}
	for i := len(res) - 1; i >= 0; i-- {
		if len(res[i].Rows) > 0 {
			return string(res[i].Rows[0][0]), nil
		}
	}
	return "", nil
}

func (s *sqlSession) mustQuery(sql string) string {
	s.t.Helper()
	v, err := s.query(sql)
	if err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// wantSQLState checks that err is a server error with sqlstate and returns it.
func wantSQLState(t *testing.T, err error, sqlstate string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != sqlstate {
		t.Fatalf("want SQLSTATE %s, got %v", sqlstate, err)
	}
	return pe
}

// primaryRows counts sqlcall.t's rows with value v on the primary.
func primaryRows(t *testing.T, e *testcluster.Env, v string) int {
	t.Helper()
	out, err := e.PrimarySQL(ctxT(t, 10*time.Second), "SELECT count(*) FROM sqlcall.t WHERE v = '"+strings.ReplaceAll(v, "'", "''")+"'")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("counting rows: %q", out)
	}
	return n
}

// sqlChannelBackend is the primary backend serving the daemon's channel.
func sqlChannelBackend(t *testing.T, d *daemon) int {
	t.Helper()
	st := d.status(ctxT(t, 10*time.Second))
	if st.ChannelBackendID == 0 {
		t.Fatal("the daemon reports no channel backend")
	}
	return int(st.ChannelBackendID)
}

// waitHandlerSleeping waits until the channel's backend on the primary
// sleeps in a handler: the request is then in flight.
func waitHandlerSleeping(t *testing.T, e *testcluster.Env, backend int) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	if !pollFor(15*time.Second, func() bool {
		v, _ := e.PrimarySQL(ctx, fmt.Sprintf("SELECT wait_event FROM pg_stat_activity WHERE pid = %d", backend))
		return v == "PgSleep"
	}) {
		t.Fatal("the handler never slept on the primary")
	}
}

// asyncCall runs a call in the background; its error arrives on the
// channel with how long the call took.
type callResult struct {
	reply []byte
	err   error
	took  time.Duration
}

func (s *sqlSession) asyncCall(op string, payload []byte) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := s.call(ctx, op, payload, false)
		ch <- callResult{r, err, time.Since(start)}
	}()
	return ch
}

// fds lists what a process's file descriptors point at.
func fds(t *testing.T, pid uint32) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+" -> "+target)
	}
	return out
}

// waitAbandoned waits until the daemon logs that backend pid's call was
// abandoned after it was sent: the backend closed its connection with the
// call in flight, and the handler's late reply was dropped.
func waitAbandoned(t *testing.T, d *daemon, pid uint32) {
	t.Helper()
	tag := `"sql_pid":` + strconv.Itoa(int(pid))
	if !d.poll(20*time.Second, func() bool {
		for _, line := range strings.Split(d.log(), "\n") {
			if strings.Contains(line, "call abandoned by its caller after it was sent") && strings.Contains(line, tag) {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the daemon never logged backend %d's call as abandoned:\n%s", pid, tailLines(d.log(), 15))
	}
}
