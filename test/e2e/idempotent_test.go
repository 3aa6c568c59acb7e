package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// A request whose session breaks before the reply (its backend terminated
// mid-call) has an unknown outcome and is not sent again, unless its op is
// listed in channel.idempotent_ops: then it is sent again on the next
// session, within the caller's deadline, and succeeds. standbyd call exits
// 5 for the unknown outcome.
// claim: liveness.idempotent-ops-resent
// claim: api.call-exit-codes
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
			type result struct {
				stderr string
				code   int
			}
			done := make(chan result, 1)
			go func() { // through standbyd call: exit 0, or 5 for an unknown outcome
				_, stderr, code := d.call("--timeout", "20s", "nap", "1")
				done <- result{stderr, code}
			}()
			waitWaitEvent(t, pid, "PgSleep")
			primarySQL(t, "SELECT pg_terminate_backend("+strconv.Itoa(int(pid))+")")
			r := <-done
			switch {
			case tc.resent && r.code != 0:
				t.Fatalf("an idempotent op whose session broke: exit %d %q, want it sent again and answered", r.code, r.stderr)
			case !tc.resent && (r.code != 5 || !strings.Contains(r.stderr, client.KindOutcomeUnknown)):
				t.Fatalf("a non-idempotent op whose session broke: exit %d %q, want 5 and outcome_unknown", r.code, r.stderr)
			}
			if now := d.status(context.Background()).ChannelBackendID; now == pid {
				t.Fatal("the session was not replaced after its backend was terminated")
			}
		})
	}
}
