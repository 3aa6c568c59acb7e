package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// A handler slower than reply_timeout ends on the primary as a clean error
// reply (statement_timeout, rolled back) before the daemon gives up on the
// session, even when the role allows statements far longer.
// claim: liveness.slow-handler-cancelled-on-primary
func TestSlowHandlerEndsBeforeReplyTimeout(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	primarySQL(t, "ALTER ROLE standbyd_repl SET statement_timeout = '60s'")
	t.Cleanup(func() { primarySQL(t, "ALTER ROLE standbyd_repl RESET statement_timeout") })
	d := startDaemon(t, "") // reply_timeout: 2s
	d.waitReady(20 * time.Second)
	lost := d.metricSum("standbyd_channel_disconnects_total")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := d.client().Call(ctx, "nap", []byte("10"))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Kind != client.KindPrimaryError || ce.SQLState != "57014" {
		t.Fatalf("a 10s handler with reply_timeout 2s: %v; want a primary error 57014 (statement timeout)", err)
	}
	if got := d.metricSum("standbyd_channel_disconnects_total"); got != lost {
		t.Fatalf("the session was dropped (%v disconnects, was %v): the daemon gave up before the primary", got, lost)
	}
	if out, err := d.client().Call(ctx, "echo", []byte("after")); err != nil || string(out) != "echo:after" {
		t.Fatalf("the same session after the timeout: %q, %v", out, err)
	}
}
