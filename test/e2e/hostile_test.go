package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
	"github.com/standbyd/standbyd/internal/testskip"
)

// connectTo opens a superuser session to a primary of its own.
func connectTo(t *testing.T, e *testcluster.Env, extra string) *pgconn.PgConn {
	t.Helper()
	pc, err := pgconn.Connect(ctxT(t, 10*time.Second), "host="+e.SocketDir+" port="+strconv.Itoa(e.PrimaryPort)+" user=postgres dbname=postgres "+extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

// setIdleTimeoutByReload sets standbyd.idle_timeout to v for e's new
// sessions (ALTER SYSTEM and a reload), waits until a new session sees it,
// and resets it when t ends.
func setIdleTimeoutByReload(t *testing.T, e *testcluster.Env, v string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	// ALTER SYSTEM knows standbyd.* only in a session that loaded the
	// library (docs/extension.md).
	admin := connectTo(t, e, "")
	for _, sql := range []string{"LOAD 'standbyd'", "ALTER SYSTEM SET standbyd.idle_timeout = '" + v + "'", "SELECT pg_reload_conf()"} {
		if _, err := admin.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		_, _ = e.PrimarySQL(context.Background(), "ALTER SYSTEM RESET standbyd.idle_timeout")
		_, _ = e.PrimarySQL(context.Background(), "SELECT pg_reload_conf()")
	})
	// New backends see the value once the postmaster has reloaded.
	waitFor(t, 10*time.Second, "standbyd.idle_timeout "+v+" to reach new sessions", func() bool {
		out, err := e.PrimarySQL(ctx, "LOAD 'standbyd'; SELECT current_setting('standbyd.idle_timeout')")
		return err == nil && strings.HasSuffix(out, v)
	})
}

// hostileFrame makes one random or mutated frame.
func hostileFrame(rng *rand.Rand) []byte {
	ops := []uint16{protocol.OpHello, protocol.OpPing, protocol.OpN, protocol.OpSetting, protocol.OpWAL, protocol.OpPage, 0, 0x100, 0x1FF, 0xFFFF}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	valid := func() []byte {
		op := ops[rng.IntN(len(ops))]
		if rng.IntN(4) == 0 {
			op = uint16(rng.UintN(0x200))
		}
		return protocol.AppendRequest(nil, op, rng.Uint32(), randBytes(rng.IntN(48)))
	}
	switch rng.IntN(6) {
	case 0: // noise
		return randBytes(rng.IntN(40))
	case 1: // well-formed, random op, id and payload
		return valid()
	case 2: // flipped bytes
		f := valid()
		for n := 1 + rng.IntN(3); n > 0; n-- {
			f[rng.IntN(len(f))] ^= byte(1 + rng.UintN(255))
		}
		return f
	case 3: // truncated
		f := valid()
		return f[:rng.IntN(len(f)+1)]
	case 4: // trailing garbage
		return append(valid(), randBytes(1+rng.IntN(16))...)
	default: // lying length field
		f := valid()
		copy(f[8:12], randBytes(4))
		return f
	}
}

// expectedEcho says which op and id the reply to frame must carry.
func expectedEcho(frame []byte) (op uint16, id uint32) {
	if len(frame) < protocol.HeaderSize || frame[0] != protocol.KindRequest {
		return 0, 0
	}
	return uint16(frame[2])<<8 | uint16(frame[3]), uint32(frame[4])<<24 | uint32(frame[5])<<16 | uint32(frame[6])<<8 | uint32(frame[7])
}

func readReply(t *testing.T, pc *pgconn.PgConn) protocol.Reply {
	t.Helper()
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("waiting for a reply: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			r, err := protocol.ParseReply(append([]byte(nil), m.Data...))
			if err != nil {
				t.Fatalf("malformed reply % x: %v", m.Data, err)
			}
			return r
		case *pgproto3.ErrorResponse:
			t.Fatalf("the channel ended: %s %s", m.Code, m.Message)
		}
	}
}

