package localnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// PollInterval is how often the watcher asks the local connection
// (standby.conninfo), and how often it reads the files when it cannot
// watch them: a stat, a read of pg_control's first bytes and a listing of
// pg_wal's names.
const PollInterval = time.Second

// SignalInterval is how often the watcher, when it cannot watch the data
// directory, looks for standby.signal between two full readings: one stat,
// so that a promotion (PostgreSQL removes the file) is noticed within this,
// not a whole PollInterval, while requests may still go to the old
// primary. A change makes a full reading at once.
const SignalInterval = 100 * time.Millisecond

// SafetyInterval is how often the files are read although the data
// directory is watched: a change that inotify missed (a file system that
// does not report it) is noticed within this.
const SafetyInterval = 10 * time.Second

// localQuery asks the node itself: in recovery, and the timeline it is on
// (the timeline of the WAL it receives on a standby, NULL without a
// walreceiver or the right to see it; the one it writes on a primary).
const localQuery = `SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery()
    THEN (SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver)
    ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int4
  END`

// Watcher polls the local node and reports each change.
type Watcher struct {
	dataDir  func() string
	interval time.Duration
	log      *zap.Logger
	onChange func(Node)
	local    *pgconn.Config // nil: files only

	pc       *pgconn.PgConn
	mu       sync.Mutex
	cur      Node
	read     bool        // cur holds a reading
	failing  bool        // a files failure was logged
	connFail bool        // a local connection failure was logged
	noWatch  atomic.Bool // the data directory cannot be watched (said once)

	wakeups atomic.Int64 // times Run went round (a test counts them)
}

// Options configure a Watcher.
type Options struct {
	// DataDirectory returns the node's data directory ("": files not
	// read); asked at each reading, so that a reload applies. Nil: none.
	DataDirectory func() string
	// Conninfo, when set, is a libpq connection string to the node itself
	// (standby.conninfo).
	Conninfo string
	// Interval between readings; PollInterval when zero.
	Interval time.Duration
	Logger   *zap.Logger
	// OnChange gets every reading that differs from the previous one (and
	// the first), from the watcher's goroutine.
	OnChange func(Node)
}

// NewWatcher checks opts.
func NewWatcher(opts Options) (*Watcher, error) {
	w := &Watcher{dataDir: opts.DataDirectory, interval: opts.Interval, log: opts.Logger, onChange: opts.OnChange}
	if w.interval <= 0 {
		w.interval = PollInterval
	}
	if w.log == nil {
		w.log = zap.NewNop()
	}
	if w.dataDir == nil {
		w.dataDir = func() string { return "" }
	}
	if w.onChange == nil {
		w.onChange = func(Node) {}
	}
	if opts.Conninfo != "" {
		cfg, err := pgconn.ParseConfig(opts.Conninfo)
		if err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner // pgconn's own message quotes the string
			}
			return nil, fmt.Errorf("standby.conninfo: %w", err)
		}
		if cfg.RuntimeParams == nil {
			cfg.RuntimeParams = map[string]string{}
		}
		cfg.RuntimeParams["application_name"] = "standbyd-localnode"
		w.local = cfg
	}
	return w, nil
}

// Current is the last reading (RoleUnknown before the first).
func (w *Watcher) Current() Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Run watches the node until ctx ends. When the data directory can be
// watched (inotify), a change of standby.signal or a new timeline history
// file makes a reading at once, and otherwise the files are read every
// SafetyInterval, so that an idle daemon stays asleep; the local
// connection, when set, is asked every interval. When it cannot be
// watched, a full reading comes every interval and standby.signal is
// looked at every SignalInterval in between.
func (w *Watcher) Run(ctx context.Context) {
	defer w.closeConn()
	var dw *dirWatch
	watched := ""
	defer func() { dw.close() }()
	poll := time.NewTicker(SignalInterval)
	defer poll.Stop()
	last := time.Time{}
	changed := false
	// An unreadable reading (pg_control caught while being rewritten, a
	// file missing for a moment) is read again soon, backing off towards
	// the usual interval: pg_control's changes wake no watch.
	retry := SignalInterval
	for {
		w.wakeups.Add(1)
		if dir := w.dataDir(); dir != watched || (dw != nil && dw.broken()) {
			dw.close()
			dw, watched = w.watch(dir), dir
			changed = true // a reading with the new watch in place
		}
		interval := func() time.Duration {
			every := w.interval
			if dw != nil && w.local == nil {
				every = SafetyInterval
			}
			if w.Current().Role == RoleUnknown && !last.IsZero() {
				every = min(every, retry)
			}
			return every
		}
		every := interval()
		if changed || time.Since(last) >= every || (dw == nil && w.signalChanged()) {
			if w.Poll(ctx).Role == RoleUnknown {
				retry = min(retry*2, SafetyInterval)
			} else {
				retry = SignalInterval
			}
			last = time.Now()
			every = interval()
		}
		changed = false
		var events chan struct{}
		var tick <-chan time.Time
		if dw != nil {
			events = dw.events
			poll.Reset(max(time.Until(last.Add(every)), time.Millisecond))
		} else {
			poll.Reset(SignalInterval)
		}
		tick = poll.C
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-events:
			changed = true
		}
	}
}

