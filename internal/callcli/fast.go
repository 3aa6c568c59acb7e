package callcli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// One call through the daemon's fast path (docs/api.md, "The fast path"),
// made with blocking system calls on one Unix socket: connect, preamble,
// one request, its reply. Neither the net package's poller nor the Go
// client (whose HTTP fallback links net/http and TLS) is used: they cost a
// process that makes one call more than the call itself.

// ErrDaemonUnreachable is wrapped by the errors of a call that wrote
// nothing to the daemon: it did not run. The text is the Go client's.
var ErrDaemonUnreachable = errors.New("standbyd not reachable")

// ErrOutcomeUnknown is wrapped by the errors of a call whose request was
// handed to the daemon (its whole frame written) and that got no complete
// answer: it may have run. The text is the Go client's.
var ErrOutcomeUnknown = errors.New("request handed to standbyd, no answer")

// DaemonError is the daemon's error answer to a call.
type DaemonError struct {
	Kind     string
	Message  string
	SQLState string // "" when none
	// Detail and Hint are the primary's DETAIL and HINT of a primary_error.
	Detail, Hint string
}

// Error is formatted as the Go client formats its errors.
func (e *DaemonError) Error() string {
	if e.SQLState != "" {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Kind, e.Message, e.SQLState)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

// answerGrace is how long past the call's deadline it waits for the
// daemon's answer: the daemon gives up at the deadline and then says why
// (channel unavailable, outcome unknown), which is worth more than a
// timeout of our own. The Go client waits as long.
const answerGrace = 2 * time.Second

// maxReplyBody bounds what a reply may make this process allocate.
const maxReplyBody = 64 << 20

// fastConn is a connected socket in blocking mode whose reads and writes
// time out (SO_RCVTIMEO, SO_SNDTIMEO): each read or write waits at most
// until the time setTimeout was given when it was set.
type fastConn struct {
	fd int
}

func (c *fastConn) setTimeout(until time.Time) error {
	tv := syscall.NsecToTimeval(max(time.Until(until), time.Millisecond).Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
	}
	return nil
}

// viaFastPath makes one call; op is a name or a number, as given.
func viaFastPath(ctx context.Context, socket, op string, payload []byte) ([]byte, error) {
	req := fastproto.Request{ID: 1, Payload: payload}
	if v, err := strconv.ParseUint(op, 0, 16); err == nil && op != "" && op[0] >= '0' && op[0] <= '9' {
		req.Op = uint16(v)
	} else {
		if op == "" || len(op) > fastproto.MaxNameSize {
			return nil, &DaemonError{Kind: fastproto.ErrorKindBadRequest,
				Message: fmt.Sprintf("op name of %d bytes: give 1 to %d", len(op), fastproto.MaxNameSize)}
		}
		req.Name = op
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(24 * time.Hour)
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil, fmt.Errorf("api call: %w: %w", ErrDaemonUnreachable, context.DeadlineExceeded)
	}
	req.TimeoutMS = uint32(min(max(d.Milliseconds(), 1), 1<<31))
	unreachable := func(err error) error { return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, socket, err) }

	// The preamble is answered at once: it gets the deadline, the reply
	// the deadline and the grace.
	c, err := dialFast(socket, deadline)
	if err != nil {
		return nil, unreachable(err)
	}
	defer c.close()
	pre, err := fastproto.Handshake(c, fastproto.MaxVersion) // checks the version too
	if err != nil {
		if errors.Is(err, fastproto.ErrNotFastPath) {
			err = fmt.Errorf("%w (the daemon does not speak the fast path: is it an older standbyd?)", err)
		}
		return nil, unreachable(err)
	}
	if size := fastproto.RequestSize(req.Name, len(req.Payload)); size > int(pre.MaxFrame) {
		return nil, &DaemonError{Kind: fastproto.ErrorKindPayloadTooLarge,
			Message: fmt.Sprintf("request frame of %d bytes is larger than the daemon's maximum of %d", size, pre.MaxFrame)}
	}
	if err := c.setTimeout(deadline.Add(answerGrace)); err != nil {
		return nil, unreachable(err)
	}
	frame := fastproto.AppendRequest(nil, req)
	if n, err := c.Write(frame); err != nil {
		// A frame cut short is never served: the daemon reads whole frames.
		return nil, unreachable(fmt.Errorf("writing the request (%d of %d bytes written): %w", n, len(frame), err))
	}
	reply, err := c.readReply(pre.Version, req.ID)
	if err != nil {
		var de *DaemonError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, fmt.Errorf("api call: %w at %s: %w", ErrOutcomeUnknown, socket, err)
	}
	return reply, nil
}

func dialFast(socket string, deadline time.Time) (*fastConn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c := &fastConn{fd: fd}
	if err := c.setTimeout(deadline); err != nil {
		c.close()
		return nil, err
	}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: socket})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("connect: %w", timedOut(err))
	}
	return c, nil
}

func (c *fastConn) close() { _ = syscall.Close(c.fd) }

// timedOut names the socket timeout for what it is.
func timedOut(err error) error {
	if err == syscall.EAGAIN {
		return fmt.Errorf("no answer by the deadline: %w", context.DeadlineExceeded)
	}
	return err
}

// Read reads what is there, at least one byte; EOF is io.EOF's text.
func (c *fastConn) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, timedOut(err)
		}
		if n == 0 && len(b) > 0 {
			return 0, errEOF
		}
		return n, nil
	}
}

// errEOF: the daemon closed the connection.
var errEOF = errors.New("the daemon closed the connection")

// Write writes all of b.
func (c *fastConn) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := syscall.Write(c.fd, b[done:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, timedOut(err)
		}
		done += n
	}
	return done, nil
}

// readReply reads the reply to request id: its payload, or the daemon's
// error as a *DaemonError.
func (c *fastConn) readReply(version byte, id uint32) ([]byte, error) {
	h, body, err := fastproto.ReadFrame(c, maxReplyBody)
	if err != nil {
		return nil, err
	}
	if h.Kind != fastproto.KindReply {
		return nil, fmt.Errorf("the daemon sent a frame of kind %#02x", h.Kind)
	}
	if h.ID != id {
		return nil, fmt.Errorf("the daemon answered request %d, not %d", h.ID, id)
	}
	switch h.Second {
	case fastproto.StatusOK:
		return body, nil
	case fastproto.StatusError:
		e, err := fastproto.ParseErrorV(version, body)
		if err != nil {
			return nil, err
		}
		return nil, &DaemonError{Kind: e.Kind, Message: e.Message, SQLState: e.SQLState, Detail: e.Detail, Hint: e.Hint}
	}
	return nil, fmt.Errorf("the daemon sent a reply of status %d", h.Second)
}
