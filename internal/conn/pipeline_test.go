package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// stash is a handler that holds requests without answering, so that a test
// sees how many are in flight at once and answers them when it likes.
type stash struct {
	mu   sync.Mutex
	reqs []conntest.Request
	conn *conntest.Conn
	// first: requests of the first connection only are held; later
	// connections are answered at once (echo).
	first *conntest.Conn
}

func (s *stash) handle(c *conntest.Conn, req conntest.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = c
	}
	if c != s.first {
		return c.Reply(req, req.Payload)
	}
	s.conn = c
	s.reqs = append(s.reqs, req)
	return true
}

func (s *stash) held() []conntest.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]conntest.Request(nil), s.reqs...)
}

type callResult struct {
	payload string
	out     []byte
	err     error
}

// callMany starts n callers of op, each with its own payload, and returns
// a func that waits for their results, in caller order.
func callMany(t *testing.T, sup *Supervisor, op uint16, n int) func() []callResult {
	res := make([]callResult, n)
	var wg sync.WaitGroup
	for i := range res {
		res[i].payload = fmt.Sprintf("caller-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].out, res[i].err = sup.Call(ctx5(t), op, []byte(res[i].payload))
		}()
	}
	return func() []callResult { wg.Wait(); return res }
}

// claim: protocol.pipeline-fifo
func TestPipelineEightInFlightAnsweredInOrder(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 8)
	// All eight reach the primary before any is answered: in flight at once.
	waitFor(t, "eight requests in flight", func() bool { return len(st.held()) == 8 })
	if n := sup.Status().InFlight; n != 8 {
		t.Fatalf("status says %d in flight, want 8", n)
	}
	for _, req := range st.held() {
		st.conn.Reply(req, req.Payload) // in the order read, as the server does
	}
	for _, r := range wait() {
		if r.err != nil || string(r.out) != r.payload {
			t.Fatalf("%s got %q, %v; want its own payload", r.payload, r.out, r.err)
		}
	}
	if p.Accepted() != 1 {
		t.Fatalf("%d connections, want 1", p.Accepted())
	}
}

// A pipelined session keeps at most channel.max_in_flight requests in
// flight, 16 when none is configured; the others wait, and each answer
// lets one waiting caller in.
// claim: protocol.pipeline-max-in-flight
func TestPipelineBoundedByMaxInFlight(t *testing.T) {
	for _, tc := range []struct{ configured, bound int }{{3, 3}, {0, 16}} {
		t.Run(fmt.Sprintf("max_in_flight %d", tc.configured), func(t *testing.T) {
			p := conntest.Start(t)
			st := &stash{}
			p.Handle(opEcho, st.handle)
			cfg := fastConfig(p)
			cfg.MaxInFlight = tc.configured
			sup := run(t, cfg)
			waitReady(t, sup)

			calls := tc.bound + 4
			wait := callMany(t, sup, opEcho, calls)
			waitFor(t, fmt.Sprintf("%d in flight and 4 waiting", tc.bound), func() bool {
				s := sup.Status()
				return s.InFlight == tc.bound && s.Waiting == 4
			})
			if n := len(st.held()); n != tc.bound {
				t.Fatalf("the primary read %d requests, want %d", n, tc.bound)
			}
			for answered := 0; answered < calls; answered++ {
				waitFor(t, "the next request", func() bool { return len(st.held()) > answered })
				req := st.held()[answered]
				st.conn.Reply(req, req.Payload)
			}
			for _, r := range wait() {
				if r.err != nil || string(r.out) != r.payload {
					t.Fatalf("%s got %q, %v", r.payload, r.out, r.err)
				}
			}
		})
	}
}

// A reply out of order ends the session: no caller gets another's reply,
// and every request in flight has an unknown outcome.
// claim: protocol.pipeline-wrong-id
func TestPipelineReplyOutOfOrderEndsSession(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	rec := &recorder{}
	cfg := fastConfig(p)
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 3)
	waitFor(t, "three in flight", func() bool { return len(st.held()) == 3 })
	held := st.held()
	st.conn.Reply(held[1], held[1].Payload) // the second before the first
	for _, r := range wait() {
		wantUnknown(t, r.err)
		var pe *ProtocolError
		if !errors.As(r.err, &pe) {
			t.Fatalf("%s: want a protocol error, got %v", r.payload, r.err)
		}
	}
	waitFor(t, "the session to end as a protocol error", func() bool {
		got := rec.reasons()
		return len(got) > 0 && got[0] == ReasonProtocol
	})
}

