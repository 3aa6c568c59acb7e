package conn

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// The slot loop: one session's life cycle (connect, enter, serve, close,
// back off, again), as pgconn is one connection's and pgxpool the pool's.

// maxBeatGap is the longest a slot waits without beating while it sleeps in
// backoff: the watchdog sees a live loop, not a long sleep.
const maxBeatGap = time.Second

// slot is one session's loop and state.
type slot struct {
	idx      int
	state    State
	since    time.Time
	err      string
	start    time.Time
	pid      uint32
	hello    protocol.HelloReply
	logger   *zap.Logger
	lastBeat atomic.Int64 // unix nanos: this loop went round (for the watchdog)
}

// beat records that this slot's loop is alive (see Supervisor.Alive).
func (sl *slot) beat() { sl.lastBeat.Store(time.Now().UnixNano()) }

// Alive reports whether every slot's loop went round within d: a loop beats
// at each step (connect attempt, request, heartbeat) and at least every
// second while it waits in backoff, so a longer silence than the longest
// step (connect_timeout, reply_timeout, close_timeout) means a loop is
// stuck. For the systemd watchdog.
func (s *Supervisor) Alive(d time.Duration) bool {
	for _, sl := range s.slots {
		if time.Since(time.Unix(0, sl.lastBeat.Load())) >= d {
			return false
		}
	}
	return true
}

func (s *Supervisor) setState(sl *slot, st State, err error) {
	s.mu.Lock()
	prev := sl.state
	sl.state = st
	sl.since = time.Now()
	if err != nil {
		sl.err = err.Error()
	}
	if st == StateReady {
		sl.err = ""
	} else {
		sl.start, sl.pid = time.Time{}, 0
	}
	agg := s.aggregate()
	aggChanged := State(s.state.Swap(int32(agg))) != agg
	if aggChanged {
		s.aggSince = time.Now()
	}
	s.mu.Unlock()
	if prev != st {
		fields := []zap.Field{zap.String("from", prev.String()), zap.String("to", st.String())}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		sl.logger.Info("channel state", fields...)
	}
	if aggChanged {
		s.cfg.Observer.StateChanged(agg)
	}
}

// setHello records a session's hello (at start or refreshed).
func (s *Supervisor) setHello(sl *slot, h protocol.HelloReply) {
	s.mu.Lock()
	sl.hello = h
	s.ops = h.Ops
	s.mu.Unlock()
}

// runSlot keeps one session up.
func (s *Supervisor) runSlot(ctx context.Context, sl *slot) {
	bo := newBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	log := sl.logger
	var failures failureLog
	for ctx.Err() == nil {
		sl.beat()
		if refused, alive := s.waitWhileRefusing(ctx, sl); refused {
			if !alive {
				return
			}
			continue
		}
		s.setState(sl, StateConnecting, nil)
		// Taken before dialling: a restart asked for during the attempt
		// (which used the old settings) is acted on when it ends.
		restart := s.restartSignal()
		dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		sess, err := s.cfg.Dial(dctx, func() { s.setState(sl, StateEntering, nil) })
		cancel()
		sl.beat()
		if err == nil {
			err = s.admit(sess)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			class := Classify(err)
			s.cfg.Observer.ConnectFailed(err, class)
			delay := bo.next()
			if class == ClassConfiguration {
				delay = bo.slow()
			}
			fields := []zap.Field{zap.String("class", string(class)), zap.Error(err), zap.Duration("retry_in", delay)}
			if logIt, leftOut := failures.failed(time.Now(), err.Error()); logIt {
				if leftOut > 0 {
					fields = append(fields, zap.Int("similar_failures_not_logged", leftOut),
						zap.Time("failing_since", failures.first))
				}
				log.Warn("channel connect failed", fields...)
			} else {
				log.Debug("channel connect failed", fields...)
			}
			s.setState(sl, StateBackingOff, err)
			if !s.wait(ctx, sl, delay, restart) {
				return
			}
			continue
		}
		select {
		case <-restart:
			s.closeForRestart(sl, sess)
			continue
		default:
		}
		bo.reset()
		hello := sess.Hello()
		s.setHello(sl, hello)
		log.Info("channel ready",
			zap.String("mode", sess.Mode().String()),
			zap.Uint16("protocol_version", hello.Version),
			zap.Bool("pipelined", sess.Pipelined()),
			zap.Uint32("backend_pid", sess.BackendPID()),
			zap.Uint32("server_version_num", hello.ServerVersionNum),
			zap.Uint64("system_identifier", hello.SystemIdentifier),
			zap.Uint32("timeline", hello.Timeline),
			zap.Bool("primary_in_recovery", hello.InRecovery),
			zap.Int("max_frame_size", sess.MaxFrameSize()))
		if n, since := failures.recovered(); n > 1 {
			log.Info("channel back after failed attempts", zap.Int("failed_attempts", n),
				zap.Duration("failing_for", time.Since(since).Round(time.Millisecond)))
		}
		s.setState(sl, StateReady, nil)
		s.mu.Lock()
		sl.start, sl.pid = time.Now(), sess.BackendPID()
		s.mu.Unlock()
		s.cfg.Observer.SessionStarted(SessionInfo{Hello: hello, Host: sess.RemoteAddr()})

		err = s.serve(ctx, sl, sess, restart)
		s.cfg.Observer.SessionEnded(err)
		if errors.Is(err, errRestart) {
			s.closeForRestart(sl, sess)
			bo.reset()
			continue
		}
		if ctx.Err() != nil {
			s.setState(sl, StateStopping, nil)
			cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
			if cerr := sess.Close(cctx); cerr != nil {
				log.Warn("closing the channel", zap.Error(cerr))
			} else {
				log.Info("channel closed")
			}
			cancel()
			return
		}
		delay := bo.next()
		log.Warn("channel lost", zap.String("reason", string(ReasonOf(err))), zap.Error(err), zap.Duration("retry_in", delay))
		s.setState(sl, StateBackingOff, err)
		if !s.wait(ctx, sl, delay, s.restartSignal()) {
			return
		}
	}
}

