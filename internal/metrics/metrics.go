// Package metrics exports the channel's health to Prometheus. Metrics
// implements conn.Observer; every series is documented in docs/metrics.md.
//
// Rules kept here: the up gauge is 1 only while a session that said hello is
// serving; values that only make sense while connected (round-trip time, the
// primary's WAL position) are reset when the session ends, so that nothing
// reads as healthy while the channel is down.
package metrics

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/localnode"
	"github.com/standbyd/standbyd/internal/protocol"
)

const namespace = "standbyd"

// Metrics holds standbyd's collectors in their own registry.
type Metrics struct {
	reg *prometheus.Registry

	// The state is read where it lives (WatchState) at each scrape: events
	// from several sessions can arrive out of order.
	stateFn   atomic.Pointer[func() conn.State]
	lastState atomic.Int32 // from StateChanged, until WatchState is called

	connects      prometheus.Counter
	disconnects   *prometheus.CounterVec
	connectErrors *prometheus.CounterVec
	slowRequests  *prometheus.CounterVec
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	heartbeatRTT  prometheus.Gauge
	lastReply     prometheus.Gauge
	sessionStart  prometheus.Gauge
	primaryInfo   *prometheus.GaugeVec
	identity      prometheus.Counter
	refusals      *prometheus.CounterVec
	localRecovery prometheus.Gauge
	localTimeline prometheus.Gauge
	localRole     atomic.Int32 // localnode.Role of the last reading
	reloads       *prometheus.CounterVec
	reloadOK      prometheus.Gauge
	reloadTime    prometheus.Gauge
	denied        *prometheus.CounterVec
	sqlCalls      *sqlCalls

	// userOps holds the registered ops the primary offered in a hello: with
	// the built-ins, the only op labels; any other op is "other", so that
	// callers cannot create series at will.
	opsMu   sync.RWMutex
	userOps map[uint16]bool

	// The two WAL positions, NaN when unknown: the primary's from the last
	// ping (unknown while down), the standby's from the replay watcher.
	// Exported as they are and as the replay lag.
	posMu      sync.Mutex
	primaryPos float64
	replayPos  float64
}

// New creates the collectors, registers them with process and Go collectors,
// and initialises labelled series to zero.
func New(version string) *Metrics {
	m := &Metrics{
		primaryPos: nan(),
		replayPos:  nan(),
		reg:        prometheus.NewRegistry(),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "channel_connects_total",
			Help: "Channel sessions established (connected, entered, hello answered).",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "channel_disconnects_total",
			Help: "Channel sessions that ended, by reason (shutdown, reconnect, reply_timeout, server_closed, connection_lost, protocol_error, refused).",
		}, []string{"reason"}),
		connectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "channel_connect_errors_total",
			Help: "Attempts to establish a channel session that failed, by class (transient: retried with backoff; configuration: needs a fix, retried slowly).",
		}, []string{"class"}),
		slowRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "slow_requests_total",
			Help: "Requests still unanswered after the slow threshold (half the reply timeout by default), by op.",
		}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Requests sent on the channel, by op and result (ok, error, failed).",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "Round trip of requests on the channel, by op.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5},
		}, []string{"op"}),
		heartbeatRTT: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "heartbeat_rtt_seconds",
			Help: "Round trip of the last heartbeat ping; NaN while the channel is down.",
		}),
		lastReply: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_reply_timestamp_seconds",
			Help: "Unix time of the last reply received from the primary (0: never).",
		}),
		sessionStart: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "session_start_timestamp_seconds",
			Help: "Unix time the current channel session said hello; 0 while the channel is down.",
		}),
		primaryInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "primary_info",
			Help: "1 for the primary of the current session: its system identifier, server version and address (host).",
		}, []string{"system_identifier", "server_version_num", "host"}),
	}
	m.identity = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "identity_mismatches_total",
		Help: "Sessions refused because the upstream's system identifier is not the standby's (conninfo pointing at another cluster).",
	})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "channel_refusals_total",
		Help: "Times standbyd refused to serve, by reason: wrong_cluster (the upstream's system identifier is not the standby's), stale_timeline (the upstream is on an older timeline than the standby: a stale ex-primary), not_standby (this node stopped being a standby: promoted).",
	}, []string{"reason"})
	for _, r := range []string{RefusalWrongCluster, RefusalStaleTimeline, RefusalNotStandby} {
		m.refusals.WithLabelValues(r)
	}
	m.localRecovery = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "local_in_recovery",
		Help: "1 while the node standbyd runs on is a standby, 0 when it is not (promoted: standbyd refuses to serve), NaN while unknown.",
	})
	m.localTimeline = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "local_timeline",
		Help: "The timeline of the node standbyd runs on (history files, pg_control, standby.conninfo); NaN while unknown.",
	})
	m.localRecovery.Set(nan())
	m.localTimeline.Set(nan())
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads (SIGHUP or a watched file changed), by result (success, failure).",
	}, []string{"result"})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 if the last reload succeeded (or none happened), 0 if the running configuration is older than a broken one on disk.",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful load of the configuration (start or reload).",
	})
	m.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_denied_total",
		Help: "Calls refused by api.allow (the caller may not call the op), by op.",
	}, []string{"op"})
	m.sqlCalls = newSQLCalls()
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "1, labelled with the standbyd version.",
	}, []string{"version"})
	buildInfo.WithLabelValues(version).Set(1)

	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "channel_up",
		Help: "1 while a channel session to the primary has said hello and is serving, else 0.",
	}, func() float64 {
		if m.current() == conn.StateReady {
			return 1
		}
		return 0
	})
	state := &stateCollector{m: m, desc: prometheus.NewDesc(namespace+"_channel_state",
		"1 for the supervisor's current state, 0 for the others.", []string{"state"}, nil)}
	for _, r := range conn.DisconnectReasons {
		m.disconnects.WithLabelValues(string(r))
	}
	for _, c := range conn.ErrorClasses {
		m.connectErrors.WithLabelValues(string(c))
	}
	for _, name := range append(builtinLabels(), otherOp) {
		m.slowRequests.WithLabelValues(name)
		m.denied.WithLabelValues(name)
		for _, r := range []string{"ok", "error", "failed"} {
			m.requests.WithLabelValues(name, r)
		}
		m.duration.WithLabelValues(name)
	}
	m.heartbeatRTT.Set(nan())
	// The primary's position is kept once, for this series and the lag.
	primaryWAL := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "primary_wal_position_bytes",
		Help: "The primary's flushed WAL position (LSN as bytes) from the last ping; NaN while the channel is down.",
	}, func() float64 { p, _ := m.positions(); return p })

	m.reg.MustRegister(up, state, m.connects, m.disconnects, m.connectErrors, m.slowRequests,
		m.requests, m.duration, m.heartbeatRTT, m.lastReply, m.sessionStart,
		primaryWAL, m.primaryInfo, buildInfo, m.denied, m.sqlCalls.vec, m.reloads, m.reloadOK, m.reloadTime, m.identity,
		m.refusals, m.localRecovery, m.localTimeline,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchCalls exports the calls waiting for a session and the requests in
// flight, read from f at each scrape.
func (m *Metrics) WatchCalls(f func() (waiting, inFlight int)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "calls_waiting",
			Help: "Calls waiting for a free session."}, func() float64 { w, _ := f(); return float64(w) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "requests_in_flight",
			Help: "Requests sent to the primary and not answered yet."}, func() float64 { _, i := f(); return float64(i) }),
	)
}

