package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/conninfo"
	"github.com/standbyd/standbyd/internal/pgconf"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// superuser connects to "primary" or "standby" through its socket.
func superuser(t *testing.T, which string, extra string) *pgconn.PgConn {
	t.Helper()
	port := env.PrimaryPort
	if which == "standby" {
		port = env.StandbyPort
	}
	c, err := pgconn.Connect(ctxT(t, 10*time.Second), "host="+env.SocketDir+" port="+strconv.Itoa(port)+" user=postgres dbname=postgres "+extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// channel is a raw view of the extension's side of the protocol.
type channel struct {
	t  *testing.T
	pc *pgconn.PgConn
}

func enter(t *testing.T, pc *pgconn.PgConn) *channel {
	t.Helper()
	pc.Frontend().Send(&pgproto3.Query{String: "CALL standbyd.serve()"})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return &channel{t: t, pc: pc}
		case *pgproto3.ErrorResponse:
			t.Fatalf("entering: %s %s", m.Code, m.Message)
		}
	}
}

func (c *channel) send(frame []byte) {
	c.pc.Frontend().Send(&pgproto3.CopyData{Data: frame})
	if err := c.pc.Frontend().Flush(); err != nil {
		c.t.Fatal(err)
	}
}

// reply reads the next CopyData and parses it as a reply.
func (c *channel) reply() protocol.Reply {
	c.t.Helper()
	for {
		msg, err := c.pc.ReceiveMessage(ctxT(c.t, 10*time.Second))
		if err != nil {
			c.t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			r, err := protocol.ParseReply(append([]byte(nil), m.Data...))
			if err != nil {
				c.t.Fatalf("malformed reply % x: %v", m.Data, err)
			}
			return r
		case *pgproto3.ErrorResponse:
			c.t.Fatalf("the channel ended: %s %s", m.Code, m.Message)
		}
	}
}

func (c *channel) call(op uint16, id uint32, payload []byte) protocol.Reply {
	c.send(protocol.AppendRequest(nil, op, id, payload))
	return c.reply()
}