// closeForRestart closes a session politely to reconnect with new
// settings. The slot says "stopping" meanwhile: it no longer serves.
func (s *Supervisor) closeForRestart(sl *slot, sess *Session) {
	s.setState(sl, StateStopping, errRestart)
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	_ = sess.Close(cctx)
	cancel()
	sl.beat()
	sl.logger.Info("channel closed to reconnect with new connection settings")
}

// wait sleeps d in backoff, beating, and returns false when ctx ended; a
// restart (new connection settings) cuts the wait short.
func (s *Supervisor) wait(ctx context.Context, sl *slot, d time.Duration, restart <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(min(maxBeatGap, d))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-restart:
			sl.logger.Info("connection settings changed: trying at once")
			return true
		case <-t.C:
			return true
		case <-tick.C:
			sl.beat()
		}
	}
}

// serve answers calls and sends heartbeats until the session fails, a
// restart is asked for, or ctx ends. It returns why the session ended (nil
// when ctx ended).
func (s *Supervisor) serve(ctx context.Context, sl *slot, sess *Session, restart <-chan struct{}) error {
	if sess.Pipelined() {
		return s.servePipelined(ctx, sl, sess, restart)
	}
	// A ticker, not a timer reset by each request: under steady traffic the
	// heartbeat must still run.
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	refused := s.refusedSignal()
	for {
		sl.beat()
		// Stopping comes before any waiting call: select picks at random
		// among ready cases, and a waiting call must get shutting_down.
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-restart:
			return errRestart
		case <-refused:
			return s.endRefused(sess)
		case r := <-s.requests:
			if !r.claim() {
				// The caller is gone: its request is not sent.
				continue
			}
			if err := s.refusal(); err != nil {
				// The node stopped being a standby while the request
				// waited: it is not sent.
				r.done <- result{err: err}
				return s.endRefused(sess)
			}
			if err := s.serveRequest(sl, sess, r); err != nil {
				return err
			}
		case <-hb.C:
			sl.beat()
			if err := s.heartbeat(sl, sess); err != nil {
				return err
			}
		}
	}
}

// serveRequest sends one caller's request and hands the result back. It
// returns an error when the session is over.
func (s *Supervisor) serveRequest(sl *slot, sess *Session, r *request) error {
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplyTimeout)
	defer cancel()
	slow := time.AfterFunc(s.cfg.SlowThreshold, func() {
		sl.logger.Warn("request slow", zap.String("op", protocol.OpName(r.op)),
			zap.Duration("waiting", time.Since(start)), zap.Duration("reply_timeout", s.cfg.ReplyTimeout))
		s.cfg.Observer.SlowRequest(r.op)
	})
	s.inFlight.Add(1)
	var payload []byte
	var err error
	if r.refresh {
		var h protocol.HelloReply
		if h, err = sess.Rehello(cctx); err == nil {
			s.setHello(sl, h)
			s.cfg.Observer.OpsOffered(h.Ops)
		}
	} else {
		payload, err = sess.Call(cctx, r.op, r.payload)
	}
	s.inFlight.Add(-1)
	slow.Stop()
	if err == nil || isServerError(err) {
		s.noteReply()
	}
	// The result goes to the caller first: a reply that arrived is the
	// caller's, even if its deadline passes right now.
	r.done <- result{payload: payload, err: err}
	s.cfg.Observer.CallFinished(r.op, time.Since(start), err)
	return sess.Err()
}

func (s *Supervisor) heartbeat(sl *slot, sess *Session) error {
	if sess.Mode() == ModeRaw {
		// Raw mode has no ping; N with zeros is harmless and proves life.
		cctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplyTimeout)
		defer cancel()
		if _, err := sess.Call(cctx, protocol.OpN, protocol.AppendN(nil, [3]int32{})); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		s.noteReply()
		return nil
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplyTimeout)
	defer cancel()
	payload, err := sess.Call(cctx, protocol.OpPing, nil)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	ping, err := protocol.ParsePingReply(payload)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	s.noteReply()
	s.cfg.Observer.Heartbeat(time.Since(start), ping)
	return s.checkPing(sl, sess, ping)
}

func (s *Supervisor) noteReply() {
	s.mu.Lock()
	s.lastReply = time.Now()
	s.mu.Unlock()
}
