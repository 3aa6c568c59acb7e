package e2e

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// CALL standbyd.serve() is refused from another procedure and on a
// replication connection, with the reason.
// claim: extension.refused-contexts
func TestServeRefusedInsideAProcedureAndOnAReplicationConnection(t *testing.T) {
	needEnv(t)
	ctx := ctxT(t, 30*time.Second)
	pc := superuser(t, "primary", "")
	if _, err := pc.Exec(ctx, "CREATE OR REPLACE PROCEDURE public.e2e_wraps_serve() LANGUAGE plpgsql AS $$ BEGIN CALL standbyd.serve(); END $$").ReadAll(); err != nil {
		t.Fatal(err)
	}
	_, err := pc.Exec(ctx, "CALL public.e2e_wraps_serve()").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "2D000" || !strings.Contains(pe.Message, "top level") {
		t.Fatalf("from another procedure: %v", err)
	}
	_, _ = pc.Exec(ctx, "DROP PROCEDURE IF EXISTS public.e2e_wraps_serve()").ReadAll()

	repl := superuser(t, "primary", "replication=database")
	_, err = repl.Exec(ctx, "CALL standbyd.serve()").ReadAll()
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "replication connection") {
		t.Fatalf("on a replication connection: %v", err)
	}
}

const definerSQL = `
DROP SCHEMA IF EXISTS e2e_definer CASCADE;
CREATE SCHEMA e2e_definer;
GRANT USAGE ON SCHEMA e2e_definer TO standbyd_repl;
CREATE TABLE e2e_definer.private(v text);
INSERT INTO e2e_definer.private VALUES ('owner only');
CREATE FUNCTION e2e_definer.as_owner(b bytea) RETURNS bytea LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ SELECT convert_to(v, 'UTF8') FROM e2e_definer.private $$;
CREATE FUNCTION e2e_definer.as_caller(b bytea) RETURNS bytea LANGUAGE sql
  AS $$ SELECT convert_to(v, 'UTF8') FROM e2e_definer.private $$;
REVOKE ALL ON FUNCTION e2e_definer.as_owner(bytea), e2e_definer.as_caller(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION e2e_definer.as_owner(bytea), e2e_definer.as_caller(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(280, 'as_owner', 'e2e_definer.as_owner(bytea)');
SELECT standbyd.register_handler(281, 'as_caller', 'e2e_definer.as_caller(bytea)');
`

// A SECURITY DEFINER handler runs as its owner: it reads a table the
// channel's role may not, which the same handler without SECURITY DEFINER
// cannot.
// claim: extension.security-definer-handler
func TestSecurityDefinerHandlerRunsAsItsOwner(t *testing.T) {
	needEnv(t)
	primarySQL(t, definerSQL)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(280); SELECT standbyd.unregister_handler(281); DROP SCHEMA e2e_definer CASCADE")
	})
	sess := channelSession(t) // as the channel's role, like the daemon
	ctx := ctxT(t, 30*time.Second)
	defer sess.Close(ctx)
	out, err := sess.Call(ctx, 280, nil)
	if err != nil || string(out) != "owner only" {
		t.Fatalf("SECURITY DEFINER handler: %q %v", out, err)
	}
	_, err = sess.Call(ctx, 281, nil)
	var se *protocol.ServerError
	if !errors.As(err, &se) || se.SQLState != "42501" {
		t.Fatalf("the same read as the channel's role: want 42501, got %v", err)
	}
}