// watch watches dir for the files that tell the node's role, or returns nil
// (and says once) when it cannot: the caller polls.
func (w *Watcher) watch(dir string) *dirWatch {
	if dir == "" {
		return nil
	}
	dw, err := watchDir(dir)
	if err != nil {
		if !w.noWatch.Swap(true) {
			w.log.Info("the data directory cannot be watched: its files are read every second", zap.Error(err))
		}
		return nil
	}
	w.noWatch.Store(false)
	return dw
}

// signalChanged reports whether standby.signal's presence differs from the
// last reading's.
func (w *Watcher) signalChanged() bool {
	dir := w.dataDir()
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "standby.signal"))
	present := err == nil
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.read && present != w.cur.StandbySignal
}

// Poll takes one reading, records it and reports it if it changed.
func (w *Watcher) Poll(ctx context.Context) Node {
	n := w.reading(ctx)
	w.mu.Lock()
	changed := !w.read || !n.Equal(w.cur)
	w.cur, w.read = n, true
	w.mu.Unlock()
	if changed {
		w.log.Info("local node", zap.String("role", n.Role.String()), zap.Uint32("timeline", n.Timeline),
			zap.Bool("standby_signal", n.StandbySignal), zap.String("control_state", n.State.String()),
			zap.String("source", n.Source))
		w.onChange(n)
	}
	return n
}

// reading combines the sources: the node is a standby only if no source
// that answers says otherwise (standby.signal goes a moment before
// pg_is_in_recovery() turns false, and a node in targeted recovery is in
// recovery without being a standby); the timeline is the highest any
// source reports.
func (w *Watcher) reading(ctx context.Context) Node {
	n := Node{State: -1}
	if dir := w.dataDir(); dir != "" {
		f, err := ReadFiles(dir)
		if err != nil {
			if !w.failing {
				w.log.Warn("reading the local node's role from its data directory", zap.Error(err))
				w.failing = true
			}
			f = Node{State: f.State, StandbySignal: f.StandbySignal}
		} else if w.failing {
			w.log.Info("the local node's role is read from its data directory again")
			w.failing = false
		}
		n = f
	}
	if w.local == nil {
		return n
	}
	inRecovery, tli, err := w.query(ctx)
	if err != nil {
		w.closeConn()
		if !w.connFail && ctx.Err() == nil {
			w.log.Warn("the local node does not answer over standby.conninfo: its role comes from its files", zap.Error(err))
			w.connFail = true
		}
		return n
	}
	if w.connFail {
		w.log.Info("the local node answers over standby.conninfo again")
		w.connFail = false
	}
	n.Source = "local connection"
	switch {
	case !inRecovery:
		n.Role = RolePrimary
	case n.Role == RoleUnknown:
		n.Role = RoleStandby
	}
	n.Timeline = max(n.Timeline, tli)
	return n
}

func (w *Watcher) query(ctx context.Context) (bool, uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, w.interval+2*time.Second)
	defer cancel()
	if w.pc == nil {
		pc, err := pgconn.ConnectConfig(ctx, w.local)
		if err != nil {
			return false, 0, fmt.Errorf("connecting to the local node (standby.conninfo): %w", err)
		}
		w.pc = pc
	}
	res, err := w.pc.Exec(ctx, localQuery).ReadAll()
	if err != nil {
		return false, 0, fmt.Errorf("asking the local node its role: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
		return false, 0, errors.New("asking the local node its role: unexpected result shape")
	}
	row := res[0].Rows[0]
	inRecovery := string(row[0]) == "t"
	var tli uint32
	if row[1] != nil {
		v, err := strconv.ParseUint(string(row[1]), 10, 32)
		if err != nil {
			return false, 0, fmt.Errorf("asking the local node its timeline: %q: %w", row[1], err)
		}
		tli = uint32(v)
	}
	return inRecovery, tli, nil
}

func (w *Watcher) closeConn() {
	if w.pc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = w.pc.Close(ctx)
	w.pc = nil
}