// finish sends CopyDone and expects CopyDone, CommandComplete CALL, ReadyForQuery.
func (c *channel) finish() {
	c.t.Helper()
	c.pc.Frontend().Send(&pgproto3.CopyDone{})
	if err := c.pc.Frontend().Flush(); err != nil {
		c.t.Fatal(err)
	}
	var seen []string
	for {
		msg, err := c.pc.ReceiveMessage(ctxT(c.t, 10*time.Second))
		if err != nil {
			c.t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyDone:
			seen = append(seen, "CopyDone")
		case *pgproto3.CommandComplete:
			seen = append(seen, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			seen = append(seen, "ReadyForQuery")
			if strings.Join(seen, ",") != "CopyDone,CALL,ReadyForQuery" {
				c.t.Fatalf("closing sequence %v", seen)
			}
			return
		}
	}
}

func wantError(t *testing.T, r protocol.Reply, op uint16, id uint32, sqlstate string) {
	t.Helper()
	var se *protocol.ServerError
	if !errors.As(r.Err(), &se) || se.SQLState != sqlstate || r.Op != op || r.ID != id {
		t.Fatalf("want error %s for op %d id %d, got op %d id %d err %v", sqlstate, op, id, r.Op, r.ID, r.Err())
	}
}

// claim: extension.bad-input
// claim: protocol.server-errors-go-on
// claim: protocol.frame-too-short
// claim: protocol.frame-length-exact
// claim: protocol.n-op
// claim: protocol.closing-sequence
// claim: protocol.flush-sync-ignored
// claim: protocol.versioning
// claim: protocol.ping-empty
// claim: protocol.server-error-table
func TestExtensionAnswersEveryMalformedFrameAndGoesOn(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)

	r := ch.call(protocol.OpN, 1, protocol.AppendN(nil, [3]int32{100, 200, 300}))
	if n, err := protocol.ParseN(r.Payload); r.Err() != nil || err != nil || n != [3]int32{400, 500, 600} || r.ID != 1 {
		t.Fatalf("N: %+v %v", r, r.Err())
	}
	wantError(t, ch.call(protocol.OpN, 2, protocol.AppendN(nil, [3]int32{2147483647, 0, 0})), protocol.OpN, 2, "22003")
	wantError(t, ch.call(protocol.OpN, 3, []byte{1, 2, 3}), protocol.OpN, 3, "22023")
	wantError(t, ch.call(protocol.OpPing, 4, []byte{1}), protocol.OpPing, 4, "22023")
	wantError(t, ch.call(0x1234, 5, nil), 0x1234, 5, "42883")
	wantError(t, ch.call(protocol.OpHello, 6, []byte{0, 4, 0, 5, 0, 0, 4, 0}), protocol.OpHello, 6, "08P01") // no common version

	bad := protocol.AppendRequest(nil, protocol.OpN, 7, nil)
	bad[1] = 2 // frame version 2
	ch.send(bad)
	wantError(t, ch.reply(), protocol.OpN, 7, "08P01")
	bad = protocol.AppendRequest(nil, protocol.OpPing, 8, nil)
	bad[11] = 9 // length field lies
	ch.send(bad)
	wantError(t, ch.reply(), protocol.OpPing, 8, "08P01")
	ch.send([]byte{'Q', 1, 0})
	wantError(t, ch.reply(), 0, 0, "08P01") // no header: id 0
	ch.send(conntest.AppendReply(nil, protocol.OpN, 9, 0, nil))
	wantError(t, ch.reply(), 0, 0, "08P01") // wrong kind
	ch.send(protocol.AppendRequest(nil, protocol.OpN, 10, make([]byte, 2<<20)))
	wantError(t, ch.reply(), protocol.OpN, 10, "54000") // over standbyd.max_frame_size, discarded

	// Flush and Sync are ignored in copy mode.
	ch.pc.Frontend().Send(&pgproto3.Sync{})
	ch.pc.Frontend().Send(&pgproto3.Flush{})
	r = ch.call(protocol.OpN, 11, protocol.AppendN(nil, [3]int32{-300, 0, 1}))
	if n, _ := protocol.ParseN(r.Payload); r.Err() != nil || n != [3]int32{0, 300, 301} {
		t.Fatalf("N after errors: %v %v", n, r.Err())
	}
	ch.finish()
	// The connection is an ordinary session again; CopyData sent now is ignored.
	ch.send(protocol.AppendRequest(nil, protocol.OpN, 12, nil))
	res, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT 41 + 1").ReadAll()
	if err != nil || len(res) != 1 || string(res[0].Rows[0][0]) != "42" {
		t.Fatalf("session after the channel: %v %v", res, err)
	}
}