// WatchReplay exports the standby's replay position and the replay lag in
// bytes; called when standby.conninfo is set (internal/replay feeds
// StandbyReplay).
func (m *Metrics) WatchReplay() {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "standby_replay_position_bytes",
			Help: "The standby's replayed WAL position (LSN as bytes), read over standby.conninfo every heartbeat interval; NaN while unknown."},
			func() float64 { _, r := m.positions(); return r }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "standby_replay_lag_bytes",
			Help: "The primary's WAL position from the last ping minus the standby's replay position (at least 0); NaN while the channel is down or the standby's position is unknown."},
			m.replayLag),
	)
}

// StandbyReplay records a reading of the standby's replay position.
func (m *Metrics) StandbyReplay(lsn uint64, ok bool) {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	if ok {
		m.replayPos = float64(lsn)
	} else {
		m.replayPos = nan()
	}
}

func (m *Metrics) positions() (primary, replay float64) {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	return m.primaryPos, m.replayPos
}

// replayLag is NaN unless both positions are known: never 0 while down. The
// two readings are up to a heartbeat interval apart, so the standby may read
// ahead of the last ping: that is no lag, not a negative one.
func (m *Metrics) replayLag() float64 {
	p, r := m.positions()
	if math.IsNaN(p) || math.IsNaN(r) {
		return nan()
	}
	return math.Max(0, p-r)
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WatchState makes the state series read f (the supervisor's State) at
// each scrape.
func (m *Metrics) WatchState(f func() conn.State) { m.stateFn.Store(&f) }

func (m *Metrics) current() conn.State {
	if f := m.stateFn.Load(); f != nil {
		return (*f)()
	}
	return conn.State(m.lastState.Load())
}

// stateCollector exports standbyd_channel_state from the live state.
type stateCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	cur := c.m.current()
	for _, st := range conn.States {
		v := 0.0
		if st == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, st.String())
	}
}

// StateChanged implements conn.Observer. It resets the values that only
// make sense while connected, unless the live state says ready again (a
// late event from another session).
func (m *Metrics) StateChanged(s conn.State) {
	m.lastState.Store(int32(s))
	if s != conn.StateReady && m.current() != conn.StateReady {
		m.down()
	}
}

// SessionStarted implements conn.Observer.
func (m *Metrics) SessionStarted(si conn.SessionInfo) {
	h := si.Hello
	m.connects.Inc()
	m.sessionStart.Set(float64(time.Now().UnixNano()) / 1e9)
	m.learnOps(h.Ops)
	m.primaryInfo.Reset()
	m.primaryInfo.WithLabelValues(strconv.FormatUint(h.SystemIdentifier, 10),
		strconv.FormatUint(uint64(h.ServerVersionNum), 10), si.Host).Set(1)
}

