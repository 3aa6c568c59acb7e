package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// replayWaitThenPromote makes a call with wait_for_replay on a throwaway
// cluster's standby, after prepare has kept the standby from replaying
// what the primary writes, then, once waiting (if not nil) has returned,
// promotes the standby while the call waits, and returns the call's
// result.
func replayWaitThenPromote(t *testing.T, prepare, waiting func(e *testcluster.Env), mark string) (*testcluster.Env, callResult) {
	t.Helper()
	e := testcluster.New(t, testcluster.Options{Standby: true})
	d := sqlcallDaemonWith(t, e, sqlcallOptions{})
	s := sqlConnect(t, e, "standby", scUser)
	s.mustCall(scEcho, []byte("up"), false, "echo:up")
	prepare(e)
	res := make(chan callResult, 1)
	go func() {
		start := time.Now()
		r, err := s.call(ctxT(t, 90*time.Second), scWrite, []byte(mark), true)
		res <- callResult{r, err, time.Since(start)}
	}()
	// The call waits for replay once its handler has committed on the
	// primary and the daemon has answered the wal built-in.
	if !pollFor(30*time.Second, func() bool { return primaryRows(t, e, mark) == 1 }) {
		t.Fatal("the handler's row never appeared on the primary")
	}
	if !pollFor(30*time.Second, func() bool {
		return d.metricSum("standbyd_api_sql_calls_total") >= 3 // the echo, the handler and the wal request
	}) {
		t.Fatalf("the daemon never counted the wal request:\n%s", tailLines(d.log(), 20))
	}
	select {
	case r := <-res:
		t.Fatalf("the call returned before the promotion: %q, %v", r.reply, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if waiting != nil {
		waiting(e)
	}
	promote(t, e, "standby")
	select {
	case r := <-res:
		return e, r
	case <-time.After(60 * time.Second):
		t.Fatal("the call still waits 60 s after the promotion")
	}
	return e, callResult{}
}

// A standby promoted while a wait_for_replay call waits for a position it
// has not received: 08007, the detail saying the write may exist only on
// the old primary (where it is).
// claim: sqlcall.promoted-during-replay-wait
func TestSQLCallPromotedDuringReplayWait(t *testing.T) {
	needEnv(t)
	mark := "promoted-unreceived"
	e, r := replayWaitThenPromote(t, func(e *testcluster.Env) {
		// A slot that does not exist: the walreceiver cannot stream; the
		// daemon's channel (its own session) is not affected.
		for _, q := range []string{"ALTER SYSTEM SET primary_slot_name = 'sqlcall_nosuch_slot'", "SELECT pg_reload_conf()"} {
			if _, err := e.SQL(ctxT(t, 10*time.Second), "standby", q); err != nil {
				t.Fatal(err)
			}
		}
		if !pollFor(30*time.Second, func() bool {
			v, _ := e.SQL(ctxT(t, 5*time.Second), "standby", "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")
			return v == "0"
		}) {
			t.Fatal("the standby still streams")
		}
	}, nil, mark)
	pe := wantSQLState(t, r.err, "08007")
	if !strings.Contains(pe.Detail, "only on the old primary") {
		t.Fatalf("the detail does not say the write may exist only on the old primary: %+v", pe)
	}
	if n := primaryRows(t, e, mark); n != 1 {
		t.Fatalf("%d rows on the old primary, want 1", n)
	}
}

// A standby whose replay is paused but that has received the write,
// promoted while a wait_for_replay call waits: the promotion replays what
// was received, and the call returns its reply; the promoted node has the
// write.
// claim: sqlcall.promoted-after-receipt
func TestSQLCallPromotedDuringPausedReplay(t *testing.T) {
	needEnv(t)
	mark := "promoted-paused"
	e, r := replayWaitThenPromote(t, func(e *testcluster.Env) {
		if _, err := e.SQL(ctxT(t, 10*time.Second), "standby", "SELECT pg_wal_replay_pause()"); err != nil {
			t.Fatal(err)
		}
		if !pollFor(10*time.Second, func() bool {
			v, _ := e.SQL(ctxT(t, 5*time.Second), "standby", "SELECT pg_get_wal_replay_pause_state()")
			return v == "paused"
		}) {
			t.Fatal("replay did not pause")
		}
	}, func(e *testcluster.Env) {
		lsn, err := e.PrimarySQL(ctxT(t, 10*time.Second), "SELECT pg_current_wal_lsn()")
		if err != nil {
			t.Fatal(err)
		}
		if !pollFor(30*time.Second, func() bool {
			v, _ := e.SQL(ctxT(t, 5*time.Second), "standby", "SELECT pg_last_wal_receive_lsn() >= '"+lsn+"'::pg_lsn")
			return v == "t"
		}) {
			t.Fatalf("the standby never received %s", lsn)
		}
		if v, _ := e.SQL(ctxT(t, 5*time.Second), "standby", "SELECT count(*) FROM sqlcall.t WHERE v = '"+mark+"'"); v != "0" {
			t.Fatalf("the paused standby already shows the write (%s rows)", v)
		}
	}, mark)
	if r.err != nil || string(r.reply) != "written:"+mark {
		t.Fatalf("promoted with the write received: reply %q, error %v; want the handler's reply", r.reply, r.err)
	}
	if v, err := e.SQL(ctxT(t, 10*time.Second), "standby", "SELECT count(*) FROM sqlcall.t WHERE v = '"+mark+"'"); err != nil || v != "1" {
		t.Fatalf("the promoted node has %s rows of the write (%v), want 1", v, err)
	}
}