// claim: readme.builtin-ops
// claim: protocol.default-max-frame
// claim: protocol.hello-reply-layout
func TestExtensionHelloAndPing(t *testing.T) {
	needEnv(t)
	// Two handlers registered out of op order: hello lists them in op order.
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_hello_fn(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
SELECT standbyd.register_handler(369, 'e2e_zeta', 'public.e2e_hello_fn(bytea)');
SELECT standbyd.register_handler(368, 'e2e_alpha', 'public.e2e_hello_fn(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(368); SELECT standbyd.unregister_handler(369); DROP FUNCTION IF EXISTS public.e2e_hello_fn(bytea)")
	})
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"primary", "standby"} {
		t.Run(which, func(t *testing.T) {
			ch := enter(t, superuser(t, which, ""))
			r := ch.call(protocol.OpHello, 1, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1 << 20, ClientName: "e2e"}.Append(nil))
			h, err := protocol.ParseHelloReply(r.Payload)
			if r.Err() != nil || err != nil {
				t.Fatalf("hello: %v %v", r.Err(), err)
			}
			sysid, _ := env.SQL(ctxT(t, 10*time.Second), which, "SELECT system_identifier FROM pg_control_system()")
			if h.Version != 3 || strconv.FormatUint(h.SystemIdentifier, 10) != sysid || strconv.Itoa(int(h.ServerVersionNum/10000)) != testcluster.Major() ||
				h.InRecovery != (which == "standby") || h.MaxFrameSize != 1<<20 || h.Timeline != 1 {
				t.Fatalf("hello reply %+v (system identifier %s)", h, sysid)
			}
			// The built-ins first, in order, then only registered handlers.
			if len(h.Ops) < len(protocol.BuiltinOps) {
				t.Fatalf("ops %+v", h.Ops)
			}
			names := map[uint16]string{}
			for i, o := range h.Ops {
				if i < len(protocol.BuiltinOps) {
					if o.Op != protocol.BuiltinOps[i] || !o.Builtin || o.Name != protocol.OpName(o.Op) {
						t.Fatalf("op %d: %+v", i, o)
					}
				} else if o.Builtin || o.Op < protocol.FirstUserOp || o.Op <= h.Ops[i-1].Op {
					t.Fatalf("op %d after the built-ins, not a handler in op order: %+v after %+v", i, o, h.Ops[i-1])
				}
				names[o.Op] = o.Name
			}
			if names[368] != "e2e_alpha" || names[369] != "e2e_zeta" {
				t.Fatalf("registered handlers 368 and 369 listed as %q and %q", names[368], names[369])
			}
			r = ch.call(protocol.OpPing, 2, nil)
			p, err := protocol.ParsePingReply(r.Payload)
			if r.Err() != nil || err != nil || p.InRecovery != (which == "standby") || p.WALPosition == 0 {
				t.Fatalf("ping %+v %v %v", p, r.Err(), err)
			}
			ch.finish()
		})
	}
}

// claim: extension.refused-contexts
// claim: extension.enter-privilege
// claim: readme.grants
// claim: protocol.refused-contexts
func TestExtensionRefusesWrongContexts(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	ctx := ctxT(t, 30*time.Second)
	for _, c := range []struct{ sql, sqlstate, msg string }{
		{"BEGIN; CALL standbyd.serve(); COMMIT", "25001", "transaction block"},
		{"DO $$ BEGIN CALL standbyd.serve(); END $$", "2D000", "top level"},
	} {
		_, err := pc.Exec(ctx, c.sql).ReadAll()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != c.sqlstate || !strings.Contains(pe.Message, c.msg) {
			t.Fatalf("%s: %v", c.sql, err)
		}
		_, _ = pc.Exec(ctx, "ROLLBACK").ReadAll()
	}
	_, err := pc.Exec(ctx, "CREATE OR REPLACE FUNCTION public.serve_as_function() RETURNS void LANGUAGE c AS '$libdir/standbyd', 'standbyd_serve'; SELECT public.serve_as_function()").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "CALL") {
		t.Fatalf("as a function: %v", err)
	}
	_, _ = pc.Exec(ctx, "DROP FUNCTION IF EXISTS public.serve_as_function()").ReadAll()

	// A role without EXECUTE is refused with a clear error.
	_, err = pc.Exec(ctx, "DROP ROLE IF EXISTS nobody_e2e; CREATE ROLE nobody_e2e LOGIN").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	np, err := pgconn.Connect(ctx, "host="+env.SocketDir+" port="+strconv.Itoa(env.PrimaryPort)+" user=nobody_e2e dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer np.Close(ctx)
	_, err = np.Exec(ctx, "CALL standbyd.serve()").ReadAll()
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("unprivileged role: %v", err)
	}
}

// statement_timeout counts from the CALL; the extension disarms it so an idle
// channel lives on.
// claim: extension.statement-timeout-disarmed
// claim: readme.serve-summary
func TestExtensionIdleChannelOutlivesStatementTimeout(t *testing.T) {
	needEnv(t)
	ch := enter(t, superuser(t, "primary", "options='-c statement_timeout=200'"))
	time.Sleep(time.Second)
	if r := ch.call(protocol.OpPing, 1, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	ch.finish()
}

// CopyFail ends the channel with an ERROR; CopyData sent after it is
// ignored by the server, and the session serves the next query.
// claim: protocol.copyfail
// claim: protocol.error-ends-channel
func TestExtensionCopyFailEndsTheChannelNotTheSession(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	enter(t, pc)
	pc.Frontend().Send(&pgproto3.CopyFail{Message: "client gave up"})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	var got *pgproto3.ErrorResponse
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			got = e
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if got == nil || got.Code != "57014" || !strings.Contains(got.Message, "client gave up") {
		t.Fatalf("CopyFail: %+v", got)
	}
	// A frame after the channel ended gets no reply and no error: the next
	// query's result is the first thing the server sends.
	pc.Frontend().Send(&pgproto3.CopyData{Data: protocol.AppendRequest(nil, protocol.OpPing, 1, nil)})
	res, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT 42").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "42" {
		t.Fatalf("the query after a stray frame: %+v %v", res, err)
	}
}

