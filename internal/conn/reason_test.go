package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// The words of "channel lost" and of standbyd_channel_disconnects_total.
// claim: liveness.disconnect-reasons
func TestReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want DisconnectReason
	}{
		{nil, ReasonShutdown},
		{fmt.Errorf("x: %w", ErrStopped), ReasonShutdown},
		{errRestart, ReasonReconnect},
		{fmt.Errorf("heartbeat: %w", &CallError{Op: "ping", Err: context.DeadlineExceeded, sent: true}), ReasonReplyTimeout},
		{&CallError{Op: "N", Err: &pgconn.PgError{Severity: "FATAL", Code: "57P01"}}, ReasonServerClosed},
		{fmt.Errorf("heartbeat: %w", &CallError{Op: "ping", Err: io.ErrUnexpectedEOF, sent: true}), ReasonConnectionLost},
		{&ProtocolError{Msg: "stray reply"}, ReasonProtocol},
		{fmt.Errorf("x: %w", &NotStandbyError{}), ReasonRefused},
		{&StaleUpstreamError{}, ReasonRefused},
		{errors.New("something else"), ReasonConnectionLost},
	} {
		if got := ReasonOf(c.err); got != c.want {
			t.Errorf("ReasonOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