// An error message is cut to 8000 bytes on a character boundary, and on a
// version-3 channel the hint to 2000: with three-byte characters both cuts
// fall inside a character, so message and hint end a character earlier.
// claim: protocol.error-message-cap
// claim: extension.v3-error-payload
func TestErrorMessageCappedAt8000Bytes(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_long_error(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  IF length(b) > 0 THEN
    RAISE EXCEPTION '%', repeat('€', 3000) USING ERRCODE = '22023', HINT = repeat('€', 700);
  END IF;
  RAISE EXCEPTION '%', repeat('é', 6000) USING ERRCODE = '22023';
END $$;
SELECT standbyd.register_handler(282, 'long_error', 'public.e2e_long_error(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(282); DROP FUNCTION public.e2e_long_error(bytea)")
	})
	ch := enter(t, superuser(t, "primary", ""))
	r := ch.call(282, 1, nil)
	var se *protocol.ServerError
	if !errors.As(r.Err(), &se) || se.SQLState != "22023" {
		t.Fatalf("want error 22023, got %v", r.Err())
	}
	// 6000 two-byte characters are 12000 bytes: the cap applies, and 8000
	// is a boundary, so nothing less may come.
	if len(se.Message) != 8000 || !utf8.ValidString(se.Message) || se.Message != strings.Repeat("é", 4000) {
		t.Fatalf("message of %d bytes (valid UTF-8 %v), want 8000 bytes of the original", len(se.Message), utf8.ValidString(se.Message))
	}
	if r := ch.call(protocol.OpPing, 2, nil); r.Err() != nil {
		t.Fatalf("after a long error: %v", r.Err())
	}
	ch.finish()

	v3 := enter(t, superuser(t, "primary", ""))
	if v := v3.helloVersion(1, 3); v != 3 {
		t.Fatalf("hello offering 1 to 3 chose version %d", v)
	}
	// 9000 and 2100 bytes of '€' (3 bytes): 7998 and 1998 bytes kept.
	e := parseV3Error(t, v3.call(282, 3, []byte{1}))
	if e.sqlstate != "22023" || e.message != strings.Repeat("€", 2666) || e.hint != strings.Repeat("€", 666) {
		t.Fatalf("three-byte characters: %s, message of %d bytes (want 7998), hint of %d bytes (want 1998)", e.sqlstate, len(e.message), len(e.hint))
	}
	v3.finish()
}

var channelContext = regexp.MustCompile(`standbyd (channel|request): (\d+) total`)

var grandTotal = regexp.MustCompile(`Grand total: (\d+) bytes`)

// backendMemory asks the backend pid to log its memory contexts and returns
// the bytes of the extension's own contexts and the backend's grand total.
func backendMemory(t *testing.T, pid uint32) (ours, grand int) {
	t.Helper()
	prefix := "[" + strconv.Itoa(int(pid)) + "]"
	type report struct{ ours, grand []string }
	reports := func() []report {
		var all []report
		var cur report
		for _, l := range strings.Split(env.Log("primary"), "\n") {
			if !strings.Contains(l, prefix) {
				continue
			}
			if m := channelContext.FindStringSubmatch(l); m != nil {
				cur.ours = append(cur.ours, m[2])
			}
			if m := grandTotal.FindStringSubmatch(l); m != nil {
				cur.grand = []string{m[1]}
				all, cur = append(all, cur), report{}
			}
		}
		return all
	}
	before := len(reports())
	primarySQL(t, "SELECT pg_log_backend_memory_contexts("+strconv.Itoa(int(pid))+")")
	var all []report
	waitFor(t, 10*time.Second, "the backend's memory context report", func() bool {
		all = reports()
		return len(all) > before
	})
	last := all[len(all)-1]
	if len(last.ours) == 0 {
		t.Fatal("no standbyd memory context in the backend's report")
	}
	for _, v := range last.ours {
		n, _ := strconv.Atoi(v)
		ours += n
	}
	grand, _ = strconv.Atoi(last.grand[0])
	return ours, grand
}

// channelMemory is backendMemory's first half: the bytes of the extension's
// own contexts.
func channelMemory(t *testing.T, pid uint32) int {
	t.Helper()
	ours, _ := backendMemory(t, pid)
	return ours
}