// The session dies mid-pipeline without a goodbye (a crash): requests
// written are unknown; requests not yet written go to the next session.
// claim: protocol.pipeline-death
func TestPipelineDeathWithoutGoodbye(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	cfg := fastConfig(p)
	cfg.MaxInFlight = 2
	sup := run(t, cfg)
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 4)
	waitFor(t, "two in flight, two waiting", func() bool {
		s := sup.Status()
		return len(st.held()) == 2 && s.Waiting == 2
	})
	written := map[string]bool{}
	for _, req := range st.held() {
		written[string(req.Payload)] = true
	}
	p.KillAll()
	unknown, ok := 0, 0
	for _, r := range wait() {
		if written[r.payload] {
			wantUnknown(t, r.err)
			unknown++
			continue
		}
		if r.err != nil || string(r.out) != r.payload {
			t.Fatalf("%s (never written) got %q, %v; want it served by the next session", r.payload, r.out, r.err)
		}
		ok++
	}
	if unknown != 2 || ok != 2 {
		t.Fatalf("%d unknown, %d ok; want 2 and 2", unknown, ok)
	}
}

// A goodbye names the last request the server read: those after it are
// not sent (and go to the next session), the one it read is unknown, the
// ones answered before keep their replies.
// claim: protocol.goodbye
// claim: liveness.goodbye-not-sent
func TestPipelineGoodbye(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 4)
	waitFor(t, "four in flight", func() bool { return len(st.held()) == 4 })
	held := st.held()
	st.conn.Reply(held[0], held[0].Payload)
	// As if the server had read only the second when it was terminated.
	st.conn.Send(conntest.AppendGoodbye(nil, held[1].ID, pgerrcode.AdminShutdown, "terminating connection due to administrator command"))
	st.conn.Fatal(pgerrcode.AdminShutdown, "terminating connection due to administrator command")

	byPayload := map[string]callResult{}
	for _, r := range wait() {
		byPayload[r.payload] = r
	}
	if r := byPayload[string(held[0].Payload)]; r.err != nil || string(r.out) != r.payload {
		t.Fatalf("answered before the goodbye: %q, %v", r.out, r.err)
	}
	r := byPayload[string(held[1].Payload)]
	wantUnknown(t, r.err)
	var ge *GoodbyeError
	if !errors.As(r.err, &ge) || ge.Goodbye.LastID != held[1].ID || ReasonOf(r.err) != ReasonServerClosed {
		t.Fatalf("the request the server read: want its goodbye error, got %v", r.err)
	}
	for _, req := range held[2:] {
		r := byPayload[string(req.Payload)]
		if r.err != nil || string(r.out) != r.payload {
			t.Fatalf("%s, never read by the first session: %q, %v; want it served by the next", r.payload, r.out, r.err)
		}
	}
	if p.Accepted() != 2 {
		t.Fatalf("%d connections, want 2", p.Accepted())
	}
}

