package conn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// refusals records the connect failures and session ends.
type refusals struct {
	recorder
	fmu    sync.Mutex
	failed []error
}

func (r *refusals) ConnectFailed(err error, _ ErrorClass) {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	r.failed = append(r.failed, err)
}

func (r *refusals) stale() *StaleUpstreamError {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	for _, err := range r.failed {
		var su *StaleUpstreamError
		if errors.As(err, &su) {
			return su
		}
	}
	return nil
}

// claim: liveness.failover-promoted-refuses
func TestPromotedNodeRefusesAndResumes(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	obs := &refusals{}
	cfg := fastConfig(p)
	cfg.Observer = obs
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 1})
	runSup(t, sup)
	waitReady(t, sup)
	if _, err := sup.Call(ctx5(t), opEcho, []byte("a")); err != nil {
		t.Fatal(err)
	}

	sup.SetLocal(LocalNode{Known: true, Standby: false, Timeline: 1})
	waitFor(t, "the channel to close", func() bool { return sup.State() != StateReady })
	ctx := ctx5(t)
	_, err = sup.Call(ctx, opEcho, []byte("b"))
	var ns *NotStandbyError
	if !errors.As(err, &ns) || !errors.Is(err, ErrNotStandby) || ctx.Err() != nil {
		t.Fatalf("a call on a promoted node: %v (context: %v)", err, ctx.Err())
	}
	if got := p.Received(opEcho); got != 1 {
		t.Fatalf("%d echo requests reached the upstream, want only the one before the promotion", got)
	}
	st := sup.Status()
	if st.State != StateBackingOff || st.LastError != "this node was promoted (timeline 1): standbyd serves only standbys" {
		t.Fatalf("status while refusing: %s %q", st.State, st.LastError)
	}
	waitFor(t, "the refused session's end", func() bool {
		for _, r := range obs.reasons() {
			if r == ReasonRefused {
				return true
			}
		}
		return false
	})
	accepted := p.Accepted()
	// No connection is attempted while the node is not a standby.
	time.Sleep(100 * time.Millisecond)
	if p.Accepted() != accepted {
		t.Fatalf("connections while refusing: %d then %d", accepted, p.Accepted())
	}

	// Demoted again (rewound and restarted as a standby): serving resumes.
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 1})
	waitReady(t, sup)
	if out, err := sup.Call(ctx5(t), opEcho, []byte("c")); err != nil || string(out) != "c" {
		t.Fatalf("after rejoining: %q %v", out, err)
	}
}

// runSup runs an already made supervisor until the end of the test.
func runSup(t *testing.T, sup *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
}

// A call waiting for a session fails as soon as the node is found not to
// be a standby, not at its deadline.
// claim: liveness.failover-waiting-calls-refused
func TestWaitingCallRefusedAtPromotion(t *testing.T) {
	sup, err := NewSupervisor(SupervisorConfig{
		Dial: func(ctx context.Context, _ func()) (*Session, error) {
			return nil, errors.New("connection refused")
		},
		HeartbeatInterval: time.Second, ReplyTimeout: time.Second, ConnectTimeout: time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSup(t, sup)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { _, err := sup.Call(ctx, 'N', nil); res <- err }()
	waitFor(t, "the call to wait", func() bool { return sup.Status().Waiting == 1 })
	sup.SetLocal(LocalNode{Known: true, Timeline: 2})
	err = <-res
	if !errors.Is(err, ErrNotStandby) || ctx.Err() != nil {
		t.Fatalf("the waiting call: %v (context: %v)", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "this node is not a standby (timeline 2)") {
		t.Fatalf("message: %v", err)
	}
}

// claim: liveness.failover-stale-upstream-at-hello
func TestStaleUpstreamRefusedAtHello(t *testing.T) {
	p := conntest.Start(t) // says timeline 1 in hello
	obs := &refusals{}
	cfg := fastConfig(p)
	cfg.Observer = obs
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 2})
	runSup(t, sup)
	waitFor(t, "a refusal", func() bool { return obs.stale() != nil })
	if su := obs.stale(); su.Upstream != 1 || su.Local != 2 || Classify(obs.failed[0]) != ClassConfiguration {
		t.Fatalf("refusal %+v, class %s", su, Classify(obs.failed[0]))
	}
	st := sup.Status()
	if st.State == StateReady || !strings.Contains(st.LastError, "the upstream is on timeline 1, older than this standby's timeline 2: a stale ex-primary") {
		t.Fatalf("status: %s %q", st.State, st.LastError)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := sup.Call(cctx, 'N', protocol.AppendN(nil, [3]int32{})); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a call towards a stale upstream: %v", err)
	}
	if n := p.Received(protocol.OpN); n != 0 {
		t.Fatalf("%d requests reached the stale upstream", n)
	}
}

// A standby that follows a new timeline while its channel's upstream stays
// on the old one: the next heartbeat refuses it. A cascading upstream is
// judged by the timeline it replays.
// claim: liveness.failover-stale-upstream-at-ping
// claim: liveness.failover-cascading-refusal-transient
func TestStaleUpstreamRefusedAtPing(t *testing.T) {
	// A version-2 session reads its pings in the pipeline's reader: the
	// same refusal must come from there.
	for _, v := range []uint16{protocol.Version1, protocol.Version2} {
		t.Run(fmt.Sprintf("version%d", v), func(t *testing.T) { staleUpstreamRefusedAtPing(t, v) })
	}
}

func staleUpstreamRefusedAtPing(t *testing.T, version uint16) {
	p := conntest.Start(t)
	p.Handle(protocol.OpHello, func(c *conntest.Conn, req conntest.Request) bool {
		return c.Reply(req, conntest.AppendHelloReply(nil, protocol.HelloReply{Version: version, InRecovery: true,
			ServerVersionNum: 150020, SystemIdentifier: 7, Timeline: 1, MaxFrameSize: protocol.DefaultMaxFrameSize}))
	})
	p.Handle(protocol.OpPing, func(c *conntest.Conn, req conntest.Request) bool {
		return c.Reply(req, conntest.AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), Timeline: 1, InRecovery: true}))
	})
	obs := &refusals{}
	cfg := fastConfig(p)
	cfg.Observer = obs
	cfg.HeartbeatInterval = 20 * time.Millisecond
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 1})
	runSup(t, sup)
	waitReady(t, sup)
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 2})
	waitFor(t, "the session to end refused", func() bool {
		for _, r := range obs.reasons() {
			if r == ReasonRefused {
				return true
			}
		}
		return false
	})
	obs.mu.Lock()
	var su *StaleUpstreamError
	for _, e := range obs.ended {
		errors.As(e, &su)
	}
	obs.mu.Unlock()
	if su == nil || !su.InRecovery || !strings.Contains(su.Error(), "the upstream (a standby) replays timeline 1, older than this standby's timeline 2") {
		t.Fatalf("session ended with %v", su)
	}
	// Reconnecting meets the same upstream in hello: refused there too,
	// as transient: a cascading upstream may be replaying up to the switch.
	waitFor(t, "the refusal at hello", func() bool { return obs.stale() != nil })
	if sup.State() == StateReady {
		t.Fatal("ready towards a stale upstream")
	}
	obs.fmu.Lock()
	class := Classify(obs.failed[0])
	obs.fmu.Unlock()
	if class != ClassTransient {
		t.Fatalf("a cascading upstream behind the standby classified %s", class)
	}
}

