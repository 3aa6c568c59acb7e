package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// napAll makes n callers call nap at once and returns a func that waits
// for them and fails t unless each got its reply.
func napAll(t *testing.T, d *daemon, n int, secs string) func() {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(d.socket)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, errs[i] = c.Call(ctx, "nap", []byte(secs))
		}()
	}
	return func() {
		t.Helper()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("nap %d: %v", i, err)
			}
		}
	}
}

// Eight callers through one session: all eight are in flight on the
// channel at once, and each of many calls gets its own reply.
// claim: protocol.pipeline-max-in-flight
func TestPipelineEightCallersOneSession(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemonWith(t, daemonConfig{timing: "  heartbeat_interval: 500ms\n  reply_timeout: 20s\n"})
	d.waitReady(30 * time.Second)

	wait := napAll(t, d, 8, "0.3")
	waitFor(t, 20*time.Second, "eight naps in flight at once", func() bool {
		n, _ := d.metric("standbyd_requests_in_flight")
		return n == 8
	})
	wait()

	const callers, calls = 8, 250
	var wg sync.WaitGroup
	errc := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(d.socket)
			defer c.Close()
			for i := 0; i < calls; i++ {
				payload := fmt.Sprintf("g%d-c%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := c.Call(ctx, "echo", []byte(payload))
				cancel()
				if err != nil || string(out) != "echo:"+payload {
					errc <- fmt.Errorf("caller %d call %d: %q, %v", g, i, out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n, _ := d.metric("standbyd_channel_connects_total"); n != 1 {
		t.Fatalf("%v sessions, want 1", n)
	}
}

// A daemon that offers only version 1 (as with an older extension) keeps
// one request in flight: the others wait.
// claim: protocol.pipeline-negotiated
func TestPipelineVersion1OneAtATime(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemonWith(t, daemonConfig{channel: "  protocol_version: 1\n", timing: "  heartbeat_interval: 500ms\n  reply_timeout: 20s\n"})
	d.waitReady(30 * time.Second)
	wait := napAll(t, d, 4, "0.3")
	waitFor(t, 20*time.Second, "one nap in flight and three waiting", func() bool {
		n, _ := d.metric("standbyd_requests_in_flight")
		w, _ := d.metric("standbyd_calls_waiting")
		return n == 1 && w == 3
	})
	wait()
}

// pipeWriter is one of several callers of the writing once handler, with
// call ids of its own (p<writer>x<call>).
type pipeWriter struct {
	g       int
	c       *client.Client
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	outcome map[string]string
}

func (w *pipeWriter) run() {
	defer close(w.done)
	defer w.c.Close()
	for i := 1; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		id := fmt.Sprintf("p%dx%d", w.g, i)
		kind := callOnce(w.c, id)
		w.mu.Lock()
		w.outcome[id] = kind
		w.mu.Unlock()
		if kind != "ok" {
			time.Sleep(20 * time.Millisecond) // pacing while the channel is down
		}
	}
}

var pipeReceivedRE = regexp.MustCompile(`e2e once received (p[0-9]+x[0-9]+)`)

// Eight pipelined writers through terminations and a fast restart of the
// primary: every call has the right outcome. ok calls ran exactly once,
// unknown ones at most once, calls reported not sent never reached the
// primary; and since each of these faults ends the channel with a goodbye,
// a request the primary never read is not reported unknown (at most the
// one request per fault that was read but not yet logged by the handler).
// claim: protocol.goodbye
func TestPipelineWritersThroughTerminateAndRestart(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	installOnce(t, e)
	d := startDaemon(t, conninfoVia(e.PrimaryPort, passfileFor(t, e)))
	d.waitReady(30 * time.Second)

	writers := make([]*pipeWriter, 8)
	for g := range writers {
		writers[g] = &pipeWriter{g: g, c: client.New(d.socket), stop: make(chan struct{}), done: make(chan struct{}), outcome: map[string]string{}}
		go writers[g].run()
	}
	total := func() int {
		n := 0
		for _, w := range writers {
			w.mu.Lock()
			n += len(w.outcome)
			w.mu.Unlock()
		}
		return n
	}
	waitFor(t, 30*time.Second, "200 writing calls before the faults", func() bool { return total() >= 200 })
	faults := []string{"terminate", "terminate", "restart-fast", "terminate", "restart-fast"}
	injectFaults(t, e, nil, d, faults)
	d.waitReady(60 * time.Second)
	after := total()
	waitFor(t, 30*time.Second, "200 writing calls after the faults", func() bool { return total() >= after+200 })
	outcome := map[string]string{}
	for _, w := range writers {
		close(w.stop)
		<-w.done
		for id, k := range w.outcome {
			outcome[id] = k
		}
	}

	out, err := e.PrimarySQL(context.Background(), "SELECT call_id || ' ' || count(*) FROM e2e_once.calls GROUP BY call_id")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if id, n, ok := strings.Cut(l, " "); ok {
			rows[id], _ = strconv.Atoi(n)
		}
	}
	received := map[string]bool{}
	for _, m := range pipeReceivedRE.FindAllStringSubmatch(e.Log("primary"), -1) {
		received[m[1]] = true
	}
	counts := map[string]int{}
	var unknownReceived, unknownNotReceived, notSentReceived int
	for id, kind := range outcome {
		counts[kind]++
		switch kind {
		case "ok":
			if rows[id] != 1 {
				t.Errorf("%s answered ok left %d rows", id, rows[id])
			}
		case client.KindOutcomeUnknown:
			if rows[id] > 1 {
				t.Errorf("%s (unknown) ran %d times", id, rows[id])
			}
			if received[id] {
				unknownReceived++
			} else {
				unknownNotReceived++
			}
		default:
			if rows[id] != 0 || received[id] {
				notSentReceived++
				t.Errorf("%s answered %s reached the primary (%d rows)", id, kind, rows[id])
			}
		}
	}
	for id, n := range rows {
		if _, ok := outcome[id]; !ok || n > 1 {
			t.Errorf("row for %s: %d, outcome %q", id, n, outcome[id])
		}
	}
	t.Logf("%d writing calls: %v; outcome_unknown: %d reached the handler, %d never did; not sent that reached it: %d",
		len(outcome), counts, unknownReceived, unknownNotReceived, notSentReceived)
	if counts["ok"] < 400 {
		t.Errorf("only %d ok calls", counts["ok"])
	}
	for kind := range counts {
		if strings.HasPrefix(kind, "client:") {
			t.Errorf("a call failed without an answer from the daemon: %v", counts)
		}
	}
	// Without the goodbye, each fault would leave every request in flight
	// behind the one being served unknown (up to 7 here).
	if unknownNotReceived > len(faults) {
		t.Errorf("%d outcome_unknown calls never reached the primary (at most %d expected with goodbye)", unknownNotReceived, len(faults))
	}
}
