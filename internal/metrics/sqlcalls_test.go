package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/standbyd/standbyd/client"
)

// The SQL calls are counted by database, role and result; the pairs are
// bounded: past 200 they are counted under other/other, and asking again
// for a pair gives the same counter.
// claim: api.fast-sql-calls-metric
func TestSQLCallsBoundedLabelSets(t *testing.T) {
	m := New("test")
	app := m.SQLCalls("shop", "app")
	app("ok")
	app("ok")
	app(client.KindPrimaryError)
	m.SQLCalls("shop", "app")("ok")
	if v := testutil.ToFloat64(m.sqlCalls.vec.WithLabelValues("shop", "app", "ok")); v != 3 {
		t.Errorf("shop/app ok: %v", v)
	}
	if v := testutil.ToFloat64(m.sqlCalls.vec.WithLabelValues("shop", "app", client.KindPrimaryError)); v != 1 {
		t.Errorf("shop/app primary_error: %v", v)
	}
	for i := range 300 {
		m.SQLCalls("db", fmt.Sprintf("role%d", i))("ok")
	}
	m.SQLCalls("db", "role0")("ok") // known before the bound: its own series
	if v := testutil.ToFloat64(m.sqlCalls.vec.WithLabelValues("db", "role0", "ok")); v != 2 {
		t.Errorf("db/role0: %v", v)
	}
	// shop/app and role0..role198 fill the 200 pairs.
	if v := testutil.ToFloat64(m.sqlCalls.vec.WithLabelValues("other", "other", "ok")); v != 101 {
		t.Errorf("other/other ok: %v, want 101", v)
	}
	n, err := testutil.GatherAndCount(m.reg, "standbyd_api_sql_calls_total")
	if err != nil || n != (MaxSQLCallLabelSets+1)*len(sqlCallResults) {
		t.Errorf("%d series (%v), want %d", n, err, (MaxSQLCallLabelSets+1)*len(sqlCallResults))
	}
}

// Counting a call allocates nothing.
// claim: api.fast-sql-calls-metric
func TestSQLCallsCountWithoutAllocation(t *testing.T) {
	count := New("test").SQLCalls("shop", "app")
	if a := testing.AllocsPerRun(1000, func() { count("ok"); count(client.KindBusy) }); a != 0 {
		t.Fatalf("%v allocations per call", a)
	}
}
