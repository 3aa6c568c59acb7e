package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Op labels come from a closed set: the built-ins, the ops a hello offered,
// and "other". Calling every op number creates no series of its own.
func TestOpLabelsAreAClosedSet(t *testing.T) {
	m := New("test")
	m.SessionStarted(conn.SessionInfo{Hello: protocol.HelloReply{Ops: []protocol.OpInfo{
		{Op: protocol.OpN, Name: "N", Builtin: true},
		{Op: 0x0100, Name: "echo"},
	}}})
	for op := 0; op <= 0xFFFF; op++ {
		m.CallFinished(uint16(op), time.Microsecond, errors.New("eof"))
		m.SlowRequest(uint16(op))
		m.APIDenied(uint16(op))
	}
	labels := len(protocol.BuiltinOps) + 2 // the built-ins, 0x0100 and other
	for name, n := range map[string]int{
		"standbyd_requests_total":           labels*3 - 2, // ok, error, failed; 0x0100 only failed
		"standbyd_request_duration_seconds": labels,
		"standbyd_slow_requests_total":      labels,
		"standbyd_api_denied_total":         labels,
	} {
		if got, err := testutil.GatherAndCount(m.reg, name); err != nil || got != n {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, n)
		}
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("0x0100", "failed")); v != 1 {
		t.Errorf("the offered op: %v", v)
	}
	other := 65536 - len(protocol.BuiltinOps) - 1
	if v := testutil.ToFloat64(m.requests.WithLabelValues("other", "failed")); v != float64(other) {
		t.Errorf("other: %v, want %d", v, other)
	}
}

// A handler learnt by a hello said again on a live session gets its own
// label, not "other".
func TestOpsOfferedLaterGetTheirLabel(t *testing.T) {
	m := New("test")
	m.SessionStarted(conn.SessionInfo{Hello: protocol.HelloReply{}})
	m.CallFinished(0x0200, time.Microsecond, nil)
	m.OpsOffered([]protocol.OpInfo{{Op: 0x0200, Name: "late"}})
	m.CallFinished(0x0200, time.Microsecond, nil)
	if v := testutil.ToFloat64(m.requests.WithLabelValues("other", "ok")); v != 1 {
		t.Errorf("before the refresh: other=%v, want 1", v)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("0x0200", "ok")); v != 1 {
		t.Errorf("after the refresh: 0x0200=%v, want 1", v)
	}
}