// sendHostile sends total hostile frames in batches on an entered channel
// and checks that each gets one reply echoing what could be read of its
// header. It returns the ok and error reply counts and the SQLSTATEs seen.
func sendHostile(t *testing.T, pc *pgconn.PgConn, rng *rand.Rand, total int) (ok, errs int, sqlstates map[string]int) {
	t.Helper()
	const batch = 250
	sqlstates = map[string]int{}
	for sent := 0; sent < total; sent += batch {
		frames := make([][]byte, batch)
		for i := range frames {
			frames[i] = hostileFrame(rng)
			pc.Frontend().Send(&pgproto3.CopyData{Data: frames[i]})
		}
		if err := pc.Frontend().Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range frames {
			r := readReply(t, pc)
			if op, id := expectedEcho(frames[i]); r.Op != op || r.ID != id {
				t.Fatalf("frame % x: reply for op %d id %d, want op %d id %d", frames[i], r.Op, r.ID, op, id)
			}
			var se *protocol.ServerError
			if errors.As(r.Err(), &se) {
				errs++
				sqlstates[se.SQLState]++
			} else {
				ok++
			}
		}
	}
	return ok, errs, sqlstates
}

func crashLines(log string) []string {
	var bad []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "terminated by signal") || strings.Contains(l, "was terminated by exception") ||
			strings.Contains(l, "server process") && strings.Contains(l, "was terminated") || strings.Contains(l, "PANIC") {
			bad = append(bad, l)
		}
	}
	return bad
}

// hostileSeed is a new seed for each run, or STANDBYD_HOSTILE_SEED to
// replay one; the test's log shows it (go test prints it with a failure).
func hostileSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STANDBYD_HOSTILE_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("STANDBYD_HOSTILE_SEED=%q: %v", v, err)
		}
	}
	t.Logf("hostile frames seed %d (replay: STANDBYD_HOSTILE_SEED=%d)", seed, seed)
	return seed
}

