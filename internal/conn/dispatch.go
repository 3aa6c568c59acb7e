package conn

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// ErrBusy is returned at once when QueueLimit calls already wait.
var ErrBusy = errors.New("too many calls waiting for the channel")

type request struct {
	op      uint16
	payload []byte
	done    chan result // buffered: the loop never blocks on a caller
}

type result struct {
	payload []byte
	err     error
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

func isServerError(err error) bool {
	var se *protocol.ServerError
	return errors.As(err, &se)
}
