package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// ErrStopped is returned by calls made after the supervisor stopped.
var ErrStopped = errors.New("standbyd is shutting down")

// Observer receives the supervisor's events, for metrics. Every method is
// called from the supervisor's goroutine or a caller's and must not block.
type Observer interface {
	StateChanged(State)
	SessionStarted(hello protocol.HelloReply)
	SessionEnded(err error)
	ConnectFailed(err error, class ErrorClass)
	CallFinished(op uint16, d time.Duration, err error)
	SlowRequest(op uint16)
	Heartbeat(rtt time.Duration, ping protocol.PingReply)
}

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Dial opens a new session (connect, enter, hello). Called from the
	// supervisor's goroutine with a context bounded by ConnectTimeout; it
	// calls connected once authenticated (DialOptions.OnConnected).
	Dial func(ctx context.Context, connected func()) (*Session, error)
	// HeartbeatInterval: a ping is sent after this long without a request.
	HeartbeatInterval time.Duration
	// ReplyTimeout: a request or ping without a reply after this long ends
	// the session.
	ReplyTimeout time.Duration
	// ConnectTimeout bounds one Dial.
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between attempts.
	BackoffMin, BackoffMax time.Duration
	// CloseTimeout bounds the polite close at shutdown.
	CloseTimeout time.Duration
	// SlowThreshold: a request still unanswered after this long is logged
	// as slow (ReplyTimeout/2 when zero).
	SlowThreshold time.Duration
	// FailFast makes calls fail at once while no session is ready, instead
	// of waiting for one until their deadline.
	FailFast bool
	// Idempotent reports ops that may be sent again on a new session when
	// their outcome is unknown. Nil: none.
	Idempotent func(op uint16) bool
	Logger     *zap.Logger
	Observer   Observer
}

// Status is a snapshot of the supervisor for `standbyd status` and the API.
type Status struct {
	State        State
	StateSince   time.Time
	LastError    string
	Hello        protocol.HelloReply
	SessionStart time.Time
	LastReply    time.Time
	BackendPID   uint32
}

// Supervisor keeps one channel session alive and serves calls over it, one
// at a time, in arrival order.
type Supervisor struct {
	cfg      SupervisorConfig
	log      *zap.Logger
	requests chan *request
	stopped  chan struct{}

	state atomic.Int32

	mu     sync.Mutex
	status Status
}

type request struct {
	op      uint16
	payload []byte
	done    chan result // buffered: the loop never blocks on a caller
}

type result struct {
	payload []byte
	err     error
}

// NewSupervisor checks cfg and returns a supervisor; Run starts it.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Dial == nil {
		return nil, errors.New("supervisor: no Dial function")
	}
	if cfg.HeartbeatInterval <= 0 || cfg.ReplyTimeout <= 0 || cfg.ConnectTimeout <= 0 {
		return nil, errors.New("supervisor: heartbeat interval, reply timeout and connect timeout must be positive")
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	if cfg.SlowThreshold <= 0 || cfg.SlowThreshold > cfg.ReplyTimeout {
		cfg.SlowThreshold = cfg.ReplyTimeout / 2
	}
	if cfg.Idempotent == nil {
		cfg.Idempotent = func(uint16) bool { return false }
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	s := &Supervisor{
		cfg:      cfg,
		log:      cfg.Logger,
		requests: make(chan *request),
		stopped:  make(chan struct{}),
	}
	s.status.State = StateConnecting
	s.status.StateSince = time.Now()
	return s, nil
}

// State is the current state.
func (s *Supervisor) State() State { return State(s.state.Load()) }

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Supervisor) setState(st State, err error) {
	if prev := State(s.state.Swap(int32(st))); prev != st {
		fields := []zap.Field{zap.String("from", prev.String()), zap.String("to", st.String())}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		s.log.Info("channel state", fields...)
	}
	s.mu.Lock()
	s.status.State = st
	s.status.StateSince = time.Now()
	if err != nil {
		s.status.LastError = err.Error()
	}
	s.mu.Unlock()
	s.cfg.Observer.StateChanged(st)
}

// Call sends a request through the channel and waits for its reply until ctx
// ends. While no session is ready the call waits (in arrival order) for one,
// or fails at once with FailFast. Errors: *protocol.ServerError (the primary
// answered with an error), *CallError (OutcomeUnknown tells whether the
// request may have run), ErrUnavailable wrapped with the last connection
// error, ErrStopped.
//
// A request whose outcome is unknown is never sent again, unless its op is
// idempotent (SupervisorConfig.Idempotent): then it is sent again on the
// next session, within the caller's deadline.
func (s *Supervisor) Call(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	for {
		out, err := s.callOnce(ctx, op, payload)
		var ce *CallError
		if err != nil && errors.As(err, &ce) && ce.OutcomeUnknown() && ctx.Err() == nil && s.cfg.Idempotent(op) {
			s.log.Info("retrying an idempotent request whose outcome is unknown",
				zap.String("op", protocol.OpName(op)), zap.Error(err))
			continue
		}
		return out, err
	}
}

