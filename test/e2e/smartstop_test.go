package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// pg_ctl stop -m smart waits for the channel like for any session: the
// server refuses new connections but the channel goes on serving, and the
// stop completes only once the channel has ended.
// claim: readme.stop-smart-waits
// claim: extension.stop-smart-waits
func TestSmartShutdownWaitsForTheChannel(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	pc := connectTo(t, e, "")
	ch := enter(t, pc)
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping before the stop")

	stopped := make(chan error, 1)
	go func() { stopped <- e.StopServer(context.Background(), "primary", "smart") }()
	// Smart shutdown has begun once new sessions are refused.
	waitFor(t, 30*time.Second, "new connections refused", func() bool {
		out, err := e.PrimarySQL(ctxT(t, 10*time.Second), "SELECT 1")
		return err != nil && strings.Contains(out+err.Error(), "shutting down")
	})
	for id := uint32(2); id < 12; id++ {
		wantOK(t, ch.call(protocol.OpN, id, protocol.AppendN(nil, [3]int32{1, 2, 3})), "N during the smart shutdown")
	}
	select {
	case err := <-stopped:
		t.Fatalf("pg_ctl stop -m smart returned while the channel was open: %v", err)
	default:
	}
	if _, err := e.PostmasterPID("primary"); err != nil {
		t.Fatalf("the postmaster is gone while the channel is open: %v", err)
	}
	ch.finish()
	pc.Close(ctxT(t, 10*time.Second))
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("pg_ctl stop -m smart did not return after the channel ended")
	}
	if _, err := e.PostmasterPID("primary"); err == nil {
		t.Fatal("postmaster.pid still there after the smart stop")
	}
}
