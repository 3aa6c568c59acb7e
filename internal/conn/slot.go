package conn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// slot is one session's loop and state.
type slot struct {
	idx    int
	state  State
	since  time.Time
	err    string
	start  time.Time
	pid    uint32
	hello  protocol.HelloReply
	logger *zap.Logger
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

// beat records that a session loop is alive (see Alive).
func (s *Supervisor) beat() { s.loopBeat.Store(time.Now().UnixNano()) }

// Alive reports whether a session loop went round within d: the loops wake
// at least every heartbeat interval, reply timeout or backoff step, so a
// longer silence means a loop is stuck. For the systemd watchdog.
func (s *Supervisor) Alive(d time.Duration) bool {
	return time.Since(time.Unix(0, s.loopBeat.Load())) < d
}

// runSlot keeps one session up.
func (s *Supervisor) runSlot(ctx context.Context, sl *slot) {
	bo := newBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	log := sl.logger
	var failures failureLog
	for ctx.Err() == nil {
		s.beat()
		s.setState(sl, StateConnecting, nil)
		dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		sess, err := s.cfg.Dial(dctx, func() { s.setState(sl, StateEntering, nil) })
		cancel()
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
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		bo.reset()
		hello := sess.Hello()
		s.mu.Lock()
		sl.hello = hello
		s.mu.Unlock()
		log.Info("channel ready",
			zap.String("mode", sess.Mode().String()),
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

		err = s.serve(ctx, sl, sess)
		s.cfg.Observer.SessionEnded(err)
		if errors.Is(err, errRestart) {
			cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
			_ = sess.Close(cctx)
			cancel()
			log.Info("channel closed to reconnect with new connection settings")
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
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// serve answers calls and sends heartbeats until the session fails or ctx
// ends. It returns why the session ended (nil when ctx ended).
func (s *Supervisor) serve(ctx context.Context, sl *slot, sess *Session) error {
	hb := time.NewTimer(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	restart := s.restartSignal()
	for {
		s.beat()
		select {
		case <-ctx.Done():
			return nil
		case <-restart:
			return errRestart
		case r := <-s.requests:
			start := time.Now()
			cctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplyTimeout)
			slow := time.AfterFunc(s.cfg.SlowThreshold, func() {
				sl.logger.Warn("request slow", zap.String("op", protocol.OpName(r.op)),
					zap.Duration("waiting", time.Since(start)), zap.Duration("reply_timeout", s.cfg.ReplyTimeout))
				s.cfg.Observer.SlowRequest(r.op)
			})
			s.inFlight.Add(1)
			payload, err := sess.Call(cctx, r.op, r.payload)
			s.inFlight.Add(-1)
			slow.Stop()
			cancel()
			s.cfg.Observer.CallFinished(r.op, time.Since(start), err)
			if err == nil || isServerError(err) {
				s.noteReply()
			}
			r.done <- result{payload: payload, err: err}
			if serr := sess.Err(); serr != nil {
				return serr
			}
			hb.Reset(s.cfg.HeartbeatInterval)
		case <-hb.C:
			s.beat()
			if err := s.heartbeat(sess); err != nil {
				return err
			}
			hb.Reset(s.cfg.HeartbeatInterval)
		}
	}
}

func (s *Supervisor) heartbeat(sess *Session) error {
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
	return nil
}

func (s *Supervisor) noteReply() {
	s.mu.Lock()
	s.lastReply = time.Now()
	s.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