// conn.Session against the real primary, configured exactly as the daemon
// does: primary_conninfo from the standby's files, through conninfo.
// claim: readme.follows-primary-conninfo
func TestSessionWithStandbysConninfo(t *testing.T) {
	needEnv(t)
	cfg, err := pgconf.LoadDataDir(env.StandbyData, pgconf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := cfg.Get("primary_conninfo")
	if !ok {
		t.Fatal("no primary_conninfo")
	}
	res, err := conninfo.Parse(s.Value, conninfo.Options{Database: "postgres", ApplicationName: "standbyd-e2e", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.PasswordSource, env.PassFile) {
		t.Fatalf("password from %q, want the passfile named in primary_conninfo", res.PasswordSource)
	}
	ctx := ctxT(t, 30*time.Second)
	sess, err := conn.Dial(ctx, conn.DialOptions{Config: res.Config, ClientName: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Hello().InRecovery || sess.MaxFrameSize() != 1<<20 {
		t.Fatalf("hello %+v", sess.Hello())
	}
	for i := int32(0); i < 1000; i++ {
		out, err := sess.Call(ctx, protocol.OpN, protocol.AppendN(nil, [3]int32{i, -i, 2 * i}))
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := protocol.ParseN(out); n != [3]int32{i + 300, -i + 300, 2*i + 300} {
			t.Fatalf("call %d: %v", i, n)
		}
	}
	var se *protocol.ServerError
	if _, err := sess.Call(ctx, protocol.OpN, protocol.AppendN(nil, [3]int32{2147483647, 0, 0})); !errors.As(err, &se) || se.SQLState != "22003" {
		t.Fatalf("overflow: %v", err)
	}
	if sess.Err() != nil {
		t.Fatalf("an error reply ended the session: %v", sess.Err())
	}
	// A frame larger than the session allows is refused locally, not sent.
	var ce *conn.CallError
	if _, err := sess.Call(ctx, protocol.OpN, make([]byte, 2<<20)); !errors.As(err, &ce) || ce.OutcomeUnknown() {
		t.Fatalf("oversize: %v", err)
	}
	pid := strconv.Itoa(int(sess.BackendPID()))
	if got := primarySQL(t, "SELECT application_name FROM pg_stat_activity WHERE pid = "+pid); got != "standbyd-e2e" {
		t.Fatalf("application_name %q", got)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The backend went away after Terminate.
	waitFor(t, 10*time.Second, "the backend to exit after Close", func() bool {
		return primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	})
}

// A session whose backend was terminated while idle finds out before
// writing the next request: that request was not sent, and the session ends.
func TestSessionBackendTerminated(t *testing.T) {
	needEnv(t)
	cfg, _ := pgconf.LoadDataDir(env.StandbyData, pgconf.Options{})
	s, _ := cfg.Get("primary_conninfo")
	res, err := conninfo.Parse(s.Value, conninfo.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	sess, err := conn.Dial(ctx, conn.DialOptions{Config: res.Config})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx)
	pid := strconv.Itoa(int(sess.BackendPID()))
	primarySQL(t, "SELECT pg_terminate_backend("+pid+")")
	waitFor(t, 10*time.Second, "the terminated backend to exit", func() bool {
		return primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	})
	_, err = sess.Call(ctx, protocol.OpPing, nil)
	var ce *conn.CallError
	if !errors.As(err, &ce) || !ce.NotSent() || ce.OutcomeUnknown() || sess.Err() == nil {
		t.Fatalf("after terminate: %v (session err %v)", err, sess.Err())
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" {
		t.Fatalf("want the FATAL 57P01 in the chain, got %v", err)
	}
}

// setting takes a name of 1 to 128 bytes without NUL, case-insensitive;
// page a relation name of 1 to 257 bytes, the longest being two quoted
// identifiers of 63 doubled quotes and the dot; a fork the relation does
// not have is 22023.
// claim: protocol.setting-name
// claim: protocol.page-name-length
// claim: protocol.page-errors
func TestSettingAndPageNameBounds(t *testing.T) {
	needEnv(t)
	// 63 quote characters, quoted: 128 bytes.
	quotes := `"` + strings.Repeat(`""`, 63) + `"`
	longest := quotes + "." + quotes
	if len(longest) != 257 {
		t.Fatalf("the longest name is %d bytes", len(longest))
	}
	primarySQL(t, "CREATE SCHEMA IF NOT EXISTS "+quotes+"; CREATE TABLE IF NOT EXISTS "+longest+" (n int); INSERT INTO "+longest+" VALUES (1); CREATE TABLE IF NOT EXISTS public.e2e_nofsm (n int)")
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "DROP SCHEMA IF EXISTS "+quotes+" CASCADE; DROP TABLE IF EXISTS public.e2e_nofsm")
	})
	ch := enter(t, superuser(t, "primary", ""))
	want := primarySQL(t, "SHOW max_wal_senders")
	for i, name := range []string{"max_wal_senders", "MAX_WAL_Senders"} {
		if r := ch.call(protocol.OpSetting, uint32(1+i), []byte(name)); r.Err() != nil || string(r.Payload) != want {
			t.Fatalf("setting %s: %q %v, want %q", name, r.Payload, r.Err(), want)
		}
	}
	wantError(t, ch.call(protocol.OpSetting, 3, nil), protocol.OpSetting, 3, "22023")
	wantError(t, ch.call(protocol.OpSetting, 4, []byte("max_wal\x00senders")), protocol.OpSetting, 4, "22023")
	wantError(t, ch.call(protocol.OpSetting, 5, []byte(strings.Repeat("x", 129))), protocol.OpSetting, 5, "22023")
	// 128 bytes are read as a name: unknown parameter, not a size error.
	wantError(t, ch.call(protocol.OpSetting, 6, []byte(strings.Repeat("x", 128))), protocol.OpSetting, 6, "42704")

	r := ch.call(protocol.OpPage, 7, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, longest))
	if r.Err() != nil || len(r.Payload) != 8192 {
		t.Fatalf("page of the 257-byte name: %d bytes, %v", len(r.Payload), r.Err())
	}
	wantError(t, ch.call(protocol.OpPage, 8, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, longest+" ")), protocol.OpPage, 8, "22023")
	wantError(t, ch.call(protocol.OpPage, 9, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "")), protocol.OpPage, 9, "22023")
	r = ch.call(protocol.OpPage, 10, protocol.AppendPageRequest(nil, protocol.ForkFSM, 0, "public.e2e_nofsm"))
	wantError(t, r, protocol.OpPage, 10, "22023")
	if se := new(protocol.ServerError); !errors.As(r.Err(), &se) || !strings.Contains(se.Message, "has no fsm fork") {
		t.Fatalf("page of a missing fork: %v", r.Err())
	}
	ch.finish()
}

