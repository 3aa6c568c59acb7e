package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/protocol"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func primarySQL(t *testing.T, sql string) string {
	t.Helper()
	out, err := env.PrimarySQL(ctxT(t, 60*time.Second), sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The standby's own primary_conninfo, as pg_basebackup -R wrote it, carries
// keywords that pgconn would send to the server as startup parameters (which
// the server refuses). Every daemon test below connects with it unchanged.
// claim: readme.follows-primary-conninfo
func TestBasebackupConninfoHasTheHardKeywords(t *testing.T) {
	needEnv(t)
	b, err := os.ReadFile(env.StandbyData + "/postgresql.auto.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, kw := range []string{"passfile=", "gssencmode=", "sslcompression=", "ssl_min_protocol_version=", "channel_binding=", "target_session_attrs="} {
		if !strings.Contains(string(b), kw) {
			t.Errorf("primary_conninfo lacks %s: the tests would not cover it\n%s", kw, b)
		}
	}
}

// claim: readme.call-n
// claim: api.call-exit-codes
// claim: protocol.registered-op-errors
func TestCallNThroughDaemon(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)

	out, errOut, code := d.call("N", "100", "200", "300")
	if code != 0 || out != "400 500 600\n" {
		t.Fatalf("standbyd call N 100 200 300: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The primary answers an overflow with an error frame: exit 3, SQLSTATE shown.
	out, errOut, code = d.call("N", "2147483647", "0", "0")
	if code != 3 || !strings.Contains(errOut, "22003") {
		t.Fatalf("overflow: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = d.call("0x1234")
	if code != 3 || !strings.Contains(errOut, "42883") {
		t.Fatalf("unknown op: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = d.call("N", "1", "2")
	if code != 2 {
		t.Fatalf("two arguments for N: exit %d, stderr %q", code, errOut)
	}
	// The session survived the errors.
	if out, _, code := d.call("N", "-300", "0", "1"); code != 0 || out != "0 300 301\n" {
		t.Fatalf("after errors: exit %d, %q", code, out)
	}
	// Through the Go client too.
	reply, err := d.client().Call(ctxT(t, 10*time.Second), "N", protocol.AppendN(nil, [3]int32{1, 2, 3}))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := protocol.ParseN(reply); err != nil || n != [3]int32{301, 302, 303} {
		t.Fatalf("client N: %v %v", n, err)
	}
	if n, _ := d.metric(`standbyd_requests_total{op="N",result="ok"}`); n < 3 {
		t.Fatalf("requests_total{N,ok} = %v, want at least 3", n)
	}
	if n, _ := d.metric(`standbyd_requests_total{op="N",result="error"}`); n < 1 {
		t.Fatalf("requests_total{N,error} = %v, want at least 1", n)
	}
}

// claim: readme.channel-in-pg-stat-activity
// claim: extension.idle-wait-event
func TestPingAndStatusDescribeThePrimary(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	ctx := ctxT(t, 30*time.Second)

	out, errOut, code := d.call("--out", "json", "ping")
	if code != 0 {
		t.Fatalf("ping: exit %d %s", code, errOut)
	}
	var ping struct {
		ServerTime  time.Time `json:"server_time"`
		WALPosition string    `json:"wal_position"`
		Timeline    uint32    `json:"timeline"`
		InRecovery  bool      `json:"in_recovery"`
	}
	if err := json.Unmarshal([]byte(out), &ping); err != nil {
		t.Fatalf("ping json %q: %v", out, err)
	}
	flushed, err := protocol.ParseLSN(primarySQL(t, "SELECT pg_current_wal_flush_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.ParseLSN(ping.WALPosition)
	if err != nil || got == 0 || got > flushed {
		t.Fatalf("ping WAL position %s, primary flushed %s afterwards", ping.WALPosition, flushed)
	}
	if ping.InRecovery || ping.Timeline != 1 || time.Since(ping.ServerTime).Abs() > time.Minute {
		t.Fatalf("ping: %+v", ping)
	}

	st := d.status(ctx)
	sysid := primarySQL(t, "SELECT system_identifier FROM pg_control_system()")
	// claim: liveness.status-exit-code
	if out, e, code := d.cli("status"); code != 0 || !strings.Contains(out, "channel:      ready") || !strings.Contains(out, sysid) {
		t.Fatalf("standbyd status: exit %d\n%s%s", code, out, e)
	}
	if st.State != "ready" || st.Primary == nil || st.Primary.SystemIdentifier != sysid || st.Primary.ProtocolVersion != 3 {
		t.Fatalf("status %+v, primary system identifier %s", st, sysid)
	}
	// The session the daemon holds is the channel backend on the primary, as
	// the channel's own settings say: database postgres, the replication role
	// from primary_conninfo, application_name standbyd.
	row := primarySQL(t, "SELECT usename || '|' || datname || '|' || application_name || '|' || state || '|' || query FROM pg_stat_activity WHERE pid = "+strconv.Itoa(int(st.ChannelBackendID)))
	if row != "standbyd_repl|postgres|standbyd|active|CALL standbyd.serve()" {
		t.Fatalf("channel backend row: %q", row)
	}
	// While it waits for the next request the channel shows its own wait
	// event type (Extension on 15; a named one on 17+).
	pid := strconv.Itoa(int(st.ChannelBackendID))
	if !d.poll(5*time.Second, func() bool {
		return primarySQL(t, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = "+pid) == "Extension"
	}) {
		t.Fatal("the idle channel's wait_event_type is not Extension")
	}
	if !strings.Contains(d.log(), `"primary_conninfo_source":"`+env.StandbyData+`/postgresql.auto.conf:`) {
		t.Fatalf("the daemon did not report where primary_conninfo came from:\n%s", tailLines(d.log(), 10))
	}
	if strings.Contains(d.log(), "password") {
		t.Fatalf("the log mentions a password:\n%s", d.log())
	}
}

var vacuumTuples = regexp.MustCompile(`tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable`)

func vacuum(t *testing.T, table string) (removed, deadKept int) {
	t.Helper()
	_, stderr, err := env.SQLWithStderr(ctxT(t, 60*time.Second), "primary", "VACUUM (VERBOSE) "+table)
	if err != nil {
		t.Fatal(err)
	}
	m := vacuumTuples.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no tuple counts in VACUUM VERBOSE output:\n%s", stderr)
	}
	removed, _ = strconv.Atoi(m[1])
	deadKept, _ = strconv.Atoi(m[3])
	return removed, deadKept
}

// While the channel is idle its backend holds no snapshot: backend_xmin is
// NULL and VACUUM removes rows deleted after the channel started. A session
// that does hold a snapshot is the control that shows the check can fail.
// claim: readme.channel-in-pg-stat-activity
// claim: extension.idle-no-xmin
// claim: readme.serve-summary
func TestIdleChannelHoldsNoXmin(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	ctx := ctxT(t, 60*time.Second)
	// Requests and heartbeats have gone through before we look.
	if _, _, code := d.call("N", "1", "2", "3"); code != 0 {
		t.Fatal("call failed")
	}
	pid := strconv.Itoa(int(d.status(ctx).ChannelBackendID))

	primarySQL(t, "DROP TABLE IF EXISTS xmin_probe; CREATE TABLE xmin_probe(i int) WITH (autovacuum_enabled = off); INSERT INTO xmin_probe SELECT generate_series(1, 1000)")
	primarySQL(t, "DELETE FROM xmin_probe")
	if xmin := primarySQL(t, "SELECT coalesce(backend_xmin::text, 'NULL') FROM pg_stat_activity WHERE pid = "+pid); xmin != "NULL" {
		t.Fatalf("channel backend_xmin = %s while idle", xmin)
	}
	if locks := primarySQL(t, "SELECT string_agg(locktype || ':' || mode, ',') FROM pg_locks WHERE pid = "+pid+" AND locktype <> 'virtualxid'"); locks != "" {
		t.Fatalf("channel backend holds locks while idle: %s", locks)
	}
	removed, kept := vacuum(t, "xmin_probe")
	if removed != 1000 || kept != 0 {
		t.Fatalf("VACUUM removed %d and kept %d dead rows; want 1000 and 0 (something holds back xmin)", removed, kept)
	}

	// Control: a repeatable-read snapshot does hold rows back.
	holder, err := pgconn.Connect(ctx, "host="+env.SocketDir+" port="+strconv.Itoa(env.PrimaryPort)+" user=postgres dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	primarySQL(t, "INSERT INTO xmin_probe SELECT generate_series(1, 100); DELETE FROM xmin_probe")
	if _, kept := vacuum(t, "xmin_probe"); kept == 0 {
		t.Fatal("control failed: a session holding a snapshot did not keep dead rows, so the check above proves nothing")
	}
	if _, err := holder.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// The channel still answers after all this.
	if out, _, code := d.call("N", "0", "0", "0"); code != 0 || out != "300 300 300\n" {
		t.Fatalf("after vacuum: %d %q", code, out)
	}
}

// The first reconnect loop: when the channel backend is terminated the daemon
// notices, says so in /readyz and metrics, and reconnects.
func TestReconnectAfterBackendTerminated(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	ctx := ctxT(t, 60*time.Second)
	before := d.status(ctx).ChannelBackendID
	if up, _ := d.metric("standbyd_channel_up"); up != 1 {
		t.Fatalf("channel_up = %v while ready", up)
	}
	if got := primarySQL(t, "SELECT pg_terminate_backend("+strconv.Itoa(int(before))+")"); got != "t" {
		t.Fatalf("pg_terminate_backend: %s", got)
	}
	if !d.poll(30*time.Second, func() bool {
		st := d.status(ctx)
		return st.State == "ready" && st.ChannelBackendID != 0 && st.ChannelBackendID != before
	}) {
		t.Fatalf("no new session after the backend was terminated: %+v", d.status(ctx))
	}
	if out, _, code := d.call("N", "7", "8", "9"); code != 0 || out != "307 308 309\n" {
		t.Fatalf("after reconnect: %d %q", code, out)
	}
	if n, _ := d.metric("standbyd_channel_connects_total"); n < 2 {
		t.Fatalf("connects_total = %v, want 2", n)
	}
	if n, _ := d.metric(`standbyd_channel_disconnects_total{reason="server_closed"}`); n < 1 {
		t.Fatalf("disconnects_total{reason=\"server_closed\"} = %v, want 1", n)
	}
	if !strings.Contains(d.log(), "57P01") {
		t.Fatalf("the log does not say why the channel was lost (57P01):\n%s", tailLines(d.log(), 20))
	}
}

// With the primary down the daemon tells the truth (up 0, /readyz 503, calls
// fail as unavailable) and comes back when the primary does.
// claim: readme.stop-fast-reconnects
// claim: liveness.status-exit-code
// claim: liveness.wait-then-unavailable
// claim: api.call-exit-codes
func TestPrimaryDownAndBack(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	ctx := ctxT(t, 120*time.Second)

	if err := env.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = env.StartServer(context.Background(), "primary")
		}
	}()
	if !d.poll(20*time.Second, func() bool { return d.readyz() == http.StatusServiceUnavailable }) {
		t.Fatal("/readyz still says ready with the primary stopped")
	}
	if up, ok := d.metric("standbyd_channel_up"); !ok || up != 0 {
		t.Fatalf("channel_up = %v with the primary stopped", up)
	}
	if v, _ := d.metric("standbyd_session_start_timestamp_seconds"); v != 0 {
		t.Fatalf("session_start_timestamp = %v with the primary stopped", v)
	}
	_, errOut, code := d.call("--timeout", "1s", "N", "1", "2", "3")
	if code != 4 || !strings.Contains(errOut, "channel_unavailable") {
		t.Fatalf("call with the primary down: exit %d, stderr %q", code, errOut)
	}
	if out, _, code := d.cli("status"); code != 4 || !strings.Contains(out, "last error:") {
		t.Fatalf("standbyd status with the primary down: exit %d\n%s", code, out)
	}

	if err := env.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	d.waitReady(30 * time.Second)
	if out, _, code := d.call("N", "1", "1", "1"); code != 0 || out != "301 301 301\n" {
		t.Fatalf("after the primary came back: %d %q", code, out)
	}
	if up, _ := d.metric("standbyd_channel_up"); up != 1 {
		t.Fatalf("channel_up = %v after recovery", up)
	}
}

// SIGTERM closes the channel the polite way: the primary's log shows the
// extension's clean close (CopyDone), not an unexpected EOF, and the daemon
// exits 0.
// claim: liveness.shutdown-copydone
func TestSIGTERMClosesWithCopyDone(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	pid := d.status(ctxT(t, 10*time.Second)).ChannelBackendID
	if err := d.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Fatalf("api socket left behind: %v", err)
	}
	want := "[" + strconv.Itoa(int(pid)) + "] "
	ok := false
	for _, line := range strings.Split(env.Log("primary"), "\n") {
		if strings.Contains(line, want) && strings.Contains(line, "standbyd channel closed by the client after") {
			ok = true
		}
		if strings.Contains(line, want) && strings.Contains(line, "unexpected EOF") {
			t.Fatalf("the channel ended with EOF, not CopyDone: %s", line)
		}
	}
	if !ok {
		t.Fatalf("no clean close logged for backend %d", pid)
	}
}
