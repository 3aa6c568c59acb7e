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

// ErrBusy is returned at once when QueueLimit calls already wait.
var ErrBusy = errors.New("too many calls waiting for the channel")

// Observer receives the supervisor's events, for metrics. Every method is
// called from the supervisor's goroutine or a caller's and must not block.
type Observer interface {
	StateChanged(State)
	SessionStarted(SessionInfo)
	// SessionEnded gets why serving ended (ReasonOf tells the reason).
	SessionEnded(err error)
	ConnectFailed(err error, class ErrorClass)
	CallFinished(op uint16, d time.Duration, err error)
	SlowRequest(op uint16)
	Heartbeat(rtt time.Duration, ping protocol.PingReply)
}

// SessionInfo describes a session that has just become ready.
type SessionInfo struct {
	Hello protocol.HelloReply
	Host  string // the upstream's address as connected (ip:port or socket path)
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
	// Sessions is how many sessions serve calls (1 when zero). Each is
	// strictly request/reply; calls go to whichever is free.
	Sessions int
	// QueueLimit bounds the calls waiting for a session; more are refused
	// with ErrBusy at once. 0: no limit.
	QueueLimit int
	Logger     *zap.Logger
	Observer   Observer
}

// Status is a snapshot of the supervisor for `standbyd status` and the API.
// With several sessions, the session fields describe the first ready one
// (or the first one, when none is ready).
type Status struct {
	State        State
	StateSince   time.Time
	LastError    string
	Hello        protocol.HelloReply
	SessionStart time.Time
	LastReply    time.Time
	BackendPID   uint32
	// Sessions has one entry per session; Ready counts the ready ones.
	Sessions []SessionStatus
	Ready    int
	// Waiting is the number of calls waiting for a session; InFlight the
	// requests sent and not yet answered.
	Waiting  int
	InFlight int
}

// SessionStatus describes one session of the supervisor.
type SessionStatus struct {
	State        State
	StateSince   time.Time
	LastError    string
	SessionStart time.Time
	BackendPID   uint32
}

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

// Supervisor keeps one channel session alive and serves calls over it, one
// at a time, in arrival order.
type Supervisor struct {
	cfg      SupervisorConfig
	log      *zap.Logger
	requests chan *request
	stopped  chan struct{}

	state    atomic.Int32 // the aggregate State
	waiting  atomic.Int64
	inFlight atomic.Int64
	loopBeat atomic.Int64 // unix nanos: a session loop went round (for the watchdog)

	mu        sync.Mutex
	slots     []*slot
	aggSince  time.Time
	lastReply time.Time
	restart   chan struct{} // closed to make every session reconnect now
}

// errRestart ends a session that Restart asked to reconnect.
var errRestart = errors.New("reconnecting: the connection settings changed")

// Restart makes every session close (politely) and connect again at once,
// with the connection settings Dial gives then: after a reload that changed
// primary_conninfo (switchover, repointing).
func (s *Supervisor) Restart() {
	s.mu.Lock()
	close(s.restart)
	s.restart = make(chan struct{})
	s.mu.Unlock()
}

func (s *Supervisor) restartSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restart
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
	if cfg.Sessions <= 0 {
		cfg.Sessions = 1
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
		aggSince: time.Now(),
		restart:  make(chan struct{}),
	}
	s.beat()
	for i := 0; i < cfg.Sessions; i++ {
		l := cfg.Logger
		if cfg.Sessions > 1 {
			l = l.With(zap.Int("session", i))
		}
		s.slots = append(s.slots, &slot{idx: i, state: StateConnecting, since: time.Now(), logger: l})
	}
	return s, nil
}

// State is the aggregate state: ready while any session is ready.
func (s *Supervisor) State() State { return State(s.state.Load()) }

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{State: State(s.state.Load()), StateSince: s.aggSince, LastReply: s.lastReply,
		Waiting: int(s.waiting.Load()), InFlight: int(s.inFlight.Load())}
	pick := s.slots[0]
	for _, sl := range s.slots {
		if sl.state == StateReady {
			if st.Ready == 0 {
				pick = sl
			}
			st.Ready++
		}
		st.Sessions = append(st.Sessions, SessionStatus{State: sl.state, StateSince: sl.since, LastError: sl.err,
			SessionStart: sl.start, BackendPID: sl.pid})
	}
	st.LastError = pick.err
	st.Hello = pick.hello
	st.SessionStart = pick.start
	st.BackendPID = pick.pid
	return st
}

// aggregate is the supervisor's state from its sessions': ready if one is,
// else the state of the first session. Called with s.mu held.
func (s *Supervisor) aggregate() State {
	for _, sl := range s.slots {
		if sl.state == StateReady {
			return StateReady
		}
	}
	return s.slots[0].state
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
	if n := s.waiting.Add(1); s.cfg.QueueLimit > 0 && n > int64(s.cfg.QueueLimit) {
		s.waiting.Add(-1)
		return nil, ErrBusy
	}
	queued := true
	defer func() {
		if queued {
			s.waiting.Add(-1)
		}
	}()
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
		queued = false
		s.waiting.Add(-1)
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

// Run keeps the sessions up until ctx is cancelled, then closes them
// politely (CopyDone) and returns. Calls waiting at that point get
// ErrStopped.
func (s *Supervisor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sl := range s.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runSlot(ctx, sl)
		}()
	}
	wg.Wait()
	for _, sl := range s.slots {
		s.setState(sl, StateStopped, nil)
	}
	close(s.stopped)
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
func (nopObserver) SessionStarted(SessionInfo)                  {}
func (nopObserver) SessionEnded(error)                          {}
func (nopObserver) ConnectFailed(error, ErrorClass)             {}
func (nopObserver) SlowRequest(uint16)                          {}
func (nopObserver) CallFinished(uint16, time.Duration, error)   {}
func (nopObserver) Heartbeat(time.Duration, protocol.PingReply) {}