// At least 100,000 random and mutated frames: every one gets exactly one
// reply echoing what could be read of its header, the channel goes on, and
// the server never crashes.
// claim: extension.oversize-frame
// claim: extension.bad-input
// claim: protocol.one-reply-per-request
// claim: protocol.other-frontend-fatal
func TestHostileFrames(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	postmaster, err := e.PostmasterPID("primary")
	if err != nil {
		t.Fatal(err)
	}
	pc := connectTo(t, e, "")
	enter(t, pc)
	rng := rand.New(rand.NewPCG(hostileSeed(t), 11))
	const total = 100000
	ok, errs, sqlstates := sendHostile(t, pc, rng, total)
	// Oversize frames, one at a time: read in bounded chunks and refused.
	for i := 0; i < 20; i++ {
		f := protocol.AppendRequest(nil, protocol.OpN, uint32(i), make([]byte, 1<<20+rng.IntN(200000)))
		pc.Frontend().Send(&pgproto3.CopyData{Data: f})
		if err := pc.Frontend().Flush(); err != nil {
			t.Fatal(err)
		}
		r := readReply(t, pc)
		var se *protocol.ServerError
		if !errors.As(r.Err(), &se) || se.SQLState != "54000" || r.ID != uint32(i) {
			t.Fatalf("oversize frame %d: %+v %v", i, r, r.Err())
		}
	}
	t.Logf("%d frames: %d ok replies, %d error replies %v", total+20, ok, errs+20, sqlstates)
	if ok == 0 || errs == 0 {
		t.Fatal("the mix should give both ok and error replies")
	}
	ch := &channel{t: t, pc: pc}
	ch.finish()
	// Garbage after CopyDone is ignored by the ordinary session.
	for i := 0; i < 1000; i++ {
		pc.Frontend().Send(&pgproto3.CopyData{Data: hostileFrame(rng)})
	}
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("session after garbage: %v", err)
	}
	// Frontend messages that have no place in COPY BOTH end the session with
	// a protocol violation, cleanly.
	for i, msg := range []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Parse{Query: "x"},
		&pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Execute{}, &pgproto3.PasswordMessage{Password: "x"}} {
		p := connectTo(t, e, "")
		enter(t, p)
		p.Frontend().Send(msg)
		_ = p.Frontend().Flush()
		_, err := p.ReceiveMessage(ctxT(t, 10*time.Second))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "08P01" || pe.Severity != "FATAL" {
			t.Fatalf("message %d (%T): want FATAL 08P01, got %v", i, msg, err)
		}
	}
	if now, _ := e.PostmasterPID("primary"); now != postmaster {
		t.Fatalf("postmaster changed from %d to %d", postmaster, now)
	}
	if bad := crashLines(e.Log("primary")); len(bad) > 0 {
		t.Fatalf("the server log shows a crash:\n%s", strings.Join(bad, "\n"))
	}
	if _, err := e.PrimarySQL(ctxT(t, 10*time.Second), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

// procStatusKB is a field of the process's /proc status in kB (VmHWM,
// RssAnon).
func procStatusKB(t *testing.T, pid uint32, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// The backend's private memory stays flat over 1,000,000 requests (built-ins,
// handler calls and errors), sent back to back in batches.
func TestMemoryFlatOverAMillionRequests(t *testing.T) {
	needEnv(t)
	if os.Getenv("STANDBYD_SKIP_LONG") != "" {
		testskip.Skip(t, "STANDBYD_SKIP_LONG set")
	}
	registerHandlers(t)
	pc := superuser(t, "primary", "")
	enter(t, pc)
	rng := rand.New(rand.NewPCG(7, 7))
	frame := func(i int) []byte {
		switch n := rng.IntN(100); {
		case n < 2:
			return protocol.AppendRequest(nil, opEcho, uint32(i), []byte("memory"))
		case n < 4:
			return protocol.AppendRequest(nil, 0x1FF, uint32(i), nil) // unknown op
		case n < 5:
			return protocol.AppendRequest(nil, protocol.OpN, uint32(i), []byte{1}) // bad payload
		case n < 10:
			return protocol.AppendRequest(nil, protocol.OpPing, uint32(i), nil)
		default:
			return protocol.AppendRequest(nil, protocol.OpN, uint32(i), protocol.AppendN(nil, [3]int32{int32(i), 1, 2}))
		}
	}
	run := func(n int) {
		const batch = 500
		for sent := 0; sent < n; sent += batch {
			for i := 0; i < batch; i++ {
				pc.Frontend().Send(&pgproto3.CopyData{Data: frame(sent + i)})
			}
			if err := pc.Frontend().Flush(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < batch; i++ {
				if r := readReply(t, pc); r.ID != uint32(sent+i) {
					t.Fatalf("reply %d for request %d", r.ID, sent+i)
				}
			}
		}
	}
	run(50000) // warm up: caches, plans, buffers
	before := procStatusKB(t, pc.PID(), "RssAnon")
	start := time.Now()
	run(1000000)
	after := procStatusKB(t, pc.PID(), "RssAnon")
	t.Logf("1,000,000 requests in %s; backend RssAnon %d kB -> %d kB", time.Since(start).Round(time.Millisecond), before, after)
	if after-before > 2048 {
		t.Fatalf("the channel backend's private memory grew by %d kB over 1,000,000 requests", after-before)
	}
}

// What a client sees when the server goes away in different ways.
// claim: extension.terminate-fatal
// claim: extension.postmaster-death-fatal
// claim: extension.idle-timeout
func TestServerShutdownAndCrashSeenByTheClient(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := ctxT(t, 3*time.Minute)

	// claim: readme.stop-fast-reconnects
	t.Run("stop -m fast gives FATAL 57P01", func(t *testing.T) {
		pc := connectTo(t, e, "")
		enter(t, pc)
		if err := e.StopServer(ctx, "primary", "fast"); err != nil {
			t.Fatal(err)
		}
		_, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" {
			t.Fatalf("want FATAL 57P01, got %v", err)
		}
		if err := e.StartServer(ctx, "primary"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill -9 of the channel backend gives EOF, the server recovers", func(t *testing.T) {
		pc := connectTo(t, e, "")
		enter(t, pc)
		pid := pc.PID()
		if err := syscallKill(int(pid)); err != nil {
			t.Fatal(err)
		}
		_, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		if !endedByCrash(err) {
			t.Fatalf("want EOF or a crash-shutdown notice, got %v", err)
		}
		// The postmaster reinitialises; a new channel works.
		waitFor(t, 60*time.Second, "the primary to come back after the backend was killed", func() bool {
			_, err := e.PrimarySQL(ctx, "SELECT 1")
			return err == nil
		})
		ch := enter(t, connectTo(t, e, ""))
		if r := ch.call(protocol.OpPing, 1, nil); r.Err() != nil {
			t.Fatal(r.Err())
		}
		ch.finish()
		if !strings.Contains(e.Log("primary"), fmt.Sprintf("(PID %d) was terminated by signal 9", pid)) {
			t.Fatal("the log does not show the killed backend")
		}
	})

	t.Run("idle timeout ends a silent channel", func(t *testing.T) {
		setIdleTimeoutByReload(t, e, "300ms")
		pc := connectTo(t, e, "")
		ch := enter(t, pc)
		for i := 0; i < 5; i++ { // traffic within the timeout keeps it
			time.Sleep(100 * time.Millisecond)
			if r := ch.call(protocol.OpPing, uint32(i), nil); r.Err() != nil {
				t.Fatal(r.Err())
			}
		}
		_, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57P05" || !strings.Contains(pe.Message, "without a message") {
			t.Fatalf("want FATAL 57P05, got %v", err)
		}
	})

	t.Run("postmaster death is reported as FATAL", func(t *testing.T) {
		pc := connectTo(t, e, "")
		enter(t, pc)
		pm, err := e.PostmasterPID("primary")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscallKill(pm); err != nil {
			t.Fatal(err)
		}
		_, err = pc.ReceiveMessage(ctxT(t, 10*time.Second))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "postmaster") {
			t.Fatalf("want a FATAL naming the postmaster, got %v", err)
		}
	})
}

// The same hostile mix against a hot standby as upstream: every frame is
// answered, and the standby neither crashes nor stops replaying.
func TestHostileFramesOnHotStandby(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "standby", "")
	enter(t, pc)
	sendHostile(t, pc, rand.New(rand.NewPCG(hostileSeed(t), 20)), 20000)
	(&channel{t: t, pc: pc}).finish()
	if bad := crashLines(env.Log("standby")); len(bad) > 0 {
		t.Fatalf("the standby's log shows a crash:\n%s", strings.Join(bad, "\n"))
	}
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
}