// heldObserver holds the session's reader in the first CallFinished until
// released, so that a test can make something happen in between.
type heldObserver struct {
	nopObserver
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (o *heldObserver) CallFinished(uint16, time.Duration, error) {
	o.once.Do(func() {
		close(o.entered)
		<-o.release
	})
}

// A backend says goodbye and is gone (its socket reset: requests were
// unread in it) while a request is being written to it: the write fails
// before the reader has come to the goodbye. The goodbye still decides:
// the requests the server never read are not sent, and go to the next
// session, rather than unknown. (Seen in the end-to-end run of eight
// pipelined writers through faults: one fault left two requests unknown
// that had never reached the primary.)
// claim: liveness.goodbye-not-sent
func TestPipelineGoodbyeWinsOverAFailedWrite(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	obs := &heldObserver{entered: make(chan struct{}), release: make(chan struct{})}
	cfg := fastConfig(p)
	cfg.Observer = obs
	sup := run(t, cfg)
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 4)
	waitFor(t, "four in flight", func() bool { return len(st.held()) == 4 })
	held := st.held()
	st.conn.Reply(held[0], held[0].Payload)
	<-obs.entered // the reader is held, the goodbye will wait in the socket
	st.conn.Send(conntest.AppendGoodbye(nil, held[1].ID, pgerrcode.AdminShutdown, "terminating connection due to administrator command"))
	st.conn.Abort()
	time.Sleep(100 * time.Millisecond) // the reset reaches the client
	fifth := make(chan callResult, 1)
	go func() {
		out, err := sup.Call(ctx5(t), opEcho, []byte("fifth"))
		fifth <- callResult{payload: "fifth", out: out, err: err}
	}()
	time.Sleep(100 * time.Millisecond) // its write has failed by now
	close(obs.release)

	byPayload := map[string]callResult{"fifth": <-fifth}
	for _, r := range wait() {
		byPayload[r.payload] = r
	}
	if r := byPayload[string(held[0].Payload)]; r.err != nil || string(r.out) != r.payload {
		t.Fatalf("answered before the goodbye: %q, %v", r.out, r.err)
	}
	var ge *GoodbyeError
	if r := byPayload[string(held[1].Payload)]; !errors.As(r.err, &ge) || ge.Goodbye.LastID != held[1].ID {
		t.Fatalf("the request the server read: want its goodbye error, got %v", r.err)
	}
	for _, name := range []string{string(held[2].Payload), string(held[3].Payload), "fifth"} {
		if r := byPayload[name]; r.err != nil || string(r.out) != name {
			t.Errorf("%s, never read by the first session: %q, %v; want it served by the next", name, r.out, r.err)
		}
	}
}

// A goodbye on an idle session (pg_terminate_backend while nothing is in
// flight): the next call goes to the next session, never reported unknown.
func TestPipelineGoodbyeWhileIdle(t *testing.T) {
	p := conntest.Start(t)
	p.Handle(opEcho, echo)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	if out, err := sup.Call(ctx5(t), opEcho, []byte("a")); err != nil || string(out) != "a" {
		t.Fatalf("first call: %q, %v", out, err)
	}
	p.TerminateAll()
	if out, err := sup.Call(ctx5(t), opEcho, []byte("b")); err != nil || string(out) != "b" {
		t.Fatalf("call after the goodbye: %q, %v", out, err)
	}
	if n := p.Received(opEcho); n != 2 {
		t.Fatalf("the primary saw %d echoes, want 2", n)
	}
}

// The oldest request's reply timeout ends the session and fails every
// request in flight as unknown.
// claim: protocol.pipeline-reply-timeout
// claim: liveness.reply-timeout-ends-session
func TestPipelineReplyTimeoutOfOldest(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	rec := &recorder{}
	cfg := fastConfig(p)
	cfg.ReplyTimeout = 200 * time.Millisecond
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)
	wait := callMany(t, sup, opEcho, 3)
	for _, r := range wait() {
		wantUnknown(t, r.err)
		var ce *CallError
		if errors.As(r.err, &ce); !ce.Timeout() && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("%s: want a timeout, got %v", r.payload, r.err)
		}
	}
	waitFor(t, "reply_timeout", func() bool {
		got := rec.reasons()
		return len(got) > 0 && got[0] == ReasonReplyTimeout
	})
}

// An extension that speaks only version 1, or a daemon that offers only
// version 1, gives a session that is not pipelined.
// claim: protocol.pipeline-negotiated
func TestPipelineNegotiatedInHello(t *testing.T) {
	for _, tc := range []struct {
		name      string
		server    uint16
		offer     uint16
		pipelined bool
	}{
		{"both speak 2", protocol.Version2, 0, true},
		{"older extension", protocol.Version1, 0, false},
		{"daemon offers 1", protocol.Version2, protocol.Version1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := conntest.Start(t)
			p.SetMaxVersion(tc.server)
			sess, err := Dial(ctx5(t), DialOptions{Config: p.Config(), ClientName: "test", MaxVersion: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sess.Close(ctx5(t)) }()
			if sess.Pipelined() != tc.pipelined {
				t.Fatalf("pipelined = %v with hello version %d", sess.Pipelined(), sess.Hello().Version)
			}
		})
	}
}

// With a version-1 session the supervisor keeps one request in flight.
func TestVersion1OneAtATime(t *testing.T) {
	p := conntest.Start(t)
	p.SetMaxVersion(protocol.Version1)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	sup := run(t, fastConfig(p))
	waitReady(t, sup)
	wait := callMany(t, sup, opEcho, 3)
	for answered := 0; answered < 3; answered++ {
		waitFor(t, "one in flight, the others waiting", func() bool {
			s := sup.Status()
			return len(st.held()) == answered+1 && s.InFlight == 1 && s.Waiting == 2-answered
		})
		req := st.held()[answered]
		st.conn.Reply(req, req.Payload)
	}
	for _, r := range wait() {
		if r.err != nil || string(r.out) != r.payload {
			t.Fatalf("%s got %q, %v", r.payload, r.out, r.err)
		}
	}
}