// After a request that needed buffers over 64 kB the extension's memory
// goes back under 64 kB: the buffers are released, not kept for good. What
// the backend keeps is PostgreSQL's send buffer, grown to the largest
// message sent (pq_putmessage_noblock never shrinks it, as for a
// walsender): about the reply's size, not the 1.8 MB of both buffers.
// claim: extension.large-buffers-released
func TestLargeBuffersReleasedAfterTheRequest(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	if r := ch.call(opEcho, 1, []byte("small")); r.Err() != nil {
		t.Fatal(r.Err())
	}
	base, baseTotal := backendMemory(t, pc.PID())
	big := []byte(strings.Repeat("x", 900*1024))
	if r := ch.call(opEcho, 2, big); r.Err() != nil || len(r.Payload) != len(big)+5 {
		t.Fatalf("echo of 900 kB: %d bytes, %v", len(r.Payload), r.Err())
	}
	after, afterTotal := backendMemory(t, pc.PID())
	// Kept, the input and output buffers would hold 1.8 MB here.
	if after >= 64*1024 {
		t.Fatalf("the extension's contexts hold %d bytes after a 900 kB request (%d before): the large buffers were kept", after, base)
	}
	grew := afterTotal - baseTotal
	t.Logf("backend memory: %d bytes before, %d after a 900 kB reply (+%d); the extension's contexts %d then %d", baseTotal, afterTotal, grew, base, after)
	if grew < len(big) {
		t.Errorf("the backend grew by %d bytes after a %d-byte reply: PostgreSQL's send buffer no longer keeps the largest reply, docs/extension.md says it does", grew, len(big)+5)
	}
	if grew > len(big)+128*1024 {
		t.Errorf("the backend grew by %d bytes after a %d-byte reply: more than the send buffer is kept", grew, len(big)+5)
	}
	// A second reply as large reuses the send buffer: no more growth.
	if r := ch.call(opEcho, 3, big); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, again := backendMemory(t, pc.PID()); again > afterTotal+64*1024 {
		t.Errorf("a second 900 kB reply grew the backend again: %d then %d bytes", afterTotal, again)
	}
	ch.finish()
}

// Hello: the highest version both speak is picked; no common version is
// 08P01; a payload under 8 bytes or a client name over 64 bytes is 22023.
// claim: protocol.hello-negotiation
// claim: protocol.hello-again
func TestHelloNegotiation(t *testing.T) {
	needEnv(t)
	ch := enter(t, superuser(t, "primary", ""))
	r := ch.call(protocol.OpHello, 1, protocol.HelloRequest{MinVersion: 1, MaxVersion: 9, MaxFrameSize: 1 << 20, ClientName: "e2e"}.Append(nil))
	if h, err := protocol.ParseHelloReply(r.Payload); r.Err() != nil || err != nil || h.Version != 3 {
		t.Fatalf("hello 1..9: version %d, %v %v", h.Version, r.Err(), err)
	}
	r = ch.call(protocol.OpHello, 6, protocol.HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 1 << 20}.Append(nil))
	if h, err := protocol.ParseHelloReply(r.Payload); r.Err() != nil || err != nil || h.Version != 1 {
		t.Fatalf("hello 1..1: version %d, %v %v", h.Version, r.Err(), err)
	}
	wantError(t, ch.call(protocol.OpHello, 2, protocol.HelloRequest{MinVersion: 4, MaxVersion: 9, MaxFrameSize: 1 << 20}.Append(nil)), protocol.OpHello, 2, "08P01")
	wantError(t, ch.call(protocol.OpHello, 3, []byte{0, 1, 0, 1, 0, 0, 4}), protocol.OpHello, 3, "22023")
	// By hand: HelloRequest.Append cuts the name to 64 bytes.
	long := append(protocol.HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 1 << 20}.Append(nil), strings.Repeat("n", 65)...)
	wantError(t, ch.call(protocol.OpHello, 4, long), protocol.OpHello, 4, "22023")
	ok := protocol.HelloRequest{MinVersion: 1, MaxVersion: 1, MaxFrameSize: 1 << 20, ClientName: strings.Repeat("n", 64)}.Append(nil)
	if r := ch.call(protocol.OpHello, 5, ok); r.Err() != nil {
		t.Fatalf("a 64-byte client name: %v", r.Err())
	}
	ch.finish()
}

