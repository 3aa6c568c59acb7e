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

// ErrBusy is returned at once when QueueLimit calls already wait.
var ErrBusy = errors.New("too many calls waiting for the channel")

// A request's fate, decided once: either a slot claims it for writing, or
// its caller abandons it first. Whoever loses the race knows which it was,
// so a caller that gave up before its request was written is told "not
// sent", never "outcome unknown".
const (
	reqWaiting int32 = iota
	reqClaimed
	reqAbandoned
)

type request struct {
	ctx     context.Context // the caller's
	op      uint16
	payload []byte
	refresh bool        // a hello sent to refresh the op list
	done    chan result // buffered: the loop never blocks on a caller
	fate    atomic.Int32
}

// claim is called by a slot before writing the request; false means the
// caller is gone and the request must not be sent.
func (r *request) claim() bool {
	return r.ctx.Err() == nil && r.fate.CompareAndSwap(reqWaiting, reqClaimed)
}

// abandon is called by a caller whose context ended; true means no slot
// will write the request.
func (r *request) abandon() bool { return r.fate.CompareAndSwap(reqWaiting, reqAbandoned) }

type result struct {
	payload []byte
	err     error
}

// builtinIdempotent are the built-ins that only read: sending one twice
// does no harm. hello is not listed: the supervisor sends it itself.
var builtinIdempotent = map[uint16]bool{
	protocol.OpPing: true, protocol.OpN: true, protocol.OpSetting: true,
	protocol.OpWAL: true, protocol.OpPage: true,
}

// idempotent reports whether op may be sent again after an unknown
// outcome: a read-only built-in, or an op configured as idempotent (by name
// or number; names are resolved with the primary's hello).
func (s *Supervisor) idempotent(op uint16) bool {
	if builtinIdempotent[op] {
		return true
	}
	if s.cfg.IdempotentOps == nil {
		return false
	}
	ops := s.Ops()
	for _, ref := range s.cfg.IdempotentOps() {
		if o, err := protocol.ResolveOp(ref, ops); err == nil && o == op && !protocol.IsBuiltin(o) {
			return true
		}
	}
	return false
}

// Call sends a request through the channel and waits for its reply until ctx
// ends. While no session is ready the call waits (in arrival order) for one,
// or fails at once with FailFast. Errors: *protocol.ServerError (the primary
// answered with an error), *CallError (OutcomeUnknown tells whether the
// request may have run), ErrUnavailable wrapped with the last connection
// error, ErrStopped.
//
// A request that a session found dead before writing it was not sent: it
// goes to the next session. A request whose outcome is unknown is never
// sent again, unless its op is idempotent: then it is sent once more, on the
// next session, within the caller's deadline.
func (s *Supervisor) Call(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	return s.call(ctx, op, payload, false)
}

func (s *Supervisor) call(ctx context.Context, op uint16, payload []byte, refresh bool) ([]byte, error) {
	retried := false
	for {
		out, err := s.callOnce(ctx, op, payload, refresh)
		var ce *CallError
		if err == nil || !errors.As(err, &ce) {
			return out, err
		}
		if ce.notSent && ctx.Err() != nil {
			// Never written: the caller may safely try again.
			return nil, s.unavailable(fmt.Errorf("%w (the session had died: %w)", ctx.Err(), ce.Err))
		}
		if ctx.Err() != nil {
			return out, err
		}
		if ce.notSent {
			s.log.Debug("the session was found dead before the request was written: sending it on the next",
				zap.String("op", protocol.OpName(op)), zap.Error(err))
			continue
		}
		if ce.OutcomeUnknown() && !retried && s.idempotent(op) {
			retried = true
			s.log.Info("retrying an idempotent request whose outcome is unknown",
				zap.String("op", protocol.OpName(op)), zap.Error(err))
			continue
		}
		return out, err
	}
}

func (s *Supervisor) callOnce(ctx context.Context, op uint16, payload []byte, refresh bool) ([]byte, error) {
	if err := s.refusal(); err != nil {
		return nil, err
	}
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
	r := &request{ctx: ctx, op: op, payload: payload, refresh: refresh, done: make(chan result, 1)}
	select {
	case s.requests <- r:
		queued = false
		s.waiting.Add(-1)
	case <-s.refusedSignal():
		return nil, s.lastRefusal()
	case <-ctx.Done():
		return nil, s.unavailable(ctx.Err())
	case <-s.stopped:
		return nil, ErrStopped
	}
	select {
	case res := <-r.done:
		return res.payload, res.err
	case <-ctx.Done():
		// A reply that is already here wins over the deadline.
		select {
		case res := <-r.done:
			return res.payload, res.err
		default:
		}
		if r.abandon() {
			return nil, s.unavailable(ctx.Err())
		}
		// The request is on the wire: its reply will be read and dropped by
		// the loop, so the session stays in step.
		return nil, &CallError{Op: protocol.OpName(op), Err: ctx.Err(), sent: true}
	}
}

// ResolveOp turns an op reference (a built-in's name, a number, or the name
// of a handler registered on the primary) into its code. A name the last
// hello did not offer makes a ready session say hello again first, so that
// handlers registered after the session started can be called by name.
func (s *Supervisor) ResolveOp(ctx context.Context, ref string) (uint16, error) {
	op, err := protocol.ResolveOp(ref, s.Ops())
	if err == nil {
		return op, nil
	}
	if s.State() != StateReady || !s.mayRefresh() {
		return 0, err
	}
	if _, herr := s.call(ctx, protocol.OpHello, nil, true); herr != nil {
		s.log.Debug("refreshing the op list", zap.Error(herr))
		return 0, err
	}
	return protocol.ResolveOp(ref, s.Ops())
}

// refreshInterval spaces op-list refreshes: a caller repeating an unknown
// name must not turn every call into a hello.
const refreshInterval = 250 * time.Millisecond

func (s *Supervisor) mayRefresh() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.lastRefresh) >= refreshInterval {
		s.lastRefresh = now
		return true
	}
	return false
}

// Ops are the operations the primary offered in the latest hello.
func (s *Supervisor) Ops() []protocol.OpInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops
}

func isServerError(err error) bool {
	var se *protocol.ServerError
	return errors.As(err, &se)
}
