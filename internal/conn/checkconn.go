package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// pendingReadTimeout bounds the read of a message found waiting on an idle
// session (a FATAL, a notice): it is already in the socket buffer.
const pendingReadTimeout = 100 * time.Millisecond

// checkConn finds out, without writing, whether an idle session is still
// usable, like pgconn's CheckConn but without its 1ms wait: a peek at the
// socket tells EOF, a reset, or bytes waiting. Bytes on an idle session are
// read: a FATAL (the backend was terminated) or anything but a notice means
// the session is over. A nil error means nothing was seen (a broken path can
// still hide; the reply timeout covers that).
func (s *Session) checkConn() error {
	for i := 0; i < 8; i++ {
		// Beside the socket's deadline, which the last exchange left there
		// and a peek through the poller would fail on: no deadline to clear
		// on every call.
		pending, err := peekBeside(s.netConn)
		if err != nil || !pending {
			return err
		}
		_ = s.netConn.SetWriteDeadline(time.Time{})
		_ = s.netConn.SetReadDeadline(time.Now().Add(pendingReadTimeout))
		msg, err := s.pc.ReceiveMessage(context.Background())
		_ = s.netConn.SetReadDeadline(time.Time{})
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Part of a message, or TLS bytes that carry none: nothing to
			// act on. pgconn keeps the connection and what it read.
			return nil
		}
		if err != nil {
			return fmt.Errorf("the session ended while idle: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
			continue
		case *pgproto3.CopyData:
			if protocol.IsGoodbye(m.Data) {
				// The backend is ending (version 2): nothing was in flight,
				// so nothing is lost; the FATAL follows.
				g, err := protocol.ParseGoodbye(m.Data)
				if err != nil {
					return &ProtocolError{Msg: fmt.Sprintf("malformed goodbye: %v", err)}
				}
				return &GoodbyeError{Goodbye: g}
			}
			return &ProtocolError{Msg: fmt.Sprintf("%d bytes of CopyData while no request was waiting", len(m.Data))}
		default:
			return s.nonCopyMessage(msg)
		}
	}
	return nil
}

// peekBeside reports whether bytes wait on c's socket, or the error (EOF,
// reset) that a read would return, without consuming anything. It does not
// take the socket's read lock (a pipelined session's reader holds it while
// it waits) and ignores the socket's deadlines.
func peekBeside(c any) (bool, error) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var n int
	var perr error
	var buf [1]byte
	look := func(fd uintptr) {
		n, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}
	if err := raw.Control(look); err != nil {
		return false, nil
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN), errors.Is(perr, syscall.EINTR):
		return false, nil
	case perr != nil:
		return false, fmt.Errorf("the connection broke while idle: %w", perr)
	case n == 0:
		return false, fmt.Errorf("the primary closed the connection while idle: %w", io.EOF)
	}
	return true, nil
}