// Registering an op again replaces it and unregister_handler removes it; a
// channel opened before sees each change at once when calling by number.
// claim: extension.register-replace-unregister
func TestRegisterReplaceUnregisterSeenAtOnce(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_first(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'first'::bytea $$;
CREATE OR REPLACE FUNCTION public.e2e_second(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT 'second'::bytea $$`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(283); DROP FUNCTION public.e2e_first(bytea), public.e2e_second(bytea)")
	})
	ch := enter(t, superuser(t, "primary", "")) // opened before any registration
	wantError(t, ch.call(283, 1, nil), 283, 1, "42883")
	primarySQL(t, "SELECT standbyd.register_handler(283, 'e2e_op', 'public.e2e_first(bytea)')")
	if r := ch.call(283, 2, nil); r.Err() != nil || string(r.Payload) != "first" {
		t.Fatalf("after registering: %q %v", r.Payload, r.Err())
	}
	primarySQL(t, "SELECT standbyd.register_handler(283, 'e2e_op', 'public.e2e_second(bytea)')")
	if r := ch.call(283, 3, nil); r.Err() != nil || string(r.Payload) != "second" {
		t.Fatalf("after registering again: %q %v", r.Payload, r.Err())
	}
	primarySQL(t, "SELECT standbyd.unregister_handler(283)")
	wantError(t, ch.call(283, 4, nil), 283, 4, "42883")
	ch.finish()
}

// The registry is writable only by its owner, and registering needs
// EXECUTE on register_handler (revoked from PUBLIC) and the right to write
// the registry (EXECUTE alone is refused at the table); a role that may use
// the schema reads it, a role that may not is refused at the schema.
// claim: extension.registry-writable-by-owner
// claim: extension.register-privilege
func TestRegistryWritableOnlyByItsOwner(t *testing.T) {
	needEnv(t)
	primarySQL(t, "DROP ROLE IF EXISTS e2e_reader; CREATE ROLE e2e_reader; GRANT USAGE ON SCHEMA standbyd TO e2e_reader; DROP ROLE IF EXISTS e2e_outsider; CREATE ROLE e2e_outsider")
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "REVOKE USAGE ON SCHEMA standbyd FROM e2e_reader; DROP ROLE IF EXISTS e2e_reader; DROP ROLE IF EXISTS e2e_outsider")
	})
	if _, err := env.PrimarySQL(ctxT(t, 10*time.Second), "SET ROLE e2e_outsider; SELECT count(*) FROM standbyd.handlers"); err == nil || !strings.Contains(err.Error(), "permission denied for schema standbyd") {
		t.Fatalf("reading the registry without USAGE on the schema: %v, want permission denied for schema standbyd", err)
	}
	if _, err := env.PrimarySQL(ctxT(t, 10*time.Second), "SET ROLE e2e_reader; SELECT count(*) FROM standbyd.handlers"); err != nil {
		t.Fatalf("reading the registry as an ordinary role: %v", err)
	}
	for _, sql := range []string{
		"SET ROLE e2e_reader; INSERT INTO standbyd.handlers SELECT * FROM standbyd.handlers LIMIT 0",
		"SET ROLE e2e_reader; DELETE FROM standbyd.handlers",
		"SET ROLE e2e_reader; SELECT standbyd.register_handler(284, 'x', 'pg_catalog.byteain(cstring)')",
		"SET ROLE e2e_reader; SELECT standbyd.unregister_handler(256)",
	} {
		_, err := env.PrimarySQL(ctxT(t, 10*time.Second), sql)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("%s: %v, want permission denied", sql, err)
		}
	}
	// EXECUTE on register_handler is not enough: writing the registry is
	// its owner's right.
	primarySQL(t, "GRANT EXECUTE ON FUNCTION standbyd.register_handler, standbyd.unregister_handler TO e2e_reader")
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "REVOKE ALL ON FUNCTION standbyd.register_handler, standbyd.unregister_handler FROM e2e_reader")
	})
	for _, sql := range []string{
		"SET ROLE e2e_reader; SELECT standbyd.register_handler(284, 'x', 'pg_catalog.byteasend(bytea)')",
		"SET ROLE e2e_reader; SELECT standbyd.unregister_handler(256)",
	} {
		_, err := env.PrimarySQL(ctxT(t, 10*time.Second), sql)
		if err == nil || !strings.Contains(err.Error(), "permission denied for table handlers") {
			t.Fatalf("with EXECUTE granted, %s: %v, want permission denied for table handlers", sql, err)
		}
	}
}

// A registered function's NULL result is error 22004; page of a relation
// without storage (a view) is 42809.
// claim: protocol.registered-op-errors
// claim: protocol.page-errors
func TestNullResultAndPageWithoutStorage(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_null(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT NULL::bytea $$;
SELECT standbyd.register_handler(285, 'e2e_null', 'public.e2e_null(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(285); DROP FUNCTION public.e2e_null(bytea)")
	})
	ch := enter(t, superuser(t, "primary", ""))
	wantError(t, ch.call(285, 1, nil), 285, 1, "22004")
	wantError(t, ch.call(protocol.OpPage, 2, protocol.AppendPageRequest(nil, protocol.ForkMain, 0, "pg_catalog.pg_tables")), protocol.OpPage, 2, "42809")
	if r := ch.call(protocol.OpPing, 3, nil); r.Err() != nil {
		t.Fatalf("after the errors: %v", r.Err())
	}
	ch.finish()
}

// A frame of exactly standbyd.max_frame_size (header included) is served,
// one byte more is 54000 echoing the frame's op and id. A 16 MB frame over
// the limit is discarded without being buffered: the backend's peak memory
// grows by far less than the frame (the same frame under a limit raised to
// 32 MB, buffered, grows it by more: the control), and the extension's
// contexts hold under 64 kB afterwards.
// claim: extension.oversize-frame
func TestOversizeFrameBoundaryAndNotBuffered(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_len(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT octet_length(b)::text::bytea $$;
SELECT standbyd.register_handler(286, 'e2e_len', 'public.e2e_len(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(286); DROP FUNCTION public.e2e_len(bytea)")
	})
	const limit = 64 * 1024
	pc := superuser(t, "primary", "options='-c standbyd.max_frame_size=64kB'")
	ch := enter(t, pc)
	if got := string(wantOK(t, ch.call(protocol.OpSetting, 1, []byte("standbyd.max_frame_size")), "setting")); got != "64kB" {
		t.Fatalf("standbyd.max_frame_size = %q, want 64kB", got)
	}
	if got := string(wantOK(t, ch.call(286, 2, make([]byte, limit-protocol.HeaderSize)), "a frame of exactly max_frame_size")); got != strconv.Itoa(limit-protocol.HeaderSize) {
		t.Fatalf("a frame of exactly max_frame_size: the handler saw %s bytes", got)
	}
	wantError(t, ch.call(286, 3, make([]byte, limit-protocol.HeaderSize+1)), 286, 3, "54000")

	// 16 MB: 2000 times the 8 kB the extension reads at a time, small
	// enough for the race-built test binary to hold a few copies.
	const big = 16 << 20
	before := procStatusKB(t, pc.PID(), "VmHWM")
	wantError(t, ch.call(286, 4, make([]byte, big)), 286, 4, "54000")
	grew := procStatusKB(t, pc.PID(), "VmHWM") - before
	t.Logf("a discarded %d MB frame grew the backend's VmHWM by %d kB", big>>20, grew)
	if grew > 2<<10 {
		t.Fatalf("the backend's peak memory grew by %d kB for a discarded frame of %d kB", grew, big>>10)
	}
	if mem := channelMemory(t, pc.PID()); mem >= 64*1024 {
		t.Fatalf("the extension's contexts hold %d bytes after a discarded %d MB frame", mem, big>>20)
	}
	if r := ch.call(protocol.OpPing, 5, nil); r.Err() != nil {
		t.Fatalf("ping after the oversize frames: %v", r.Err())
	}
	ch.finish()

	// The control: under a 32 MB limit the same frame is read whole.
	pc2 := superuser(t, "primary", "options='-c standbyd.max_frame_size=32MB'")
	ch2 := enter(t, pc2)
	before = procStatusKB(t, pc2.PID(), "VmHWM")
	if got := string(wantOK(t, ch2.call(286, 1, make([]byte, big)), "16 MB under a 32 MB limit")); got != strconv.Itoa(big) {
		t.Fatalf("16 MB under a 32 MB limit: the handler saw %s bytes", got)
	}
	grew = procStatusKB(t, pc2.PID(), "VmHWM") - before
	t.Logf("a buffered %d MB frame grew the backend's VmHWM by %d kB", big>>20, grew)
	if grew < big>>10 {
		t.Fatalf("buffering a %d MB frame grew the peak memory by only %d kB: the measure would not see buffering", big>>20, grew)
	}
	ch2.finish()
}

// While idle the channel's wait event type is Extension; the event is
// StandbydChannel on 17+ (its own name) and the generic Extension before.
// claim: extension.idle-wait-event
func TestIdleChannelWaitEvent(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	if r := ch.call(protocol.OpPing, 1, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := "Extension|Extension"
	if v, _ := strconv.Atoi(primarySQL(t, "SHOW server_version_num")); v >= 170000 {
		want = "Extension|StandbydChannel"
	}
	q := "SELECT wait_event_type || '|' || wait_event FROM pg_stat_activity WHERE pid = " + strconv.Itoa(int(pc.PID()))
	waitFor(t, 10*time.Second, "the idle channel's wait event "+want, func() bool {
		return primarySQL(t, q) == want
	})
	ch.finish()
}

// ping, N and wal run outside any transaction; hello and a handler each get
// one of their own. A handler reports its virtual transaction ID, whose
// local part grows by one per transaction of the backend: between two
// handler calls, ten of each of ping, N and wal add nothing, one hello adds
// one.
// claim: extension.builtins-no-transaction
func TestBuiltinsNeedNoTransaction(t *testing.T) {
	needEnv(t)
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_vxid(b bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT split_part(virtualtransaction, '/', 2)::bytea FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'virtualxid' $$;
SELECT standbyd.register_handler(287, 'e2e_vxid', 'public.e2e_vxid(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(287); DROP FUNCTION public.e2e_vxid(bytea)")
	})
	ch := enter(t, superuser(t, "primary", ""))
	id := uint32(0)
	vxid := func() int {
		t.Helper()
		id++
		r := ch.call(287, id, nil)
		n, err := strconv.Atoi(string(r.Payload))
		if r.Err() != nil || err != nil {
			t.Fatalf("vxid: %q %v %v", r.Payload, r.Err(), err)
		}
		return n
	}
	call := func(op uint16, payload []byte) {
		t.Helper()
		id++
		if r := ch.call(op, id, payload); r.Err() != nil {
			t.Fatalf("op %d: %v", op, r.Err())
		}
	}
	a := vxid()
	for i := 0; i < 10; i++ {
		call(protocol.OpPing, nil)
		call(protocol.OpN, protocol.AppendN(nil, [3]int32{1, 2, 3}))
		call(protocol.OpWAL, nil)
	}
	b := vxid()
	if b != a+1 {
		t.Fatalf("30 calls of ping, N and wal between two handler calls: local transaction IDs %d then %d, want %d", a, b, a+1)
	}
	call(protocol.OpHello, protocol.HelloRequest{MinVersion: 1, MaxVersion: 3, MaxFrameSize: 1 << 20}.Append(nil))
	if c := vxid(); c != b+2 {
		t.Fatalf("a hello between two handler calls: local transaction IDs %d then %d, want %d (hello in a transaction of its own)", b, c, b+2)
	}
	ch.finish()
}

// A cancel that arrives while a request frame is half sent does not break
// the frame: the backend reads the whole message, the request is served
// and the channel stays in step.
// claim: extension.interrupts-between-messages
func TestCancelDuringAHalfSentFrame(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	if r := ch.call(protocol.OpPing, 1, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	msg, err := (&pgproto3.CopyData{Data: protocol.AppendRequest(nil, protocol.OpN, 2, protocol.AppendN(nil, [3]int32{10, 20, 30}))}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	half := len(msg) / 2
	if _, err := pc.Conn().Write(msg[:half]); err != nil {
		t.Fatal(err)
	}
	seen := strings.Count(env.Log("primary"), "ignored a cancel request while idle")
	primarySQL(t, "SELECT pg_cancel_backend("+strconv.Itoa(int(pc.PID()))+")")
	time.Sleep(300 * time.Millisecond) // the cancel is delivered while the message is incomplete
	if _, err := pc.Conn().Write(msg[half:]); err != nil {
		t.Fatal(err)
	}
	r := ch.reply()
	n, err := protocol.ParseN(r.Payload)
	if r.Err() != nil || err != nil || r.ID != 2 || n != [3]int32{310, 320, 330} {
		t.Fatalf("the half-sent N: id %d %v %v %v", r.ID, n, r.Err(), err)
	}
	// The cancel was handled once the message was whole, as an idle one.
	waitFor(t, 30*time.Second, "the ignored cancel in the server log", func() bool {
		return strings.Count(env.Log("primary"), "ignored a cancel request while idle") > seen
	})
	if r := ch.call(protocol.OpPing, 3, nil); r.Err() != nil || r.ID != 3 {
		t.Fatalf("ping after: %v", r.Err())
	}
	ch.finish()
}
