package metrics

import (
	"testing"

	"github.com/standbyd/standbyd/internal/conn"
)

// channelUp gathers standbyd_channel_up.
func channelUp(t *testing.T, m *Metrics) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "standbyd_channel_up" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("standbyd_channel_up not exported")
	return 0
}

// standbyd_channel_up is 1 in the ready state only: 0 in connecting,
// entering, backing_off, stopping and stopped, whether the state is read
// from the supervisor at the scrape (WatchState, as the daemon does) or
// comes from the last StateChanged event. Each state is entered from ready,
// so a gauge left at 1 by the previous state would show.
// claim: liveness.channel-up-only-when-ready
func TestChannelUpOnlyWhenReady(t *testing.T) {
	if len(conn.States) != 6 {
		t.Fatalf("conn.States has %d states; this test knows 6: %v", len(conn.States), conn.States)
	}
	t.Run("live state", func(t *testing.T) {
		m := New("test")
		var live conn.State
		m.WatchState(func() conn.State { return live })
		for _, st := range conn.States {
			live = conn.StateReady
			if got := channelUp(t, m); got != 1 {
				t.Fatalf("ready: standbyd_channel_up = %v, want 1", got)
			}
			live = st
			want := 0.0
			if st == conn.StateReady {
				want = 1
			}
			if got := channelUp(t, m); got != want {
				t.Errorf("%s: standbyd_channel_up = %v, want %v", st, got, want)
			}
		}
	})
	t.Run("events", func(t *testing.T) {
		m := New("test")
		for _, st := range conn.States {
			m.StateChanged(conn.StateReady)
			if got := channelUp(t, m); got != 1 {
				t.Fatalf("ready: standbyd_channel_up = %v, want 1", got)
			}
			m.StateChanged(st)
			want := 0.0
			if st == conn.StateReady {
				want = 1
			}
			if got := channelUp(t, m); got != want {
				t.Errorf("%s: standbyd_channel_up = %v, want %v", st, got, want)
			}
		}
	})
}
