package metrics

import (
	"fmt"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/localnode"
)

func TestLocalNodeAndRefusals(t *testing.T) {
	m := New("test")
	if v := testutil.ToFloat64(m.localRecovery); !math.IsNaN(v) {
		t.Fatalf("in recovery before any reading: %v, want NaN", v)
	}
	for _, r := range []string{RefusalWrongCluster, RefusalStaleTimeline, RefusalNotStandby} {
		if v := testutil.ToFloat64(m.refusals.WithLabelValues(r)); v != 0 {
			t.Fatalf("%s starts at %v", r, v)
		}
	}
	m.LocalNode(localnode.Node{Role: localnode.RoleStandby, Timeline: 1})
	if testutil.ToFloat64(m.localRecovery) != 1 || testutil.ToFloat64(m.localTimeline) != 1 {
		t.Fatal("standby not exported")
	}
	// A promotion counts once, however many readings say so.
	m.LocalNode(localnode.Node{Role: localnode.RolePrimary, Timeline: 2})
	m.LocalNode(localnode.Node{Role: localnode.RolePrimary, Timeline: 2})
	if testutil.ToFloat64(m.localRecovery) != 0 || testutil.ToFloat64(m.localTimeline) != 2 ||
		testutil.ToFloat64(m.refusals.WithLabelValues(RefusalNotStandby)) != 1 {
		t.Fatal("promotion not exported")
	}
	m.LocalNode(localnode.Node{})
	if !math.IsNaN(testutil.ToFloat64(m.localRecovery)) || !math.IsNaN(testutil.ToFloat64(m.localTimeline)) {
		t.Fatal("an unknown node reads as known")
	}

	stale := &conn.StaleUpstreamError{Upstream: 1, Local: 2}
	m.ConnectFailed(&conn.ConfigError{Err: stale}, conn.ClassConfiguration)
	m.SessionEnded(fmt.Errorf("heartbeat: %w", stale))
	m.ConnectFailed(&conn.ConfigError{Err: &conn.IdentityError{Want: 1, Got: 2}}, conn.ClassConfiguration)
	if testutil.ToFloat64(m.refusals.WithLabelValues(RefusalStaleTimeline)) != 2 ||
		testutil.ToFloat64(m.refusals.WithLabelValues(RefusalWrongCluster)) != 1 ||
		testutil.ToFloat64(m.disconnects.WithLabelValues(string(conn.ReasonRefused))) != 1 {
		t.Fatal("refusals not counted by reason")
	}
}
