package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
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
	// No deadline from the caller: no timeout parameter, the default holds.
	if _, err := c.Call(context.Background(), "nap", []byte("0.6")); err == nil {
		t.Fatal("a 0.6s nap under the 300ms default succeeded")
	}
	d.waitReady(30 * time.Second)
	ask5s := func() context.Context { return ctxT(t, 5*time.Second) } // sent as ?timeout=5s
	if _, err := c.Call(ask5s(), "nap", []byte("0.6")); err != nil {
		t.Fatalf("a 0.6s nap asking for 5s (capped at 1s): %v", err)
	}
	if _, err := c.Call(ask5s(), "nap", []byte("1.5")); err == nil {
		t.Fatal("a 1.5s nap asking for 5s succeeded: the 1s cap did not apply")
	}
}
