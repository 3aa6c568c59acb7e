package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// A call made while no session is ready waits for one (within its
// deadline) and is served when the primary comes.
// claim: liveness.call-waits-for-a-session
func TestCallWaitsForASession(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := context.Background()
	if err := e.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, conninfoVia(e.PrimaryPort, passfileFor(t, e)))
	waitFor(t, 10*time.Second, "the daemon to answer", func() bool { return d.state() != "" })
	done := make(chan error, 1)
	go func() {
		c := client.New(d.socket)
		defer c.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := c.Call(cctx, "N", protocol.AppendN(nil, [3]int32{1, 2, 3}))
		if n, perr := protocol.ParseN(out); err == nil && (perr != nil || n != [3]int32{301, 302, 303}) {
			t.Errorf("reply %v %v", n, perr)
		}
		done <- err
	}()
	waitFor(t, 10*time.Second, "the call to wait", func() bool {
		n, _ := d.metric("standbyd_calls_waiting")
		return n == 1
	})
	if err := e.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a call that waited for the primary: %v", err)
	}
}
