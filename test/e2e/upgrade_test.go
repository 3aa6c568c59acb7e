package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/conninfo"
	"github.com/standbyd/standbyd/internal/pgconf"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// The registry's life across versions and tools: extension updates,
// pg_dump and restore, pg_upgrade.

// pgBin is where the server binaries are (testcluster.PGBin).
func pgBin() string { return testcluster.PGBin() }

// asClusterOwner runs a PostgreSQL program as the clusters' owner, in the
// chosen major's chroot if there is one (testcluster.Command).
func asClusterOwner(ctx context.Context, dir, prog string, args ...string) *exec.Cmd {
	return testcluster.CommandIn(ctx, dir, prog, args...)
}

// freshDB creates an empty database on the shared primary, dropped at the end.
func freshDB(t *testing.T, name string) {
	t.Helper()
	primarySQL(t, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	primarySQL(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
}

// dbConn is a superuser connection to a database of the shared primary.
func dbConn(t *testing.T, db string) *pgconn.PgConn {
	t.Helper()
	pc, err := pgconn.Connect(ctxT(t, 10*time.Second), "host="+env.SocketDir+" port="+strconv.Itoa(env.PrimaryPort)+" user=postgres dbname="+db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

// sqlOn runs statements and returns the first column of the last row.
func sqlOn(t *testing.T, pc *pgconn.PgConn, sql string) string {
	t.Helper()
	res, err := pc.Exec(ctxT(t, 30*time.Second), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res) > 0 {
		if rows := res[len(res)-1].Rows; len(rows) > 0 {
			return string(rows[len(rows)-1][0])
		}
	}
	return ""
}

// channelTo opens a channel session exactly as the daemon does (the
// standby's primary_conninfo, the channel role), to database db.
func channelTo(t *testing.T, db string) *conn.Session {
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
	res.Config.Database = db
	sess, err := conn.Dial(ctxT(t, 30*time.Second), conn.DialOptions{Config: res.Config, ClientName: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	return sess
}

const upgradeHandlerSQL = `
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO standbyd_repl;
CREATE FUNCTION app.up(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'up:'::bytea || b $$;
CREATE FUNCTION "app"."Odd Name"(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'odd:'::bytea || b $$;
GRANT EXECUTE ON FUNCTION app.up(bytea), app."Odd Name"(bytea) TO standbyd_repl;
GRANT USAGE ON SCHEMA standbyd TO standbyd_repl;
GRANT EXECUTE ON PROCEDURE standbyd.serve() TO standbyd_repl;
SELECT standbyd.register_handler(300, 'up', 'app.up(bytea)');
SELECT standbyd.register_handler(301, 'odd', 'app."Odd Name"(bytea)');
`

// The registry's triggers (cache invalidation, name normalisation) must
// come back wherever the table does.
const (
	registryTriggers     = "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'standbyd.handlers'::regclass AND NOT tgisinternal"
	wantRegistryTriggers = "handlers_changed,handlers_normalize"
)

// wantHandlersWork calls both handlers of upgradeHandlerSQL on a session.
func wantHandlersWork(t *testing.T, sess *conn.Session, when string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if out, err := sess.Call(ctx, 300, []byte("x")); err != nil || string(out) != "up:x" {
		t.Fatalf("%s: handler up: %q %v", when, out, err)
	}
	if out, err := sess.Call(ctx, 301, []byte("y")); err != nil || string(out) != "odd:y" {
		t.Fatalf("%s: handler odd: %q %v", when, out, err)
	}
}

// ALTER EXTENSION standbyd UPDATE from 1.0 through 1.1 (registry added) and
// 1.2 (registry by name) to 1.3 (standbyd.call()): a handler registered at 1.1 keeps working, over a
// channel that stays open through the update, and a dropped function is a
// clear error reply, not a crash.
// claim: extension.upgrade-from-10
// claim: extension.registry-by-name
// claim: extension.register-checks
func TestUpdate10To11To12WithHandler(t *testing.T) {
	needEnv(t)
	freshDB(t, "update_e2e")
	pc := dbConn(t, "update_e2e")
	sqlOn(t, pc, "CREATE EXTENSION standbyd VERSION '1.0'")
	if got := sqlOn(t, pc, "SELECT to_regclass('standbyd.handlers') IS NULL"); got != "t" {
		t.Fatal("1.0 has a handler registry")
	}
	ch := enter(t, pc)
	h, err := protocol.ParseHelloReply(ch.call(protocol.OpHello, 1, protocol.HelloRequest{MinVersion: 1, MaxVersion: 1}.Append(nil)).Payload)
	if err != nil || len(h.Ops) != len(protocol.BuiltinOps) {
		t.Fatalf("hello on 1.0: %+v %v", h, err)
	}
	wantError(t, ch.call(0x100, 2, nil), 0x100, 2, "42883")
	ch.finish()

	sqlOn(t, pc, "ALTER EXTENSION standbyd UPDATE TO '1.1'")
	sqlOn(t, pc, upgradeHandlerSQL)
	if got := sqlOn(t, pc, "SELECT handler::text FROM standbyd.handlers WHERE op = 300"); got != "app.up(bytea)" {
		t.Fatalf("1.1 registry row: %q", got)
	}
	_, err = pc.Exec(ctxT(t, 10*time.Second), "SELECT standbyd.register_handler(302, 'bad', 'pg_catalog.now()')").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P13" {
		t.Fatalf("registering a function of the wrong shape: %v", err)
	}
	sess := channelTo(t, "update_e2e")
	wantHandlersWork(t, sess, "at 1.1")

	sqlOn(t, pc, "ALTER EXTENSION standbyd UPDATE TO '1.2'")
	if got := sqlOn(t, pc, "SELECT extversion FROM pg_extension WHERE extname = 'standbyd'"); got != "1.2" {
		t.Fatalf("version after the update: %s", got)
	}
	if got := sqlOn(t, pc, "SELECT string_agg(op || '=' || handler || ':' || pg_typeof(handler), ',' ORDER BY op) FROM standbyd.handlers"); got != `300=app.up:text,301=app."Odd Name":text` {
		t.Fatalf("registry after the update: %s", got)
	}
	wantHandlersWork(t, sess, "same channel after the update to 1.2")
	wantHandlersWork(t, channelTo(t, "update_e2e"), "new channel at 1.2")

	// 1.3 adds standbyd.call() for standbys and leaves the registry alone.
	sqlOn(t, pc, "ALTER EXTENSION standbyd UPDATE TO '1.3'")
	if got := sqlOn(t, pc, "SELECT extversion || ' ' || count(*) FROM pg_extension, pg_proc p WHERE extname = 'standbyd' AND p.oid IN ('standbyd.call(text,bytea,boolean)'::regprocedure, 'standbyd.call(integer,bytea,boolean)'::regprocedure) GROUP BY extversion"); got != "1.3 2" {
		t.Fatalf("after the update to 1.3: %s", got)
	}
	wantHandlersWork(t, sess, "same channel after the update to 1.3")

	// The function goes away: its op answers 42883 naming it, and the
	// channel goes on.
	sqlOn(t, pc, "DROP FUNCTION app.up(bytea)")
	ctx := ctxT(t, 30*time.Second)
	_, err = sess.Call(ctx, 300, []byte("x"))
	wantServerError(t, err, "42883", `function app.up(bytea) registered for handler "up" does not exist`)
	if out, err := sess.Call(ctx, 301, []byte("y")); err != nil || string(out) != "odd:y" {
		t.Fatalf("the other handler after the drop: %q %v", out, err)
	}
	if _, err := sess.Call(ctx, protocol.OpPing, nil); err != nil {
		t.Fatalf("ping after the drop: %v", err)
	}
}

// A database whose extension is still at 1.1 (the package was upgraded,
// ALTER EXTENSION UPDATE not run yet) is served by the current library: its
// regprocedure registry works, and a dropped function is an error reply.
// claim: extension.serves-registry-at-11
func TestHandlerWithRegistryAt11(t *testing.T) {
	needEnv(t)
	primarySQL(t, "DROP ROLE IF EXISTS e2e_plain_owner; CREATE ROLE e2e_plain_owner")
	t.Cleanup(func() { _, _ = env.PrimarySQL(context.Background(), "DROP ROLE IF EXISTS e2e_plain_owner") })
	freshDB(t, "registry11_e2e")
	pc := dbConn(t, "registry11_e2e")
	sqlOn(t, pc, "CREATE EXTENSION standbyd VERSION '1.1'")
	sqlOn(t, pc, upgradeHandlerSQL)
	sess := channelTo(t, "registry11_e2e")
	wantHandlersWork(t, sess, "registry at 1.1")
	// Re-registering takes effect at the next call.
	sqlOn(t, pc, "SELECT standbyd.register_handler(300, 'up', 'app.\"Odd Name\"(bytea)')")
	ctx := ctxT(t, 30*time.Second)
	if out, err := sess.Call(ctx, 300, []byte("z")); err != nil || string(out) != "odd:z" {
		t.Fatalf("after re-registering op 300 at 1.1: %q %v", out, err)
	}
	sqlOn(t, pc, `DROP FUNCTION app."Odd Name"(bytea)`)
	_, err := sess.Call(ctx, 301, []byte("y"))
	var se *protocol.ServerError
	if !errors.As(err, &se) || se.SQLState != "42883" {
		t.Fatalf("dropped function at 1.1: want 42883, got %v", err)
	}
	if _, err := sess.Call(ctx, protocol.OpPing, nil); err != nil {
		t.Fatalf("ping after the dropped function: %v", err)
	}

	// 1.1's register_handler did not look at the owner; the channel applies
	// the owner policy to a 1.1 registry too: a plain role's function is
	// refused, the channel role's own function runs.
	sqlOn(t, pc, `CREATE FUNCTION app.plain(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'plain'::bytea $$;
GRANT EXECUTE ON FUNCTION app.plain(bytea) TO standbyd_repl;
ALTER FUNCTION app.plain(bytea) OWNER TO e2e_plain_owner;
SELECT standbyd.register_handler(302, 'plain', 'app.plain(bytea)')`)
	_, err = sess.Call(ctx, 302, nil)
	wantServerError(t, err, "42501", `handler "plain" is not run: its function`)
	wantServerError(t, err, "42501", `"e2e_plain_owner"`)
	sqlOn(t, pc, "ALTER FUNCTION app.plain(bytea) OWNER TO standbyd_repl")
	if out, err := sess.Call(ctx, 302, nil); err != nil || string(out) != "plain" {
		t.Fatalf("a function owned by the channel's role, at 1.1: %q %v", out, err)
	}
}

// pg_dump and pg_restore of a database with handlers registered, dumped at
// 1.3, 1.2 and 1.1 (restored where CREATE EXTENSION gives 1.3): the registry
// comes back and the daemon calls the handlers in the restored database.
// claim: extension.pg-upgrade-dump-restore
func TestDumpAndRestoreKeepHandlers(t *testing.T) {
	needEnv(t)
	for _, version := range []string{"1.3", "1.2", "1.1"} {
		t.Run("dumped at "+version, func(t *testing.T) {
			src, dst := "dump_src_e2e", "dump_dst_e2e"
			freshDB(t, src)
			pc := dbConn(t, src)
			sqlOn(t, pc, "CREATE EXTENSION standbyd VERSION '"+version+"'")
			sqlOn(t, pc, upgradeHandlerSQL)
			pc.Close(context.Background())

			// in the clusters' directory: pg_dump runs as their owner
			dump := filepath.Join(env.Base, "src-"+version+".dump")
			t.Cleanup(func() { _ = os.Remove(dump) })
			ctx := ctxT(t, 2*time.Minute)
			target := []string{"-h", env.SocketDir, "-p", strconv.Itoa(env.PrimaryPort), "-U", "postgres"}
			if out, err := asClusterOwner(ctx, env.Base, "pg_dump", append(target, "-Fc", "-f", dump, src)...).CombinedOutput(); err != nil {
				t.Fatalf("pg_dump: %v\n%s", err, out)
			}
			freshDB(t, dst)
			if out, err := asClusterOwner(ctx, env.Base, "pg_restore", append(target, "--exit-on-error", "-d", dst, dump)...).CombinedOutput(); err != nil {
				t.Fatalf("pg_restore: %v\n%s", err, out)
			}
			rc := dbConn(t, dst)
			if got := sqlOn(t, rc, "SELECT extversion FROM pg_extension WHERE extname = 'standbyd'"); got != "1.3" {
				t.Fatalf("restored extension version %s", got)
			}
			if got := sqlOn(t, rc, "SELECT string_agg(op || '=' || name || '=' || handler, ',' ORDER BY op) FROM standbyd.handlers"); got != `300=up=app.up,301=odd=app."Odd Name"` {
				t.Fatalf("restored registry: %s", got)
			}
			if got := sqlOn(t, rc, registryTriggers); got != wantRegistryTriggers {
				t.Fatalf("restored registry triggers: %s", got)
			}

			d := startDaemon(t, "  database: "+dst)
			d.waitReady(30 * time.Second)
			if out, e, code := d.call("up", "a"); code != 0 || out != "up:a\n" {
				t.Fatalf("call up in the restored database: %d %q %q", code, out, e)
			}
			if out, e, code := d.call("odd", "b"); code != 0 || out != "odd:b\n" {
				t.Fatalf("call odd in the restored database: %d %q %q", code, out, e)
			}
			if err := d.stop(); err != nil {
				t.Fatalf("stopping the daemon: %v", err)
			}
		})
	}
}

// pg_upgrade --check passes for a primary with the extension installed and
// a handler registered (the registry has no reg* column), and the upgraded
// cluster serves the handler.
// claim: extension.pg-upgrade-dump-restore
func TestPgUpgradeWithHandlerRegistered(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := ctxT(t, 5*time.Minute)
	if _, err := e.PrimarySQL(ctx, upgradeHandlerSQL); err != nil {
		t.Fatal(err)
	}
	newData := filepath.Join(e.Base, "upgraded")
	if out, err := asClusterOwner(ctx, e.Base, "initdb", "-D", newData, "-U", "postgres", "--auth-local=trust",
		"--encoding=UTF8", "--locale=C", "--data-checksums").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	newPort, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	upgrade := func(args ...string) string {
		t.Helper()
		full := append([]string{"-b", pgBin(), "-B", pgBin(), "-d", e.PrimaryData, "-D", newData,
			"-p", strconv.Itoa(e.PrimaryPort), "-P", strconv.Itoa(newPort), "-U", "postgres"}, args...)
		out, err := asClusterOwner(ctx, e.Base, "pg_upgrade", full...).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_upgrade %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The old server runs: a live check, as a DBA does first.
	if out := upgrade("--check"); !strings.Contains(out, "Clusters are compatible") {
		t.Fatalf("pg_upgrade --check:\n%s", out)
	}

	if err := e.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	upgrade()
	sock := filepath.Join(e.Base, "sock")
	if out, err := asClusterOwner(ctx, e.Base, "pg_ctl", "-D", newData, "-w", "-t", "60", "-l", filepath.Join(e.Base, "upgraded.log"),
		"-o", "-c listen_addresses='' -c port="+strconv.Itoa(newPort)+" -c unix_socket_directories="+sock, "start").CombinedOutput(); err != nil {
		t.Fatalf("starting the upgraded cluster: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_ = asClusterOwner(context.Background(), e.Base, "pg_ctl", "-D", newData, "-w", "-t", "60", "-m", "fast", "stop").Run()
	})
	pc, err := pgconn.Connect(ctx, "host="+sock+" port="+strconv.Itoa(newPort)+" user=postgres dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	if got := sqlOn(t, pc, "SELECT string_agg(op || '=' || handler, ',' ORDER BY op) FROM standbyd.handlers"); got != `300=app.up,301=app."Odd Name"` {
		t.Fatalf("registry after pg_upgrade: %s", got)
	}
	if got := sqlOn(t, pc, registryTriggers); got != wantRegistryTriggers {
		t.Fatalf("registry triggers after pg_upgrade: %s", got)
	}
	ch := enter(t, pc)
	if r := ch.call(300, 1, []byte("u")); r.Err() != nil || string(r.Payload) != "up:u" {
		t.Fatalf("handler after pg_upgrade: %q %v", r.Payload, r.Err())
	}
	ch.finish()
}

// The update from 1.1 to 1.2 names each handler's function: a row whose
// function was dropped cannot be named and is removed with a WARNING; a row
// whose function fails the owner policy is kept, with a WARNING.
// claim: extension.update-12-rows
func TestUpdate11To12DropsAndWarns(t *testing.T) {
	needEnv(t)
	primarySQL(t, "DROP ROLE IF EXISTS e2e_plain_owner12; CREATE ROLE e2e_plain_owner12")
	t.Cleanup(func() { _, _ = env.PrimarySQL(context.Background(), "DROP ROLE IF EXISTS e2e_plain_owner12") })
	freshDB(t, "update12_e2e")
	var notices []string
	cfg, err := pgconn.ParseConfig("host=" + env.SocketDir + " port=" + strconv.Itoa(env.PrimaryPort) + " user=postgres dbname=update12_e2e")
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Severity+": "+n.Message) }
	pc, err := pgconn.ConnectConfig(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	sqlOn(t, pc, `CREATE EXTENSION standbyd VERSION '1.1';
CREATE SCHEMA app;
CREATE FUNCTION app.kept(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
CREATE FUNCTION app.gone(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
CREATE FUNCTION app.plain(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
ALTER FUNCTION app.plain(bytea) OWNER TO e2e_plain_owner12;
SELECT standbyd.register_handler(300, 'kept', 'app.kept(bytea)');
SELECT standbyd.register_handler(301, 'gone', 'app.gone(bytea)');
SELECT standbyd.register_handler(302, 'plain', 'app.plain(bytea)');
DROP FUNCTION app.gone(bytea)`)
	notices = nil
	sqlOn(t, pc, "ALTER EXTENSION standbyd UPDATE TO '1.2'")
	if got := sqlOn(t, pc, "SELECT string_agg(op || '=' || handler, ',' ORDER BY op) FROM standbyd.handlers"); got != "300=app.kept,302=app.plain" {
		t.Fatalf("registry after the update: %s", got)
	}
	all := strings.Join(notices, "\n")
	if !strings.Contains(all, `WARNING: standbyd: handler "gone" (op 301) removed: its function no longer exists`) ||
		!strings.Contains(all, `WARNING: standbyd: handler "plain" (op 302) will be refused with 42501`) || strings.Contains(all, `"kept"`) {
		t.Fatalf("the update's warnings:\n%s", all)
	}
}
