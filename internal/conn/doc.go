// Package conn holds standbyd's channel to the primary: one Session (a
// PostgreSQL connection switched into COPY BOTH by CALL standbyd.serve()),
// and the Supervisor that keeps a session alive and serves calls over it.
//
// # Session
//
// Dial connects with a *pgconn.Config (see internal/conninfo), sends
//
//	CALL standbyd.serve()
//
// in the simple Query protocol (the extended protocol cannot enter the
// channel: the server-side loop would swallow its Sync), waits for
// CopyBothResponse, and exchanges hello (docs/protocol.md), which picks
// protocol version 2 (pipelining, goodbye) or 1 with an older extension.
// Session.Call sends one request frame in one CopyData message and reads
// until its reply:
//
//   - an ok reply returns its payload;
//   - an error reply returns *protocol.ServerError, and the session goes on;
//   - anything else ends the session: an ErrorResponse (the procedure raised
//     an error and left COPY BOTH: CopyData sent after that would be ignored
//     by the server), a FATAL (termination, shutdown), EOF, a deadline, a
//     reply to another request id. The error is a *CallError whose
//     OutcomeUnknown reports that the request was sent and may have run.
//
// Deadlines are applied to the socket directly (SetDeadline plus
// context.AfterFunc for cancellation) rather than through pgconn's context
// watcher: a timed-out read leaves a pgconn connection open, but the session
// treats it as over anyway, since a late reply would otherwise be read as the
// answer to the next request.
//
// Call is not safe for concurrent use and keeps one request in flight; the
// supervisor uses it on version-1 sessions and raw mode. On a version-2
// session the supervisor pipelines instead (pipeline.go): its goroutine
// writes up to MaxInFlight requests straight to the socket, and a reader
// goroutine matches replies, which the server sends in order, to the oldest
// request in flight. When the session dies, a request written and
// unanswered is unknown, unless the server's goodbye frame says it never
// read it; a request not yet written goes to the next session.
// Session.Close ends the channel with CopyDone and waits for the
// server's CopyDone, CommandComplete and ReadyForQuery before Terminate.
//
// # Raw mode
//
// ModeRaw serves primaries patched so that their main loop answers CopyData
// on an idle session: no CALL and no hello, and the original frame layout
// ('N' followed by three int32, answered by three int32).
//
// # Supervisor
//
// The Supervisor runs one slot per session (slot.go: connect, enter, serve,
// close, back off), hands calls to whichever slot is free (dispatch.go:
// arrival order, not-sent versus unknown, the retry policy, op names) and
// reports their state (status.go), as pgxpool keeps a pool of pgconn
// connections. Callers hand requests over an unbuffered channel, so waiting
// callers are served in arrival order and only while a session is ready; a
// call made while the channel is down waits until its own deadline and then
// fails with ErrUnavailable and the last connection error. Each request gets
// ReplyTimeout for its reply regardless of the caller's deadline: a caller
// that gave up does not desynchronise the session, its reply is read and
// dropped. A request found unsendable before writing (the session died while
// idle) goes to the next session. The supervisor pings every
// HeartbeatInterval whatever the traffic; a ping without a reply within
// ReplyTimeout ends the session. Reconnects wait an exponentially growing,
// jittered delay between BackoffMin and BackoffMax, reset only after a
// successful hello, and cut short by Restart.
package conn