// claim: liveness.failover-unknown-role
func TestUnknownLocalNodeNeverRefuses(t *testing.T) {
	p := conntest.Start(t)
	sup := run(t, fastConfig(p))
	sup.SetLocal(LocalNode{})
	waitReady(t, sup)
	if _, err := sup.Call(ctx5(t), protocol.OpN, protocol.AppendN(nil, [3]int32{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
}

// The status follows the upstream's timeline and role from the pings: a
// cascading upstream (in recovery on timeline 1 at hello) promoted during
// the session shows as a primary on its new timeline without a reconnect,
// the log says "the upstream changed", and requests go on to it. An
// upstream on a newer timeline than this standby's is served.
// claim: liveness.failover-cascading
// claim: liveness.failover-newer-upstream-served
func TestStatusFollowsPings(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(protocol.OpHello, func(c *conntest.Conn, req conntest.Request) bool {
		return c.Reply(req, conntest.AppendHelloReply(nil, protocol.HelloReply{Version: protocol.Version2, InRecovery: true,
			ServerVersionNum: 150020, SystemIdentifier: 7, Timeline: 1, MaxFrameSize: protocol.DefaultMaxFrameSize}))
	})
	var promoted atomic.Bool
	p.Handle(protocol.OpPing, func(c *conntest.Conn, req conntest.Request) bool {
		if promoted.Load() {
			return c.Reply(req, conntest.AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), Timeline: 3}))
		}
		return c.Reply(req, conntest.AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), Timeline: 1, InRecovery: true}))
	})
	p.Handle(opEcho, echo)
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := fastConfig(p)
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.Logger = zap.New(core)
	sup, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup.SetLocal(LocalNode{Known: true, Standby: true, Timeline: 1})
	runSup(t, sup)
	waitFor(t, "a ready session towards the cascading upstream", func() bool {
		st := sup.Status()
		return st.State == StateReady && st.Hello.InRecovery
	})
	promoted.Store(true)
	waitFor(t, "the status to follow the ping", func() bool {
		st := sup.Status()
		return st.State == StateReady && st.Hello.Timeline == 3 && !st.Hello.InRecovery
	})
	if out, err := sup.Call(ctx5(t), opEcho, []byte("after")); err != nil || string(out) != "after" {
		t.Fatalf("a call after the upstream's promotion: %q, %v", out, err)
	}
	if n := p.Accepted(); n != 1 {
		t.Fatalf("%d connections, want the first one only", n)
	}
	changed := logs.FilterMessage("the upstream changed").All()
	if len(changed) != 1 {
		t.Fatalf("%d \"the upstream changed\" lines, want 1", len(changed))
	}
	if m := changed[0].ContextMap(); fmt.Sprint(m["timeline"], m["in_recovery"], m["was_timeline"], m["was_in_recovery"]) != "3 false 1 true" {
		t.Fatalf("the upstream changed: %v", m)
	}
}
