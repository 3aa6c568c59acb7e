package conn

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/protocol"
)

// ErrSessionClosed is returned by Session.Call on a session that has ended.
var ErrSessionClosed = errors.New("channel session is closed")

// ErrUnavailable is wrapped by errors of calls that could not be sent because
// no channel session was ready before the caller's deadline.
var ErrUnavailable = errors.New("channel unavailable")

// CallError is a failure of one request on the channel other than an error
// reply from the primary (those are *protocol.ServerError).
//
// OutcomeUnknown tells whether the request had been sent: the primary may or
// may not have acted on it, and nobody knows the reply. Such a request must
// not be re-sent silently on a new session.
type CallError struct {
	Op   string // op name, for messages
	Err  error  // what went wrong
	sent bool   // the request left this process
	// notSent: the session was found dead before the request was written;
	// the supervisor sends it on the next session.
	notSent bool
}

func (e *CallError) Error() string {
	if e.notSent {
		return fmt.Sprintf("%s: not sent: %v", e.Op, e.Err)
	}
	if e.sent {
		return fmt.Sprintf("%s: outcome unknown: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// OutcomeUnknown reports whether the request was sent without a reply being
// received: the primary may have executed it.
func (e *CallError) OutcomeUnknown() bool { return e.sent }

// NotSent reports whether the session was found dead before the request
// was written: the primary never saw it, and it may be sent elsewhere.
func (e *CallError) NotSent() bool { return e.notSent }

// Timeout reports whether the call ended because a deadline passed.
func (e *CallError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// EnterError is returned by Dial when the session connected but the primary
// refused to enter the channel (extension missing, EXECUTE not granted, ...).
type EnterError struct {
	Err error
}

func (e *EnterError) Error() string {
	return fmt.Sprintf("entering the channel: %v", e.Err)
}

func (e *EnterError) Unwrap() error { return e.Err }

// IdentityError means the upstream belongs to another cluster than the
// standby: its system identifier differs. A configuration error.
type IdentityError struct {
	Want, Got uint64
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("the upstream is another cluster: its system identifier is %d, the standby's is %d (primary_conninfo points at the wrong server?)", e.Got, e.Want)
}

// ProtocolError means the primary sent something the channel protocol does
// not allow (a reply to the wrong request, a malformed frame). The session
// that saw it is closed.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "channel protocol error: " + e.Msg }

// GoodbyeError means the server said goodbye (protocol version 2): its
// backend is ending, and requests after Goodbye.LastID were never read.
// It unwraps to the FATAL the goodbye announces, so that it classifies as
// the server closing the session.
type GoodbyeError struct {
	Goodbye protocol.Goodbye
}

func (e *GoodbyeError) Error() string {
	return fmt.Sprintf("the primary said goodbye after request %d: %s %s", e.Goodbye.LastID, e.Goodbye.SQLState, e.Goodbye.Message)
}

func (e *GoodbyeError) Unwrap() error {
	return &pgconn.PgError{Severity: "FATAL", Code: e.Goodbye.SQLState, Message: e.Goodbye.Message}
}
