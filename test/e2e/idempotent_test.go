package e2e

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// A request whose session breaks before the reply (its backend terminated
// mid-call) has an unknown outcome and is not sent again, unless its op is
// listed in channel.idempotent_ops: then it is sent again on the next
// session, within the caller's deadline, and succeeds.
// claim: liveness.idempotent-ops-resent
func TestIdempotentOpsAreResentOthersNot(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	for _, tc := range []struct {
		name, extra string
		resent      bool
	}{
		{"not listed", "", false},
		{"listed", "  idempotent_ops: [nap]\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, tc.extra)
			d.waitReady(30 * time.Second)
			pid := d.status(context.Background()).ChannelBackendID
			done := make(chan error, 1)
			go func() {
				c := client.New(d.socket)
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := c.Call(ctx, "nap", []byte("1"))
				done <- err
			}()
			waitWaitEvent(t, pid, "PgSleep")
			primarySQL(t, "SELECT pg_terminate_backend("+strconv.Itoa(int(pid))+")")
			err := <-done
			var ae *client.Error
			switch {
			case tc.resent && err != nil:
				t.Fatalf("an idempotent op whose session broke: %v, want it sent again and answered", err)
			case !tc.resent && (!errors.As(err, &ae) || ae.Kind != client.KindOutcomeUnknown):
				t.Fatalf("a non-idempotent op whose session broke: %v, want outcome_unknown", err)
			}
			if now := d.status(context.Background()).ChannelBackendID; now == pid {
				t.Fatal("the session was not replaced after its backend was terminated")
			}
		})
	}
}