// ping, N and wal run outside any transaction; hello, setting and page
// each in a transaction of their own. Counted in pg_stat_database of a
// database of the test's own: the backend's counts reach it when it exits.
// Margins are wide: 300 requests of each kind, against a bound of 50 for
// what the session itself and autovacuum may add.
// claim: protocol.op-transaction-column
func TestBuiltinsInATransactionOrNot(t *testing.T) {
	needEnv(t)
	primarySQL(t, "DROP DATABASE IF EXISTS e2e_xact WITH (FORCE)")
	primarySQL(t, "CREATE DATABASE e2e_xact")
	t.Cleanup(func() { _, _ = env.PrimarySQL(context.Background(), "DROP DATABASE IF EXISTS e2e_xact WITH (FORCE)") })
	count := func() int {
		t.Helper()
		primarySQL(t, "SELECT pg_stat_force_next_flush()")
		n, err := strconv.Atoi(primarySQL(t, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'e2e_xact'"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	type request struct {
		op      uint16
		payload []byte
	}
	const n = 300
	// session sends each of reqs n times on a channel in e2e_xact (with no
	// reqs, it creates the extension there) and returns once its backend is
	// gone (its counts flushed).
	session := func(reqs ...request) {
		t.Helper()
		pc, err := pgconn.Connect(ctxT(t, 10*time.Second), "host="+env.SocketDir+" port="+strconv.Itoa(env.PrimaryPort)+" user=postgres dbname=e2e_xact")
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) == 0 {
			if _, err := pc.Exec(ctxT(t, 10*time.Second), "CREATE EXTENSION standbyd").ReadAll(); err != nil {
				t.Fatal(err)
			}
		} else {
			ch := enter(t, pc)
			id := uint32(0)
			for range n {
				for _, req := range reqs {
					id++
					if r := ch.call(req.op, id, req.payload); r.Err() != nil {
						t.Fatalf("op %#x: %v", req.op, r.Err())
					}
				}
			}
			ch.finish()
		}
		pid := pc.PID()
		_ = pc.Close(ctxT(t, 10*time.Second))
		deadline := time.Now().Add(30 * time.Second)
		for primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+strconv.Itoa(int(pid))) != "0" {
			if time.Now().After(deadline) {
				t.Fatal("the channel's backend did not exit")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	session()
	before := count()
	session(request{protocol.OpPing, nil}, request{protocol.OpN, protocol.AppendN(nil, [3]int32{1, 2, 3})}, request{protocol.OpWAL, nil})
	outside := count() - before
	before = count()
	session(
		request{protocol.OpHello, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1 << 20}.Append(nil)},
		request{protocol.OpSetting, []byte("work_mem")},
		request{protocol.OpPage, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_catalog.pg_class")},
	)
	inside := count() - before
	t.Logf("transactions counted: %d for %d ping, N and wal each; %d for %d hello, setting and page each", outside, n, inside, n)
	if outside >= 50 {
		t.Errorf("%d transactions for %d ping, N and wal requests: they run in transactions", outside, 3*n)
	}
	if inside < 3*n {
		t.Errorf("%d transactions for %d hello, setting and page requests: want one each at least", inside, 3*n)
	}
}

// A reply over the client's maximum frame size is replaced by 54000, but
// the request was served and committed: the handler's row is there.
// claim: protocol.reply-over-client-max
func TestReplyOverClientMaxIsCommitted(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE TABLE IF NOT EXISTS public.e2e_big_reply(tag text);
CREATE OR REPLACE FUNCTION public.e2e_big_reply(b bytea) RETURNS bytea LANGUAGE sql AS
$$ INSERT INTO public.e2e_big_reply VALUES (convert_from(b, 'UTF8')); SELECT convert_to(repeat('x', 2000), 'UTF8') $$;
SELECT standbyd.register_handler(370, 'e2e_big_reply', 'public.e2e_big_reply(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(370); DROP FUNCTION IF EXISTS public.e2e_big_reply(bytea); DROP TABLE IF EXISTS public.e2e_big_reply")
	})
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	ch := enter(t, superuser(t, "primary", ""))
	if r := ch.call(protocol.OpHello, 1, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1024}.Append(nil)); r.Err() != nil {
		t.Fatalf("hello with a 1024-byte maximum: %v", r.Err())
	}
	e := parseV3Error(t, ch.call(370, 2, []byte(tag)))
	if e.sqlstate != "54000" {
		t.Fatalf("a 2000-byte reply to a client that takes 1024: %+v", e)
	}
	// Asked from another session while the channel is still open: committed.
	if n := primarySQL(t, "SELECT count(*) FROM public.e2e_big_reply WHERE tag = '"+tag+"'"); n != "1" {
		t.Fatalf("%s rows written by the request whose reply was replaced, want 1", n)
	}
	ch.finish()
}
