package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/localnode"
	"github.com/standbyd/standbyd/internal/pgcontrol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// The failover tests promote, repoint and rewind their own clusters (never
// the shared one). A writing handler counts the requests that reach a
// server: one row per call id.

const failoverSQL = `
CREATE SCHEMA e2e_fo;
GRANT USAGE ON SCHEMA e2e_fo TO standbyd_repl;
CREATE TABLE e2e_fo.calls(call_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT INSERT ON e2e_fo.calls TO standbyd_repl;
CREATE FUNCTION e2e_fo.write(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO e2e_fo.calls(call_id) VALUES (convert_from(b, 'UTF8'));
  RETURN 'written'::bytea;
END $$;
REVOKE ALL ON FUNCTION e2e_fo.write(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION e2e_fo.write(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(300, 'fo_write', 'e2e_fo.write(bytea)');
`

func installFailoverHandler(t *testing.T, e *testcluster.Env) {
	t.Helper()
	if _, err := e.PrimarySQL(context.Background(), failoverSQL); err != nil {
		t.Fatalf("installing the writing handler: %v", err)
	}
}

// foRows counts the handler's rows on a server, optionally those whose id
// starts with prefix.
func foRows(t *testing.T, e *testcluster.Env, server, prefix string) int {
	t.Helper()
	out, err := e.SQL(context.Background(), server, "SELECT count(*) FROM e2e_fo.calls WHERE call_id LIKE '"+prefix+"%'")
	if err != nil {
		t.Fatalf("counting rows on %s: %v", server, err)
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("counting rows on %s: %q", server, out)
	}
	return n
}

// promote promotes a server and waits until it is out of recovery.
func promote(t *testing.T, e *testcluster.Env, server string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.SQL(ctx, server, "SELECT pg_promote()"); err != nil {
		t.Fatalf("promoting %s: %v", server, err)
	}
	if !pollFor(30*time.Second, func() bool {
		v, _ := e.SQL(ctx, server, "SELECT pg_is_in_recovery()")
		return v == "f"
	}) {
		t.Fatalf("%s was not promoted", server)
	}
}

func pollFor(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ok()
}