func (s *Supervisor) callOnce(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	if s.cfg.FailFast && s.State() != StateReady {
		select {
		case <-s.stopped:
			return nil, ErrStopped
		default:
		}
		return nil, s.unavailable(errors.New("no session ready (fail_fast)"))
	}
	r := &request{op: op, payload: payload, done: make(chan result, 1)}
	select {
	case s.requests <- r:
	case <-ctx.Done():
		return nil, s.unavailable(ctx.Err())
	case <-s.stopped:
		return nil, ErrStopped
	}
	select {
	case res := <-r.done:
		return res.payload, res.err
	case <-ctx.Done():
		// The request is on the wire: its reply will be read and dropped by
		// the loop, so the session stays in step.
		return nil, &CallError{Op: protocol.OpName(op), Err: ctx.Err(), sent: true}
	}
}

func (s *Supervisor) unavailable(cause error) error {
	st := s.Status()
	if st.State == StateReady {
		return fmt.Errorf("%w: channel busy until the deadline: %w", ErrUnavailable, cause)
	}
	if st.LastError != "" {
		return fmt.Errorf("%w (%s: %s): %w", ErrUnavailable, st.State, st.LastError, cause)
	}
	return fmt.Errorf("%w (%s): %w", ErrUnavailable, st.State, cause)
}

// Run keeps the channel up until ctx is cancelled, then closes the session
// politely (CopyDone) and returns. Calls waiting at that point get ErrStopped.
func (s *Supervisor) Run(ctx context.Context) {
	defer func() {
		s.setState(StateStopped, nil)
		close(s.stopped)
	}()
	bo := newBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	for ctx.Err() == nil {
		s.setState(StateConnecting, nil)
		dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		sess, err := s.cfg.Dial(dctx, func() { s.setState(StateEntering, nil) })
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
			s.log.Warn("channel connect failed", zap.String("class", string(class)),
				zap.Error(err), zap.Duration("retry_in", delay))
			s.setState(StateBackingOff, err)
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		bo.reset()
		hello := sess.Hello()
		s.mu.Lock()
		s.status.Hello = hello
		s.status.SessionStart = time.Now()
		s.status.BackendPID = sess.BackendPID()
		s.status.LastError = ""
		s.mu.Unlock()
		s.cfg.Observer.SessionStarted(hello)
		s.log.Info("channel ready",
			zap.String("mode", sess.Mode().String()),
			zap.Uint32("backend_pid", sess.BackendPID()),
			zap.Uint32("server_version_num", hello.ServerVersionNum),
			zap.Uint64("system_identifier", hello.SystemIdentifier),
			zap.Uint32("timeline", hello.Timeline),
			zap.Bool("primary_in_recovery", hello.InRecovery),
			zap.Int("max_frame_size", sess.MaxFrameSize()))
		s.setState(StateReady, nil)

		err = s.serve(ctx, sess)
		s.cfg.Observer.SessionEnded(err)
		if ctx.Err() != nil {
			s.setState(StateStopping, nil)
			cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
			if cerr := sess.Close(cctx); cerr != nil {
				s.log.Warn("closing the channel", zap.Error(cerr))
			} else {
				s.log.Info("channel closed")
			}
			cancel()
			return
		}
		delay := bo.next()
		s.log.Warn("channel lost", zap.Error(err), zap.Duration("retry_in", delay))
		s.setState(StateBackingOff, err)
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// serve answers calls and sends heartbeats until the session fails or ctx
// ends. It returns why the session ended (nil when ctx ended).
func (s *Supervisor) serve(ctx context.Context, sess *Session) error {
	hb := time.NewTimer(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.requests:
			start := time.Now()
			cctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplyTimeout)
			slow := time.AfterFunc(s.cfg.SlowThreshold, func() {
				s.log.Warn("request slow", zap.String("op", protocol.OpName(r.op)),
					zap.Duration("waiting", time.Since(start)), zap.Duration("reply_timeout", s.cfg.ReplyTimeout))
				s.cfg.Observer.SlowRequest(r.op)
			})
			payload, err := sess.Call(cctx, r.op, r.payload)
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
	s.status.LastReply = time.Now()
	s.mu.Unlock()
}

func isServerError(err error) bool {
	var se *protocol.ServerError
	return errors.As(err, &se)
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

type nopObserver struct{}

func (nopObserver) StateChanged(State)                          {}
func (nopObserver) SessionStarted(protocol.HelloReply)          {}
func (nopObserver) SessionEnded(error)                          {}
func (nopObserver) ConnectFailed(error, ErrorClass)             {}
func (nopObserver) SlowRequest(uint16)                          {}
func (nopObserver) CallFinished(uint16, time.Duration, error)   {}
func (nopObserver) Heartbeat(time.Duration, protocol.PingReply) {}
