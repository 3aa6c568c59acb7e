package e2e

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// A call without a timeout gets api.default_call_timeout; one that asks for
// more than api.max_call_timeout gets the cap.
// claim: api.call-timeout-default-and-cap
func TestCallTimeoutDefaultAndCap(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	b := startDaemon(t, "")
	b.waitReady(30 * time.Second)
	cfg := strings.Replace(readFile(t, b.dir+"/standbyd.yaml"), "api:\n", "api:\n  default_call_timeout: 300ms\n  max_call_timeout: 1s\n", 1)
	_ = b.stop()
	if err := os.WriteFile(b.dir+"/standbyd.yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := restartDaemon(t, b)
	d.waitReady(30 * time.Second)
	c := d.client()
	// The Go client calls over the fast path and sends its context's
	// deadline in the request's timeout field (ms); no deadline sends 0.
	// A nap that outlasts the deadline was sent: outcome_unknown.
	outcomeUnknown := func(err error) bool {
		var ae *client.Error
		return errors.As(err, &ae) && ae.Kind == client.KindOutcomeUnknown
	}
	if _, err := c.Call(context.Background(), "nap", []byte("0.6")); !outcomeUnknown(err) {
		t.Fatalf("a 0.6s nap under the 300ms default: %v, want outcome_unknown", err)
	}
	d.waitReady(30 * time.Second)
	ask5s := func() context.Context { return ctxT(t, 5*time.Second) } // a timeout field of about 5000 ms
	if _, err := c.Call(ask5s(), "nap", []byte("0.6")); err != nil {
		t.Fatalf("a 0.6s nap asking for 5s (capped at 1s): %v", err)
	}
	if _, err := c.Call(ask5s(), "nap", []byte("1.5")); !outcomeUnknown(err) {
		t.Fatalf("a 1.5s nap asking for 5s: %v, want outcome_unknown from the 1s cap", err)
	}
}
