// Package replay reads the standby's own WAL replay position over a local
// connection (standby.conninfo), so that standbyd can export the replay lag
// in bytes: the primary's WAL position from the last heartbeat ping minus
// this position (internal/metrics does the subtraction).
//
// The connection is opened when first needed and kept; a failure closes it,
// marks the position unknown (the lag then reads NaN, never 0) and is logged
// once at warn level (later failures at debug), with a line again when the
// position is back.
package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// query returns the replay LSN as a number of bytes, NULL when the server is
// not in recovery (a promoted standby has no replay position).
const query = "SELECT (pg_catalog.pg_last_wal_replay_lsn() - '0/0'::pg_catalog.pg_lsn)::pg_catalog.int8"

// Sink receives each reading: the position, or ok=false when unknown.
type Sink func(lsn uint64, ok bool)

// Watcher polls the standby's replay position.
type Watcher struct {
	cfg      *pgconn.Config
	interval time.Duration
	log      *zap.Logger
	sink     Sink

	pc      *pgconn.PgConn
	failing bool // a failure was logged and no reading has worked since
}

// New parses connstr (a libpq connection string to the standby itself).
func New(connstr string, interval time.Duration, log *zap.Logger, sink Sink) (*Watcher, error) {
	cfg, err := pgconn.ParseConfig(connstr)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // pgconn's own message quotes the string
		}
		return nil, fmt.Errorf("standby.conninfo: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "standbyd-replay"
	if interval <= 0 {
		return nil, errors.New("replay: the interval must be positive")
	}
	return &Watcher{cfg: cfg, interval: interval, log: log, sink: sink}, nil
}

// Run reads the position every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	defer w.close()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			w.sink(0, false)
			return
		case <-t.C:
		}
	}
}

// poll takes one reading and hands it to the sink.
func (w *Watcher) poll(ctx context.Context) {
	lsn, err := w.read(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.close()
		w.sink(0, false)
		if !w.failing {
			w.log.Warn("standby replay position unknown: the replay lag reads NaN", zap.Error(err))
			w.failing = true
		} else {
			w.log.Debug("standby replay position still unknown", zap.Error(err))
		}
		return
	}
	if w.failing {
		w.log.Info("standby replay position read again")
		w.failing = false
	}
	w.sink(lsn, true)
}

// errNotInRecovery: the standby answered NULL.
var errNotInRecovery = errors.New("the standby is not in recovery (promoted?): it has no replay position")

func (w *Watcher) read(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.interval+5*time.Second)
	defer cancel()
	if w.pc == nil {
		pc, err := pgconn.ConnectConfig(ctx, w.cfg)
		if err != nil {
			return 0, fmt.Errorf("connecting to the standby (standby.conninfo): %w", err)
		}
		w.pc = pc
	}
	res, err := w.pc.Exec(ctx, query).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("reading the replay position: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return 0, errors.New("reading the replay position: unexpected result shape")
	}
	v := res[0].Rows[0][0]
	if v == nil {
		return 0, errNotInRecovery
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading the replay position: %q: %w", v, err)
	}
	return n, nil
}

func (w *Watcher) close() {
	if w.pc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = w.pc.Close(ctx)
	w.pc = nil
}
