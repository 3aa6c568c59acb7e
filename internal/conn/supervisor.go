package conn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// ErrStopped is returned by calls made after the supervisor stopped.
var ErrStopped = errors.New("standbyd is shutting down")

// Observer receives the supervisor's events, for metrics. Every method is
// called from one of the supervisor's goroutines (a slot's, a pipelined
// session's reader) or a caller's, and must not block.
type Observer interface {
	StateChanged(State)
	SessionStarted(SessionInfo)
	// SessionEnded gets why serving ended (ReasonOf tells the reason).
	SessionEnded(err error)
	ConnectFailed(err error, class ErrorClass)
	CallFinished(op uint16, d time.Duration, err error)
	SlowRequest(op uint16)
	// OpsOffered gets the op list of a hello said again on a live session
	// (SessionStarted carries the first one).
	OpsOffered(ops []protocol.OpInfo)
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
	// HeartbeatInterval: a ping is sent this often, whatever the traffic
	// (requests do not postpone it: each ping reads the primary's WAL
	// position, which must keep moving under load).
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
	// IdempotentOps returns the configured ops (names or numbers) that may
	// be sent again on a new session when their outcome is unknown, on top
	// of the read-only built-ins. Read at each decision, so a reload
	// applies at once; names are resolved with the primary's hello. Nil:
	// none.
	IdempotentOps func() []string
	// Sessions is how many sessions serve calls (1 when zero); calls go to
	// whichever can take one.
	Sessions int
	// MaxInFlight bounds the requests in flight on one session of protocol
	// version 2 (DefaultMaxInFlight when zero); a version-1 session carries
	// one at a time.
	MaxInFlight int
	// QueueLimit bounds the calls waiting for a session; more are refused
	// with ErrBusy at once. 0: no limit.
	QueueLimit int
	Logger     *zap.Logger
	Observer   Observer
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

	mu          sync.Mutex
	slots       []*slot
	aggSince    time.Time
	lastReply   time.Time
	restart     chan struct{}     // closed to make every session reconnect now
	ops         []protocol.OpInfo // from the latest hello of any session
	lastRefresh time.Time         // of the op list (ResolveOp)

	// The local node (role.go): refused is closed while refusing is set;
	// localChanged is closed at each change of local.
	local        LocalNode
	refusing     *NotStandbyError
	sawStandby   bool
	refused      chan struct{}
	localChanged chan struct{}
}

// errRestart ends a session that Restart asked to reconnect.
var errRestart = errors.New("reconnecting: the connection settings changed")

// Restart makes every session close (politely) and connect again at once,
// with the connection settings Dial gives then: after a reload that changed
// primary_conninfo (switchover, repointing) or another connection setting.
// A slot that is connecting finishes its attempt and then reconnects (the
// attempt used the old settings); a slot waiting in backoff tries at once.
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

		refused:      make(chan struct{}),
		localChanged: make(chan struct{}),
	}
	for i := 0; i < cfg.Sessions; i++ {
		l := cfg.Logger
		if cfg.Sessions > 1 {
			l = l.With(zap.Int("session", i))
		}
		sl := &slot{idx: i, state: StateConnecting, since: time.Now(), logger: l}
		sl.beat()
		s.slots = append(s.slots, sl)
	}
	return s, nil
}

// State is the aggregate state: ready while any session is ready.
func (s *Supervisor) State() State { return State(s.state.Load()) }

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

type nopObserver struct{}

func (nopObserver) StateChanged(State)                          {}
func (nopObserver) SessionStarted(SessionInfo)                  {}
func (nopObserver) SessionEnded(error)                          {}
func (nopObserver) ConnectFailed(error, ErrorClass)             {}
func (nopObserver) SlowRequest(uint16)                          {}
func (nopObserver) OpsOffered([]protocol.OpInfo)                {}
func (nopObserver) CallFinished(uint16, time.Duration, error)   {}
func (nopObserver) Heartbeat(time.Duration, protocol.PingReply) {}