// beats counts the heartbeats the supervisor reports as answered.
type beats struct {
	nopObserver
	n atomic.Int32
}

func (b *beats) Heartbeat(time.Duration, protocol.PingReply) { b.n.Add(1) }

// The heartbeat ping travels in the same pipeline as the callers'
// requests: it is written while they are in flight, behind them, and its
// reply is matched in order like theirs.
// claim: protocol.pipeline-heartbeat
func TestPipelineHeartbeatInTheSamePipeline(t *testing.T) {
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	p.Handle(protocol.OpPing, st.handle)
	obs := &beats{}
	cfg := fastConfig(p)
	cfg.Observer = obs
	cfg.HeartbeatInterval = 20 * time.Millisecond
	sup := run(t, cfg)
	waitReady(t, sup)

	wait := callMany(t, sup, opEcho, 2)
	// The callers' two requests are held unanswered; a ping still comes.
	waitFor(t, "a ping behind two requests in flight", func() bool {
		held := st.held()
		for i, req := range held {
			if req.Op == protocol.OpPing {
				return i >= 2
			}
		}
		return false
	})
	held := st.held()
	if held[0].Op != opEcho || held[1].Op != opEcho {
		t.Fatalf("first two held requests: ops %#x %#x, want the callers'", held[0].Op, held[1].Op)
	}
	for _, req := range held {
		if req.Op == protocol.OpPing {
			st.conn.Reply(req, conntest.AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), Timeline: 1}))
		} else {
			st.conn.Reply(req, req.Payload)
		}
	}
	for _, r := range wait() {
		if r.err != nil || string(r.out) != r.payload {
			t.Fatalf("%s got %q, %v", r.payload, r.out, r.err)
		}
	}
	waitFor(t, "the heartbeat's reply", func() bool { return obs.n.Load() > 0 })
	if p.Accepted() != 1 {
		t.Fatalf("%d connections, want 1", p.Accepted())
	}
}

// Each request's reply timeout counts from its own write: a request
// written a while after an older one (answered in time) still gets the
// whole reply timeout before it ends the session. The bound checked is a
// lower one (a timer never fires early), so a slow machine cannot fail it.
// claim: protocol.pipeline-reply-timeout
func TestPipelineReplyTimeoutCountsFromEachWrite(t *testing.T) {
	const timeout = 2 * time.Second
	p := conntest.Start(t)
	st := &stash{}
	p.Handle(opEcho, st.handle)
	rec := &recorder{}
	cfg := fastConfig(p)
	cfg.ReplyTimeout = timeout
	cfg.Observer = rec
	sup := run(t, cfg)
	waitReady(t, sup)

	first := make(chan callResult, 1)
	go func() {
		out, err := sup.Call(ctx5(t), opEcho, []byte("first"))
		first <- callResult{payload: "first", out: out, err: err}
	}()
	waitFor(t, "the first request", func() bool { return len(st.held()) == 1 })
	time.Sleep(timeout / 2)
	secondStart := time.Now()
	second := make(chan callResult, 1)
	go func() {
		out, err := sup.Call(context.Background(), opEcho, []byte("second"))
		second <- callResult{payload: "second", out: out, err: err}
	}()
	waitFor(t, "the second request", func() bool { return len(st.held()) == 2 })
	held := st.held()
	st.conn.Reply(held[0], held[0].Payload) // in time: within the first's timeout
	if r := <-first; r.err != nil || string(r.out) != "first" {
		t.Fatalf("first: %q, %v (answered about %v after its write, within %v)", r.out, r.err, timeout/2, timeout)
	}
	r := <-second
	waited := time.Since(secondStart)
	wantUnknown(t, r.err)
	if waited < timeout {
		t.Fatalf("the second request failed %v after its write, before its own reply timeout of %v", waited, timeout)
	}
	waitFor(t, "reply_timeout", func() bool {
		got := rec.reasons()
		return len(got) > 0 && got[0] == ReasonReplyTimeout
	})
}