// channelConninfo is a primary_conninfo for the channel role towards port,
// with the clusters' passfile (made to match any port).
func channelConninfo(t *testing.T, e *testcluster.Env, port int) string {
	t.Helper()
	b, err := os.ReadFile(e.PassFile)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.HasPrefix(s, fmt.Sprintf("127.0.0.1:%d:", e.PrimaryPort)) {
		s = strings.Replace(s, fmt.Sprintf(":%d:", e.PrimaryPort), ":*:", 1)
		if err := os.WriteFile(e.PassFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("user=%s passfile=''%s'' host=127.0.0.1 port=%d sslmode=prefer", testcluster.ChannelRole, e.PassFile, port)
}

// repoint sets a running standby's primary_conninfo and reloads it.
func repoint(t *testing.T, e *testcluster.Env, server string, port int) {
	t.Helper()
	ctx := context.Background()
	for _, sql := range []string{"ALTER SYSTEM SET primary_conninfo = '" + channelConninfo(t, e, port) + "'", "SELECT pg_reload_conf()"} {
		if _, err := e.SQL(ctx, server, sql); err != nil {
			t.Fatalf("repointing %s: %v", server, err)
		}
	}
}

// receivedTimeline is the timeline a standby's walreceiver streams.
func receivedTimeline(e *testcluster.Env, server string) string {
	v, _ := e.SQL(context.Background(), server, "SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'")
	return v
}

// readyzBody is /readyz's status and body.
func (d *daemon) readyzBody() (int, string) {
	resp, err := http.Get("http://" + d.metrics + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

// Promotion with the old primary alive (an unfenced failover): the daemon
// on the promoted node stops serving within seconds, refuses calls with
// not_standby, and no request reaches the old primary after the refusal.
// claim: liveness.failover-promoted-refuses
// claim: api.call-exit-codes
// claim: readme.failover-refusals
// claim: liveness.failover-direct
func TestFailoverPromotionWithOldPrimaryAlive(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	installFailoverHandler(t, e)
	d := startDaemonFor(t, e.StandbyData, "")
	d.waitReady(30 * time.Second)
	c := d.client()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Call(ctx, "fo_write", []byte(fmt.Sprintf("before-%d", i))); err != nil {
			t.Fatalf("call before the promotion: %v", err)
		}
	}

	// A writer keeps calling through the promotion; each call id's outcome
	// is kept.
	var mu sync.Mutex
	outcome := map[string]string{}
	started := map[string]time.Time{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("during-%d", i)
			mu.Lock()
			started[id] = time.Now()
			mu.Unlock()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := c.Call(cctx, "fo_write", []byte(id))
			cancel()
			res := "ok"
			var ae *client.Error
			if errors.As(err, &ae) {
				res = ae.Kind
			} else if err != nil {
				res = "client: " + err.Error()
			}
			mu.Lock()
			outcome[id] = res
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	promote(t, e, "standby")
	mu.Lock()
	promoted := time.Now()
	mu.Unlock()
	if !d.poll(15*time.Second, func() bool { return d.readyz() == http.StatusServiceUnavailable }) {
		t.Fatalf("still ready 15s after the promotion: %+v", d.status(ctx))
	}
	t.Logf("readiness false %s after pg_promote() returned", time.Since(promoted).Round(time.Millisecond))
	// The writer goes on until its own calls are refused.
	if !pollFor(10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(refusedIDs(outcome)) >= 3
	}) {
		t.Fatal("the writer's calls were not refused")
	}
	close(stop)
	<-done
	rowsAtRefusal := foRows(t, e, "primary", "")

	// Calls now: refused at once, by the API and the CLI.
	_, err := c.Call(ctx, "fo_write", []byte("after-api"))
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Kind != client.KindNotStandby || ae.HTTPStatus != http.StatusConflict ||
		!strings.Contains(ae.Message, "this node was promoted (timeline 2): standbyd serves only standbys") {
		t.Fatalf("a call after the promotion: %v", err)
	}
	for i := 0; i < 3; i++ {
		_, stderr, code := d.call("fo_write", fmt.Sprintf("after-cli-%d", i))
		if code != 7 || !strings.Contains(stderr, "was promoted (timeline 2)") {
			t.Fatalf("standbyd call after the promotion: exit %d, %s", code, stderr)
		}
	}
	// --direct, without the daemon, refuses too.
	if _, stderr, code := d.call("--direct", "--config", filepath.Join(d.dir, "standbyd.yaml"), "fo_write", "after-direct"); code != 7 ||
		!strings.Contains(stderr, "this node is not a standby (timeline 2)") {
		t.Fatalf("standbyd call --direct after the promotion: exit %d, %s", code, stderr)
	}
	out, _, code := d.cli("status")
	if code != 7 || !strings.Contains(out, "this node:    primary, timeline 2") ||
		!strings.Contains(out, "last error:   this node was promoted (timeline 2): standbyd serves only standbys") {
		t.Fatalf("standbyd status: exit %d\n%s", code, out)
	}
	if status, body := d.readyzBody(); status != http.StatusServiceUnavailable || !strings.Contains(body, "this node was promoted (timeline 2)") {
		t.Fatalf("/readyz: %d %q", status, body)
	}
	// claim: liveness.failover-local-node-logged
	if v, _ := d.metric("standbyd_local_in_recovery"); v != 0 {
		t.Fatalf("standbyd_local_in_recovery %v", v)
	}
	if v, _ := d.metric("standbyd_local_timeline"); v != 2 {
		t.Fatalf("standbyd_local_timeline %v", v)
	}
	if v, _ := d.metric(`standbyd_channel_refusals_total{reason="not_standby"}`); v != 1 {
		t.Fatalf("not_standby refusals %v", v)
	}

	// Nothing reached the old primary after the refusal, and no refused
	// call of the writer ever did.
	if n := foRows(t, e, "primary", ""); n != rowsAtRefusal {
		t.Fatalf("rows on the old primary: %d at the refusal, %d after", rowsAtRefusal, n)
	}
	if n := foRows(t, e, "primary", "after"); n != 0 {
		t.Fatalf("%d refused calls reached the old primary", n)
	}
	mu.Lock()
	defer mu.Unlock()
	refused := len(refusedIDs(outcome))
	exact, err := e.SQL(ctx, "primary", "SELECT count(*) FROM e2e_fo.calls WHERE call_id = ANY(string_to_array('"+strings.Join(refusedIDs(outcome), ",")+"', ','))")
	if err != nil || exact != "0" {
		t.Fatalf("refused calls found on the old primary: %q %v", exact, err)
	}
	late := 0
	for id, res := range outcome {
		if res == "ok" && started[id].After(promoted) {
			late++
		}
	}
	t.Logf("writer: %d calls, %d refused with not_standby, %d rows on the old primary, %d of them from calls started after pg_promote() returned (before the daemon noticed)",
		len(outcome), refused, rowsAtRefusal, late)
}

func refusedIDs(outcome map[string]string) []string {
	var ids []string
	for id, res := range outcome {
		if res == client.KindNotStandby {
			ids = append(ids, id)
		}
	}
	return ids
}

// clusterScript runs scripts/cluster.sh.
func clusterScript(t *testing.T, args ...string) {
	t.Helper()
	root, err := testcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "cluster.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A standby repointed at an ex-primary left on an older timeline: P (tl 1),
// S1 and S2 its standbys; S1 promoted (tl 2), S2 follows it there; then
// S2's primary_conninfo names P again (still up). The daemon on S2 refuses
// P and counts it; nothing reaches P.
// claim: liveness.failover-stale-upstream-at-hello
// claim: api.status-local
// claim: readme.failover-refusals
func TestFailoverStaleUpstreamRefused(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := context.Background()
	installFailoverHandler(t, e)
	if _, err := e.AddStandby(ctx, "standby2"); err != nil {
		t.Fatal(err)
	}
	promote(t, e, "standby")
	repoint(t, e, "standby2", e.StandbyPort)
	if !pollFor(60*time.Second, func() bool { return receivedTimeline(e, "standby2") == "2" }) {
		t.Fatalf("standby2 did not follow timeline 2 (received %q)\n%s", receivedTimeline(e, "standby2"), e.LogTail("standby2", 30))
	}
	d := startDaemonFor(t, filepath.Join(e.Base, "standby2"), "")
	d.waitReady(30 * time.Second)
	if st := d.status(ctx); st.Primary == nil || st.Primary.Timeline != 2 || st.Local == nil || st.Local.Timeline != 2 || st.Local.Role != "standby" {
		t.Fatalf("status on the new primary: %+v local %+v", st.Primary, st.Local)
	}
	rows := foRows(t, e, "primary", "")

	repoint(t, e, "standby2", e.PrimaryPort)
	start := time.Now()
	want := "the upstream is on timeline 1, older than this standby's timeline 2: a stale ex-primary"
	if !d.poll(30*time.Second, func() bool { return strings.Contains(d.lastError(), want) }) {
		t.Fatalf("not refused: %+v", d.status(ctx))
	}
	t.Logf("stale upstream refused %s after the repointing", time.Since(start).Round(time.Millisecond))
	if st := d.status(ctx); st.State == "ready" {
		t.Fatalf("ready towards the stale upstream: %+v", st)
	}
	if v, _ := d.metric(`standbyd_channel_refusals_total{reason="stale_timeline"}`); v < 1 {
		t.Fatalf("stale_timeline refusals %v", v)
	}
	if _, _, code := d.call("--timeout", "1s", "fo_write", "to-stale"); code != 4 {
		t.Fatalf("a call towards the stale upstream: exit %d, want 4 (unavailable)", code)
	}
	if _, stderr, code := d.call("--direct", "--config", filepath.Join(d.dir, "standbyd.yaml"), "fo_write", "to-stale-direct"); code != 4 ||
		!strings.Contains(stderr, want) {
		t.Fatalf("standbyd call --direct towards the stale upstream: exit %d, %s", code, stderr)
	}
	if !strings.Contains(d.log(), `"class":"configuration"`) {
		t.Fatal("the refusal is not logged as a configuration error")
	}
	if n := foRows(t, e, "primary", ""); n != rows {
		t.Fatalf("rows on the stale primary: %d before, %d after", rows, n)
	}
}

// The old primary, with a daemon on it since before the failover (refusing:
// not a standby), is stopped, rewound with pg_rewind against the new
// primary, given standby.signal and a primary_conninfo naming the new
// primary, and started: the same daemon serves the new primary.
// claim: liveness.failover-rejoin
// claim: readme.failover-refusals
func TestFailoverRewindAndRejoin(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := context.Background()
	installFailoverHandler(t, e)
	// A primary ignores primary_conninfo; the daemon needs one to start.
	if _, err := e.SQL(ctx, "primary", "ALTER SYSTEM SET primary_conninfo = '"+channelConninfo(t, e, e.StandbyPort)+"'"); err != nil {
		t.Fatal(err)
	}
	// pg_rewind reads the old primary's WAL back to the last common
	// checkpoint: the checkpoint below must not recycle it (18 does).
	if _, err := e.SQL(ctx, "primary", "ALTER SYSTEM SET wal_keep_size = '256MB'"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SQL(ctx, "primary", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	d := startDaemonFor(t, e.PrimaryData, "")
	if !d.poll(30*time.Second, func() bool { return strings.Contains(d.lastError(), "this node is not a standby (timeline 1)") }) {
		t.Fatalf("a daemon on a primary does not refuse: %+v", d.status(ctx))
	}
	if _, _, code := d.cli("status"); code != 7 {
		t.Fatalf("status on a primary: exit %d", code)
	}

	promote(t, e, "standby")
	// The old primary writes on after the promotion: it diverges.
	if _, err := e.SQL(ctx, "primary", "CREATE TABLE e2e_fo.diverged AS SELECT 1 AS x; CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if err := e.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", e.SocketDir, e.StandbyPort)
	if out, err := testcluster.Command(ctx, "pg_rewind", "-D", e.PrimaryData, "--source-server", src).CombinedOutput(); err != nil {
		t.Fatalf("pg_rewind: %v\n%s", err, out)
	}
	// pg_rewind copied the new primary's configuration files: the old
	// primary keeps its own port, and follows the new primary.
	appendLine(t, filepath.Join(e.PrimaryData, "postgresql.conf"), fmt.Sprintf("port = %d", e.PrimaryPort))
	appendLine(t, filepath.Join(e.PrimaryData, "postgresql.auto.conf"), "primary_conninfo = '"+channelConninfo(t, e, e.StandbyPort)+"'")
	if err := os.WriteFile(filepath.Join(e.PrimaryData, "standby.signal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.SQL(ctx, "primary", "SELECT pg_is_in_recovery()"); v != "t" {
		t.Fatalf("the rewound node is not a standby: %q", v)
	}
	if !d.poll(30*time.Second, func() bool {
		st := d.status(ctx)
		return st.State == "ready" && st.Primary != nil && st.Primary.Timeline == 2 && !st.Primary.InRecovery
	}) {
		t.Fatalf("the daemon does not serve the new primary: %+v", d.status(ctx))
	}
	t.Logf("serving the new primary %s after the rejoined node was started", time.Since(start).Round(time.Millisecond))
	if out, _, code := d.call("fo_write", "rejoined"); code != 0 || out != "written\n" {
		t.Fatalf("a call after rejoining: exit %d %q", code, out)
	}
	if n := foRows(t, e, "standby", "rejoined"); n != 1 {
		t.Fatalf("%d rows on the new primary, want 1", n)
	}
	if v, _ := d.metric("standbyd_local_in_recovery"); v != 1 {
		t.Fatalf("standbyd_local_in_recovery %v after rejoining", v)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// A standby of a standby (cascading) whose upstream is promoted: the
// channel to it stays up (it was the upstream, now the primary, on a newer
// timeline), the status follows it, and writes land on it, never on the
// old primary.
// claim: liveness.failover-cascading
func TestFailoverCascadingUpstreamPromoted(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := context.Background()
	installFailoverHandler(t, e)
	channelConninfo(t, e, e.StandbyPort) // the passfile for any port
	port, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	clusterScript(t, "standby", e.Base, strconv.Itoa(e.StandbyPort), strconv.Itoa(port), "cascade")
	d := startDaemonFor(t, filepath.Join(e.Base, "cascade"), "")
	d.waitReady(30 * time.Second)
	if st := d.status(ctx); st.Primary == nil || !st.Primary.InRecovery || st.Primary.Timeline != 1 {
		t.Fatalf("the cascading upstream: %+v", st.Primary)
	}
	if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
		t.Fatalf("N through the cascading upstream: %d %q", code, out)
	}

	promote(t, e, "standby")
	start := time.Now()
	if !d.poll(30*time.Second, func() bool {
		st := d.status(ctx)
		return st.State == "ready" && st.Primary != nil && !st.Primary.InRecovery && st.Primary.Timeline == 2 &&
			st.Local != nil && st.Local.Timeline == 2
	}) {
		t.Fatalf("the daemon did not follow its promoted upstream: %+v %+v", d.status(ctx).Primary, d.status(ctx).Local)
	}
	t.Logf("status on the promoted upstream, timeline 2, %s after the promotion", time.Since(start).Round(time.Millisecond))
	if out, _, code := d.call("fo_write", "cascade-after"); code != 0 || out != "written\n" {
		t.Fatalf("a write after the upstream's promotion: exit %d %q", code, out)
	}
	if s1, p := foRows(t, e, "standby", "cascade"), foRows(t, e, "primary", "cascade"); s1 != 1 || p != 0 {
		t.Fatalf("rows: %d on the promoted upstream, %d on the old primary", s1, p)
	}
	if v, _ := d.metric(`standbyd_channel_refusals_total{reason="stale_timeline"}`); v != 0 {
		t.Fatalf("the promoted upstream was refused %v times", v)
	}
}

// The control file's fields standbyd reads are where pg_controldata finds
// them, on the server under test.
// claim: liveness.failover-local-role-from-files
func TestControlFileMatchesControldata(t *testing.T) {
	needEnv(t)
	out, err := testcluster.Command(context.Background(), "pg_controldata", env.StandbyData).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	field := func(name string) string {
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("pg_controldata has no %q:\n%s", name, out)
		return ""
	}
	c, err := pgcontrol.Read(env.StandbyData)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strconv.FormatUint(c.SystemIdentifier, 10), field("Database system identifier"); got != want {
		t.Errorf("system identifier %s, pg_controldata says %s", got, want)
	}
	if got, want := strconv.FormatUint(uint64(c.Version), 10), field("pg_control version number"); got != want {
		t.Errorf("pg_control version %s, pg_controldata says %s", got, want)
	}
	if got, want := c.State.String(), field("Database cluster state"); got != want {
		t.Errorf("state %q, pg_controldata says %q", got, want)
	}
	if got, want := strconv.FormatUint(uint64(c.CheckpointTimeline), 10), field("Latest checkpoint's TimeLineID"); got != want {
		t.Errorf("checkpoint timeline %s, pg_controldata says %s", got, want)
	}
	n, err := localnode.ReadFiles(env.StandbyData)
	if err != nil || n.Role != localnode.RoleStandby || n.Timeline != 1 {
		t.Fatalf("the shared standby reads as %+v, %v", n, err)
	}
}

// With the local connection (standby.conninfo) and no readable data
// directory, pg_is_in_recovery() alone tells the promotion.
// claim: liveness.failover-local-connection
func TestFailoverPromotionSeenOverLocalConnection(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := context.Background()
	installFailoverHandler(t, e)
	empty := t.TempDir()
	d := startDaemonWith(t, daemonConfig{
		standbyData: empty,
		standby:     fmt.Sprintf("  conninfo: \"host=%s port=%d user=postgres dbname=postgres\"\n", e.SocketDir, e.StandbyPort),
		channel: fmt.Sprintf("  conninfo: %q\n  check_identity: false\n",
			fmt.Sprintf("user=%s passfile=%s host=127.0.0.1 port=%d", testcluster.ChannelRole, e.PassFile, e.PrimaryPort)),
	})
	d.waitReady(30 * time.Second)
	if !d.poll(10*time.Second, func() bool {
		st := d.status(ctx)
		return st.Local != nil && st.Local.Role == "standby"
	}) {
		t.Fatalf("the local connection gave no role: %+v", d.status(ctx).Local)
	}
	promote(t, e, "standby")
	promoted := time.Now()
	if !d.poll(15*time.Second, func() bool { return d.readyz() == http.StatusServiceUnavailable }) {
		t.Fatalf("still ready 15s after the promotion: %+v", d.status(ctx))
	}
	t.Logf("readiness false %s after pg_promote() returned (local connection only)", time.Since(promoted).Round(time.Millisecond))
	rows := foRows(t, e, "primary", "")
	if _, _, code := d.call("fo_write", "after"); code != 7 {
		t.Fatalf("a call after the promotion: exit %d", code)
	}
	if st := d.status(ctx); st.Local == nil || st.Local.Role != "primary" || st.Local.Timeline != 2 {
		t.Fatalf("local node after the promotion: %+v", st.Local)
	}
	if !strings.Contains(d.log(), `"source":"local connection"`) {
		t.Fatal("the log does not say the local connection decided")
	}
	if n := foRows(t, e, "primary", ""); n != rows {
		t.Fatalf("rows on the old primary: %d, then %d", rows, n)
	}
}