// SessionEnded implements conn.Observer. The gauges follow the aggregate
// state (StateChanged): with several sessions, one ending while another
// serves leaves the channel up.
func (m *Metrics) SessionEnded(err error) {
	m.disconnects.WithLabelValues(string(conn.ReasonOf(err))).Inc()
	var su *conn.StaleUpstreamError
	if errors.As(err, &su) {
		m.refusals.WithLabelValues(RefusalStaleTimeline).Inc()
	}
}

func (m *Metrics) down() {
	m.sessionStart.Set(0)
	m.heartbeatRTT.Set(nan())
	m.primaryInfo.Reset()
	m.posMu.Lock()
	m.primaryPos = nan()
	m.posMu.Unlock()
}

// ConnectFailed implements conn.Observer.
func (m *Metrics) ConnectFailed(err error, class conn.ErrorClass) {
	m.connectErrors.WithLabelValues(string(class)).Inc()
	var ie *conn.IdentityError
	var su *conn.StaleUpstreamError
	switch {
	case errors.As(err, &ie):
		m.identity.Inc()
		m.refusals.WithLabelValues(RefusalWrongCluster).Inc()
	case errors.As(err, &su):
		m.refusals.WithLabelValues(RefusalStaleTimeline).Inc()
	}
}

// Reloaded records a configuration reload.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.reloadOK.Set(1)
		m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
	m.reloadOK.Set(0)
}

// otherOp labels every op that is neither a built-in nor offered in a hello.
const otherOp = "other"

func builtinLabels() []string {
	var out []string
	for _, op := range protocol.BuiltinOps {
		out = append(out, protocol.OpName(op))
	}
	return out
}

// learnOps adds the registered ops of a hello to the label set (kept
// across sessions: series once exported stay).
func (m *Metrics) learnOps(ops []protocol.OpInfo) {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	if m.userOps == nil {
		m.userOps = map[uint16]bool{}
	}
	for _, o := range ops {
		if !o.Builtin {
			m.userOps[o.Op] = true
		}
	}
}

// opLabel is op's label: a built-in's name, a registered op's code, or
// "other".
func (m *Metrics) opLabel(op uint16) string {
	if protocol.IsBuiltin(op) {
		return protocol.OpName(op)
	}
	m.opsMu.RLock()
	known := m.userOps[op]
	m.opsMu.RUnlock()
	if known {
		return protocol.OpName(op)
	}
	return otherOp
}

// APIDenied counts a call that api.allow refused.
func (m *Metrics) APIDenied(op uint16) { m.denied.WithLabelValues(m.opLabel(op)).Inc() }

// SlowRequest implements conn.Observer.
func (m *Metrics) SlowRequest(op uint16) { m.slowRequests.WithLabelValues(m.opLabel(op)).Inc() }

// OpsOffered implements conn.Observer: a handler learnt by a refreshed
// hello gets its own label at once.
func (m *Metrics) OpsOffered(ops []protocol.OpInfo) { m.learnOps(ops) }

// CallFinished implements conn.Observer.
func (m *Metrics) CallFinished(op uint16, d time.Duration, err error) {
	name := m.opLabel(op)
	result := "ok"
	var se *protocol.ServerError
	switch {
	case err == nil:
	case errors.As(err, &se):
		result = "error"
	default:
		result = "failed"
	}
	m.requests.WithLabelValues(name, result).Inc()
	m.duration.WithLabelValues(name).Observe(d.Seconds())
	if result != "failed" {
		m.lastReply.Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

// Heartbeat implements conn.Observer.
func (m *Metrics) Heartbeat(rtt time.Duration, p protocol.PingReply) {
	m.heartbeatRTT.Set(rtt.Seconds())
	m.posMu.Lock()
	m.primaryPos = float64(p.WALPosition)
	m.posMu.Unlock()
	m.lastReply.Set(float64(time.Now().UnixNano()) / 1e9)
}

func nan() float64 { return math.NaN() }

// The reasons of standbyd_channel_refusals_total.
const (
	RefusalWrongCluster  = "wrong_cluster"
	RefusalStaleTimeline = "stale_timeline"
	RefusalNotStandby    = "not_standby"
)

// LocalNode records a reading of the node standbyd runs on. Each time it
// turns out not to be a standby counts as a not_standby refusal.
func (m *Metrics) LocalNode(n localnode.Node) {
	prev := localnode.Role(m.localRole.Swap(int32(n.Role)))
	switch n.Role {
	case localnode.RoleStandby:
		m.localRecovery.Set(1)
	case localnode.RolePrimary:
		m.localRecovery.Set(0)
		if prev != localnode.RolePrimary {
			m.refusals.WithLabelValues(RefusalNotStandby).Inc()
		}
	default:
		m.localRecovery.Set(nan())
	}
	if n.Timeline > 0 {
		m.localTimeline.Set(float64(n.Timeline))
	} else {
		m.localTimeline.Set(nan())
	}
}
