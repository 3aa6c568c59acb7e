package metrics

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

// The replay lag is a number only while both positions are known, and the
// channel going down makes it NaN at once, never 0.
func TestReplayLag(t *testing.T) {
	m := New("test")
	m.WatchReplay()
	if !math.IsNaN(m.replayLag()) {
		t.Fatal("lag known before any reading")
	}
	m.StateChanged(conn.StateReady)
	m.SessionStarted(conn.SessionInfo{Host: "10.0.0.1:5432"})
	m.Heartbeat(0, protocol.PingReply{WALPosition: 5000})
	if !math.IsNaN(m.replayLag()) {
		t.Fatal("lag known without the standby's position")
	}
	m.StandbyReplay(4200, true)
	if got := m.replayLag(); got != 800 {
		t.Fatalf("lag %v, want 800", got)
	}
	m.StandbyReplay(6000, true) // read after the last ping: ahead, not negative
	if got := m.replayLag(); got != 0 {
		t.Fatalf("standby ahead of the last ping: lag %v, want 0", got)
	}
	m.StandbyReplay(4200, true)
	m.StateChanged(conn.StateBackingOff)
	if !math.IsNaN(m.replayLag()) {
		t.Fatal("lag still a number while the channel is down")
	}
	m.StateChanged(conn.StateReady)
	m.Heartbeat(0, protocol.PingReply{WALPosition: 4300})
	m.StandbyReplay(0, false)
	if !math.IsNaN(m.replayLag()) {
		t.Fatal("lag a number while the standby's position is unknown")
	}
}

func TestDisconnectReasonsAndHost(t *testing.T) {
	m := New("test")
	for _, r := range conn.DisconnectReasons {
		if v := testutil.ToFloat64(m.disconnects.WithLabelValues(string(r))); v != 0 {
			t.Fatalf("%s starts at %v", r, v)
		}
	}
	m.SessionEnded(nil)
	m.SessionEnded(errors.New("read: connection reset by peer"))
	m.SessionEnded(errors.New("EOF"))
	if v := testutil.ToFloat64(m.disconnects.WithLabelValues("connection_lost")); v != 2 {
		t.Fatalf("connection_lost = %v, want 2", v)
	}
	if v := testutil.ToFloat64(m.disconnects.WithLabelValues("shutdown")); v != 1 {
		t.Fatalf("shutdown = %v, want 1", v)
	}
	m.SessionStarted(conn.SessionInfo{Hello: protocol.HelloReply{SystemIdentifier: 7, ServerVersionNum: 150020}, Host: "10.0.0.1:5432"})
	want := `standbyd_primary_info{host="10.0.0.1:5432",server_version_num="150020",system_identifier="7"} 1`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader("# HELP standbyd_primary_info "+
		"1 for the primary of the current session: its system identifier, server version and address (host).\n"+
		"# TYPE standbyd_primary_info gauge\n"+want+"\n"), "standbyd_primary_info"); err != nil {
		t.Fatal(err)
	}
}

// The state series read the supervisor's state at scrape time: a stale
// event delivered late (another session's) does not make them lie.
// claim: liveness.state-read-at-scrape
func TestStateReadWhereItLives(t *testing.T) {
	m := New("test")
	live := conn.StateReady
	m.WatchState(func() conn.State { return live })
	m.SessionStarted(conn.SessionInfo{Host: "10.0.0.1:5432"})
	m.Heartbeat(0, protocol.PingReply{WALPosition: 5000})
	m.StateChanged(conn.StateBackingOff) // late: the supervisor is ready
	check := func(series string, want float64) {
		t.Helper()
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				name := mf.GetName()
				for _, l := range mm.GetLabel() {
					name += "{" + l.GetName() + "=" + l.GetValue() + "}"
				}
				if name == series {
					if got := mm.GetGauge().GetValue(); got != want {
						t.Errorf("%s = %v, want %v", series, got, want)
					}
					return
				}
			}
		}
		t.Errorf("%s not exported", series)
	}
	check("standbyd_channel_up", 1)
	check("standbyd_channel_state{state=ready}", 1)
	check("standbyd_channel_state{state=backing_off}", 0)
	check("standbyd_primary_wal_position_bytes", 5000)
	live = conn.StateBackingOff
	m.StateChanged(conn.StateBackingOff)
	check("standbyd_channel_up", 0)
	check("standbyd_channel_state{state=backing_off}", 1)
}
