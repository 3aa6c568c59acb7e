package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/standbyd/standbyd/client"
)

// MaxSQLCallLabelSets bounds the (database, role) pairs of
// standbyd_api_sql_calls_total: pairs beyond it are counted under
// database="other", role="other", so that callers cannot create series
// at will (the pair comes from the caller's identify frame).
const MaxSQLCallLabelSets = 200

// sqlCallResults are the results a SQL session's call can have: ok or an
// error kind.
var sqlCallResults = []string{"ok", client.KindBadRequest, client.KindPayloadTooLarge, client.KindChannelUnavailable,
	client.KindOutcomeUnknown, client.KindPrimaryError, client.KindShuttingDown, client.KindBusy,
	client.KindForbidden, client.KindNotStandby}

// sqlCalls holds the counters by (database, role), each pair's children
// made once.
type sqlCalls struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	sets map[[2]string]func(string)
}

func newSQLCalls() *sqlCalls {
	return &sqlCalls{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "api_sql_calls_total",
			Help: "Calls made over the fast path for SQL sessions that identified themselves (standbyd.call() on the standby), by database, role and result (ok or the error kind); at most 200 database/role pairs, further ones under other/other.",
		}, []string{"database", "role", "result"}),
		sets: map[[2]string]func(string){},
	}
}

// SQLCalls returns the counter of the calls of role's sessions on
// database, by result. Call it once per identity: the counting itself
// does not allocate.
func (m *Metrics) SQLCalls(database, role string) func(result string) {
	return m.sqlCalls.counter(database, role)
}

func (c *sqlCalls) counter(database, role string) func(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{database, role}
	if f, ok := c.sets[key]; ok {
		return f
	}
	if len(c.sets) >= MaxSQLCallLabelSets {
		key = [2]string{otherOp, otherOp}
		if f, ok := c.sets[key]; ok {
			return f
		}
	}
	byResult := make(map[string]prometheus.Counter, len(sqlCallResults))
	for _, r := range sqlCallResults {
		byResult[r] = c.vec.WithLabelValues(key[0], key[1], r)
	}
	vec := c.vec
	f := func(result string) {
		if ctr, ok := byResult[result]; ok {
			ctr.Inc()
			return
		}
		vec.WithLabelValues(key[0], key[1], result).Inc() // a kind added later
	}
	c.sets[key] = f
	return f
}
