package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// logEntries are the daemon's JSON log lines whose message is msg.
func logEntries(d *daemon, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(d.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// channelBackend is the pid of the channel's backend, asked on a
// connection of its own that is closed afterwards.
func channelBackend(t *testing.T, d *daemon) uint32 {
	t.Helper()
	c := client.New(d.socket)
	defer c.Close()
	st, err := c.Status(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return st.ChannelBackendID
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A fast path caller that closes its connection with two requests in
// flight, one running on the primary and one queued behind it while the
// channel is busy (channel.max_in_flight 1): the queued one is withdrawn
// and never runs on the primary; the running one's reply is read and
// dropped, and the session stays in step (the same backend serves the next
// call); the daemon logs the caller gone, with the SQL session it
// identified; no connection or descriptor is left behind.
// claim: api.fast-closed-in-flight
func TestFastPathCallerGoneWithRequestsInFlight(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "  max_in_flight: 1\n")
	d.waitReady(30 * time.Second)
	ctx := ctxT(t, 60*time.Second)
	backend := channelBackend(t, d)
	pid := d.cmd.Process.Pid
	_, _ = d.metric("standbyd_calls_waiting") // its keep-alive connection counts in the baseline
	fds := openFDs(t, pid)

	key := fmt.Sprintf("gone-%d", time.Now().UnixNano())
	c, _ := fastRawV(t, d.socket, fastproto.Version2)
	var buf []byte
	buf = fastproto.AppendIdentify(buf, fastproto.Identify{PID: 4242, Role: "app", Database: "shop"})
	buf = fastproto.AppendRequest(buf, fastproto.Request{ID: 1, Op: opNap, TimeoutMS: 30000, Payload: []byte("2")})
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_requests_in_flight"); return v == 1 }) {
		t.Fatal("the nap never went in flight")
	}
	if _, err := c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Op: opPut, TimeoutMS: 30000, Payload: []byte(key)})); err != nil {
		t.Fatal(err)
	}
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_calls_waiting"); return v == 1 }) {
		t.Fatal("the put never queued behind the nap")
	}
	c.Close()

	if !d.poll(20*time.Second, func() bool {
		w, _ := d.metric("standbyd_calls_waiting")
		f, _ := d.metric("standbyd_requests_in_flight")
		return w == 0 && f == 0 && len(logEntries(d, "call abandoned by its caller after it was sent: its outcome on the primary is unknown, its reply is dropped")) == 1
	}) {
		t.Fatalf("the calls did not end\n%s", tailLines(d.log(), 20))
	}
	// A later call goes through the same single slot: had the put been
	// queued, it would have been sent before this one.
	cl := client.New(d.socket)
	if out, err := cl.Call(ctx, "put", []byte(key+"-after")); err != nil || string(out) != "ok" {
		t.Fatalf("a call after: %q %v", out, err)
	}
	cl.Close()
	if n := primarySQL(t, "SELECT count(*) FROM e2e.kv WHERE k = '"+key+"'"); n != "0" {
		t.Fatalf("the withdrawn put ran on the primary (%s rows)", n)
	}
	if n := primarySQL(t, "SELECT count(*) FROM e2e.kv WHERE k = '"+key+"-after'"); n != "1" {
		t.Fatalf("the later put: %s rows", n)
	}
	if now := channelBackend(t, d); now != backend {
		t.Fatalf("the channel backend changed from %d to %d: the session did not stay in step", backend, now)
	}

	gone := logEntries(d, "api fast path: caller gone with requests in flight")
	withdrawn := logEntries(d, "call withdrawn: its caller left before it was sent to the primary")
	sent := logEntries(d, "call abandoned by its caller after it was sent: its outcome on the primary is unknown, its reply is dropped")
	if len(gone) != 1 || gone[0]["in_flight"] != float64(2) {
		t.Fatalf("caller gone: %v", gone)
	}
	if len(withdrawn) != 1 || withdrawn[0]["op"] != "0x0101" || len(sent) != 1 || sent[0]["op"] != "0x0103" {
		t.Fatalf("withdrawn %v, sent %v", withdrawn, sent)
	}
	for _, m := range []map[string]any{gone[0], withdrawn[0], sent[0]} {
		if m["sql_pid"] != float64(4242) || m["sql_role"] != "app" || m["sql_database"] != "shop" || m["uid"] == nil {
			t.Fatalf("log line without the caller's attribution: %v", m)
		}
	}
	if !d.poll(10*time.Second, func() bool { return openFDs(t, pid) <= fds }) {
		t.Fatalf("%d descriptors open, %d before", openFDs(t, pid), fds)
	}
}
