package e2e

import (
	"context"
	"errors"
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

// onceSQL installs a writing, non-idempotent handler: each call inserts one
// row keyed by the call id it carries. No unique key: a request run twice
// leaves two rows, which is what the check looks for. Before it writes, the
// handler logs the call id at LOG level: the server log keeps that line
// whatever becomes of the transaction, so it records which requests reached
// the primary.
const onceSQL = `
CREATE SCHEMA e2e_once;
GRANT USAGE ON SCHEMA e2e_once TO standbyd_repl;
CREATE TABLE e2e_once.calls(call_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT INSERT ON e2e_once.calls TO standbyd_repl;
CREATE FUNCTION e2e_once.once(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  RAISE LOG 'e2e once received %', convert_from(b, 'UTF8');
  INSERT INTO e2e_once.calls(call_id) VALUES (convert_from(b, 'UTF8'));
  RETURN 'done'::bytea;
END $$;
REVOKE ALL ON FUNCTION e2e_once.once(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION e2e_once.once(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(264, 'once', 'e2e_once.once(bytea)');
`

// receivedRE finds the handler's log line for a call id.
var receivedRE = regexp.MustCompile(`e2e once received (w[0-9]+)`)

// writer keeps calling the once handler, a new call id each time, and
// records each call's outcome by id.
type writer struct {
	c       *client.Client
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	outcome map[string]string    // call id -> ok, an error kind, or "client: ..."
	ended   map[string]time.Time // call id -> when its call returned
}

func installOnce(t *testing.T, e *testcluster.Env) {
	t.Helper()
	if _, err := e.PrimarySQL(context.Background(), onceSQL); err != nil {
		t.Fatalf("installing the writing handler: %v", err)
	}
}

func startWriter(d *daemon) *writer {
	w := &writer{c: client.New(d.socket), stop: make(chan struct{}), done: make(chan struct{}), outcome: map[string]string{}, ended: map[string]time.Time{}}
	go w.run()
	return w
}

func (w *writer) run() {
	defer close(w.done)
	defer w.c.Close()
	for i := 1; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		id := "w" + strconv.Itoa(i)
		kind := callOnce(w.c, id)
		w.mu.Lock()
		w.outcome[id] = kind
		w.ended[id] = time.Now()
		w.mu.Unlock()
		if kind != "ok" {
			time.Sleep(20 * time.Millisecond) // pacing while the channel is down
		}
	}
}

// onceCounts is what the at-most-once check found.
type onceCounts struct {
	calls, ok, unknown, other int
	rows, doubles, unsent     int // unsent: rows for calls that were neither ok nor unknown
	missing                   int // ok calls without a row
	// From the primary's log: unknown calls whose request reached the
	// handler or not, and channel_unavailable calls that reached it (the
	// daemon said "not sent": must be 0).
	unknownReceived, unknownNotReceived, unavailableReceived int
	lostAt                                                   []time.Time // when each unknown call that never reached the handler ended
}

func (c onceCounts) String() string {
	return fmt.Sprintf("%d writing calls: %d ok, %d outcome_unknown (%d reached the handler, %d never did), %d other; %d rows; %d double executions; %d rows for calls never sent; %d ok calls without a row; %d channel_unavailable calls that reached the handler",
		c.calls, c.ok, c.unknown, c.unknownReceived, c.unknownNotReceived, c.other, c.rows, c.doubles, c.unsent, c.missing, c.unavailableReceived)
}

// finish stops the writer and compares its outcomes with the rows on e's
// primary: every ok call left exactly one row, an unknown one at most one,
// any other none.
func (w *writer) finish(t *testing.T, e *testcluster.Env) onceCounts {
	t.Helper()
	close(w.stop)
	<-w.done
	out, err := e.PrimarySQL(context.Background(), "SELECT call_id || ' ' || count(*) FROM e2e_once.calls GROUP BY call_id")
	if err != nil {
		t.Fatalf("reading the writing handler's rows: %v", err)
	}
	rows := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if id, n, ok := strings.Cut(l, " "); ok {
			rows[id], _ = strconv.Atoi(n)
		}
	}
	received := map[string]bool{}
	for _, m := range receivedRE.FindAllStringSubmatch(e.Log("primary"), -1) {
		received[m[1]] = true
	}
	var c onceCounts
	w.mu.Lock()
	defer w.mu.Unlock()
	c.calls = len(w.outcome)
	for id, kind := range w.outcome {
		switch kind {
		case "ok":
			c.ok++
			if rows[id] == 0 {
				c.missing++
			}
		case client.KindOutcomeUnknown:
			c.unknown++
			if received[id] {
				c.unknownReceived++
			} else {
				c.unknownNotReceived++
				c.lostAt = append(c.lostAt, w.ended[id])
			}
		default:
			c.other++
			if kind == client.KindChannelUnavailable && received[id] {
				c.unavailableReceived++
			}
		}
	}
	for id, n := range rows {
		c.rows += n
		if n > 1 {
			c.doubles++
		}
		if kind := w.outcome[id]; kind != "ok" && kind != client.KindOutcomeUnknown {
			c.unsent++
		}
	}
	return c
}

// check fails t unless the counts show at most once, and exactly once for
// the calls answered ok.
func (c onceCounts) check(t *testing.T) {
	t.Helper()
	if c.doubles > 0 || c.unsent > 0 || c.missing > 0 || c.rows < c.ok || c.rows > c.ok+c.unknown ||
		c.unavailableReceived > 0 {
		t.Errorf("at most once violated: %s", c)
	}
	if c.ok == 0 {
		t.Errorf("no writing call succeeded: %s", c)
	}
}

// callOnce calls the writing handler "once" with id (2s deadline) and names
// the outcome: "ok", the API's error kind, or what the client saw.
func callOnce(c *client.Client, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := c.Call(ctx, "once", []byte(id))
	var ae *client.Error
	switch {
	case err == nil && string(out) == "done":
		return "ok"
	case err == nil:
		return "client: reply " + string(out)
	case errors.As(err, &ae):
		return ae.Kind
	default:
		return "client: " + err.Error()
	}
}