// A receive that timed out is not a killed backend; the kill -9 subtest
// used to take one for EOF.
func TestEndedByCrashRejectsATimeout(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	ch := enter(t, pc)
	_, err := pc.ReceiveMessage(ctxT(t, 100*time.Millisecond)) // an idle channel: nothing comes
	if err == nil || endedByCrash(err) {
		t.Fatalf("a timeout counted as a crash: %v", err)
	}
	ch.finish() // the timeout left the connection usable
	if !endedByCrash(&pgconn.PgError{Severity: "WARNING", Code: "57P02"}) || endedByCrash(&pgconn.PgError{Severity: "FATAL", Code: "57P01"}) {
		t.Fatal("57P02 is the crash notice, 57P01 is not")
	}
}

// endedByCrash tells whether err is how a client sees its backend killed:
// the connection closed (EOF) or a 57P02 notice; a timeout is neither.
func endedByCrash(err error) bool {
	if err == nil || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "57P02"
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// enterV3 enters the channel on pc and says hello offering versions 1 to
// 3, which the extension takes; then a ping with id 2, so the last request
// read is 2.
func enterV3(t *testing.T, pc *pgconn.PgConn) *channel {
	t.Helper()
	ch := enter(t, pc)
	if v := ch.helloVersion(1, 3); v != 3 {
		t.Fatalf("hello chose version %d, want 3", v)
	}
	if r := ch.call(protocol.OpPing, 2, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	return ch
}

// silentEnd reads what the server sends until the connection ends and
// fails on any frame: the backend died without a goodbye.
func silentEnd(t *testing.T, pc *pgconn.PgConn) error {
	t.Helper()
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		if err != nil {
			return err
		}
		if m, ok := msg.(*pgproto3.CopyData); ok {
			t.Fatalf("a frame from a backend that cannot say goodbye: %q", m.Data)
		}
	}
}

// Which ends of a version-3 channel (version 2's goodbye kept) send the
// goodbye frame before the FATAL, besides pg_terminate_backend
// (TestPipelineExtensionOrderAndGoodbye): a fast shutdown, the idle timeout
// and the postmaster's death noticed while the channel waits for a request
// do, each naming the last request read (the ping, id 2) and the FATAL's
// SQLSTATE; an immediate shutdown and the crash of another backend do not
// (the backend gets SIGQUIT and only says a WARNING).
// claim: protocol.goodbye-when
// claim: protocol.goodbye
// claim: protocol.pipeline-death
func TestGoodbyeOnShutdownIdleTimeoutAndPostmasterDeath(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := ctxT(t, 4*time.Minute)
	wantGoodbye := func(t *testing.T, ch *channel, sqlstate, msg string) {
		t.Helper()
		g, fatal := ch.ending()
		if g == nil || g.LastID != 2 || g.SQLState != sqlstate {
			t.Fatalf("goodbye %+v; want last id 2 (the ping), %s", g, sqlstate)
		}
		if fatal.Severity != "FATAL" || fatal.Code != sqlstate || !strings.Contains(fatal.Message, msg) {
			t.Fatalf("after the goodbye: %v; want FATAL %s naming %q", fatal, sqlstate, msg)
		}
		if !strings.HasPrefix(fatal.Message, g.Message) {
			t.Fatalf("goodbye message %q is not the FATAL's %q", g.Message, fatal.Message)
		}
	}
	restart := func(t *testing.T) { // after a stop, whether the subtest passed or not
		if err := e.StartServer(ctx, "primary"); err != nil {
			t.Errorf("starting the primary again: %v", err)
		}
	}
	up := func(t *testing.T) {
		t.Helper()
		waitFor(t, 60*time.Second, "the primary to accept connections", func() bool {
			_, err := e.PrimarySQL(ctx, "SELECT 1")
			return err == nil
		})
	}

	t.Run("stop -m fast", func(t *testing.T) {
		ch := enterV3(t, connectTo(t, e, ""))
		if err := e.StopServer(ctx, "primary", "fast"); err != nil {
			t.Fatal(err)
		}
		defer restart(t)
		wantGoodbye(t, ch, "57P01", "administrator command")
	})

	t.Run("standbyd.idle_timeout", func(t *testing.T) {
		setIdleTimeoutByReload(t, e, "1s")
		// 1s: hello and the ping come well within it.
		ch := enterV3(t, connectTo(t, e, ""))
		wantGoodbye(t, ch, "57P05", "without a message from the client")
	})

	t.Run("stop -m immediate", func(t *testing.T) {
		ch := enterV3(t, connectTo(t, e, ""))
		if err := e.StopServer(ctx, "primary", "immediate"); err != nil {
			t.Fatal(err)
		}
		defer restart(t)
		if err := silentEnd(t, ch.pc); !endedByCrash(err) {
			t.Fatalf("want the connection closed, got %v", err)
		}
	})

	t.Run("crash of another backend", func(t *testing.T) {
		up(t)
		ch := enterV3(t, connectTo(t, e, ""))
		other := connectTo(t, e, "")
		if err := syscallKill(int(other.PID())); err != nil {
			t.Fatal(err)
		}
		if err := silentEnd(t, ch.pc); !endedByCrash(err) {
			t.Fatalf("want the connection closed or 57P02, got %v", err)
		}
	})

	t.Run("postmaster death", func(t *testing.T) {
		up(t)
		ch := enterV3(t, connectTo(t, e, ""))
		pm, err := e.PostmasterPID("primary")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscallKill(pm); err != nil {
			t.Fatal(err)
		}
		wantGoodbye(t, ch, "57P01", "postmaster exited")
	})
}
