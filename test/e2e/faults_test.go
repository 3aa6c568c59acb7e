package e2e

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
	"github.com/standbyd/standbyd/internal/testskip"
)

// passfileFor writes a passfile valid for any port (the proxy's), with the
// channel role's password from the cluster's passfile.
func passfileFor(t *testing.T, e *testcluster.Env) string {
	t.Helper()
	b, err := os.ReadFile(e.PassFile)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), ":")
	p := t.TempDir() + "/pgpass"
	if err := os.WriteFile(p, []byte("*:*:*:"+f[3]+":"+f[4]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// conninfoVia points the daemon at another cluster than the shared
// standby's, so the identity check is off.
func conninfoVia(port int, passfile string) string {
	return fmt.Sprintf("  check_identity: false\n  conninfo: \"host=127.0.0.1 port=%d user=%s sslmode=disable passfile=%s\"\n", port, testcluster.ChannelRole, passfile)
}

// caller keeps calling N with arguments unique to each call and sorts the
// outcomes; a reply that does not match its call is a misroute.
type caller struct {
	c        *client.Client
	stop     chan struct{}
	done     chan struct{}
	calls    atomic.Int64
	mu       sync.Mutex
	outcomes map[string]int
	misroute []string
	longest  time.Duration // the longest call, deadline 2s
}

func startCaller(d *daemon) *caller {
	cl := &caller{c: client.New(d.socket), stop: make(chan struct{}), done: make(chan struct{}), outcomes: map[string]int{}}
	go cl.run()
	return cl
}

func (cl *caller) run() {
	defer close(cl.done)
	defer cl.c.Close()
	for i := int32(1); ; i++ {
		select {
		case <-cl.stop:
			return
		default:
		}
		args := [3]int32{i, -i, i % 1000}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		began := time.Now()
		out, err := cl.c.Call(ctx, "N", protocol.AppendN(nil, args))
		took := time.Since(began)
		cancel()
		cl.calls.Add(1)
		cl.mu.Lock()
		cl.longest = max(cl.longest, took)
		cl.mu.Unlock()
		kind := "ok"
		var ae *client.Error
		switch {
		case err == nil:
			got, perr := protocol.ParseN(out)
			if want, _ := protocol.ApplyN(args); perr != nil || got != want {
				cl.mu.Lock()
				cl.misroute = append(cl.misroute, fmt.Sprintf("N %v -> %v", args, got))
				cl.mu.Unlock()
			}
		case errors.As(err, &ae):
			kind = ae.Kind
		default:
			kind = "client: " + err.Error()
		}
		cl.mu.Lock()
		cl.outcomes[kind]++
		cl.mu.Unlock()
		if kind != "ok" {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func (cl *caller) finish() (int64, map[string]int, []string) {
	close(cl.stop)
	<-cl.done
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.calls.Load(), cl.outcomes, cl.misroute
}

func vmRSSKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return v
		}
	}
	return 0
}

// waitState polls /readyz for want (true: ready) and returns how long it took.
func (d *daemon) waitState(ready bool, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	want := http.StatusServiceUnavailable
	if ready {
		want = http.StatusOK
	}
	ok := d.poll(timeout, func() bool { return d.readyz() == want })
	return time.Since(start), ok
}

func killAndWaitPostmaster(t *testing.T, e *testcluster.Env) {
	t.Helper()
	pm, err := e.PostmasterPID("primary")
	if err != nil {
		t.Fatal(err)
	}
	children, _ := exec.Command("pgrep", "-P", strconv.Itoa(pm)).Output()
	if err := syscallKill(pm); err != nil {
		t.Fatal(err)
	}
	// The orphaned backends notice the postmaster's death and exit; the
	// shared memory is free once they have.
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range strings.Fields(string(children)) {
		pid, _ := strconv.Atoi(c)
		for processRunning(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

type faultResult struct {
	name              string
	at                time.Time // when the fault was injected
	detect, recovered time.Duration
}

// injectFaults runs each fault against e while d serves cl, and measures
// how long the daemon took to notice (channel not ready) and to recover.
func injectFaults(t *testing.T, e *testcluster.Env, p *faultProxy, d *daemon, kinds []string) []faultResult {
	t.Helper()
	ctx := context.Background()
	var results []faultResult
	for _, kind := range kinds {
		d.waitReady(60 * time.Second)
		time.Sleep(300 * time.Millisecond) // some calls in between
		st := d.status(ctx)
		pid := strconv.Itoa(int(st.ChannelBackendID))
		start := time.Now()
		var heal func()
		switch kind {
		case "terminate":
			if _, err := e.PrimarySQL(ctx, "SELECT pg_terminate_backend("+pid+")"); err != nil {
				t.Fatal(err)
			}
		case "restart-fast", "restart-immediate":
			mode := strings.TrimPrefix(kind, "restart-")
			if err := e.StopServer(ctx, "primary", mode); err != nil {
				t.Fatal(err)
			}
			heal = func() {
				if err := e.StartServer(ctx, "primary"); err != nil {
					t.Fatal(err)
				}
			}
		case "kill-backend":
			if err := syscallKill(int(st.ChannelBackendID)); err != nil {
				t.Fatal(err)
			}
		case "kill-postmaster":
			killAndWaitPostmaster(t, e)
			heal = func() {
				if err := e.StartServer(ctx, "primary"); err != nil {
					t.Fatalf("%v\n%s", err, e.LogTail("primary", 15))
				}
			}
		case "blackhole":
			p.setBlackhole(true)
			heal = func() { p.setBlackhole(false) }
		case "reset":
			p.reset()
		case "latency":
			// Slower than the slow threshold, faster than the reply timeout:
			// the channel must stay up.
			// The counters, unlike /readyz read at the end, also see a
			// session that dropped and came back within the window.
			disconnects := d.metricSum("standbyd_channel_disconnects_total")
			connects, _ := d.metric("standbyd_channel_connects_total")
			p.setLatency(400 * time.Millisecond)
			time.Sleep(3 * time.Second) // the fault's duration, not a wait for an event
			p.setLatency(0)
			if d.readyz() != http.StatusOK {
				t.Fatalf("added latency below the reply timeout took the channel down")
			}
			if after := d.metricSum("standbyd_channel_disconnects_total"); after != disconnects {
				t.Fatalf("added latency below the reply timeout ended %v sessions", after-disconnects)
			}
			if after, _ := d.metric("standbyd_channel_connects_total"); after != connects {
				t.Fatalf("added latency below the reply timeout: %v new sessions", after-connects)
			}
			results = append(results, faultResult{name: kind, at: start})
			continue
		default:
			t.Fatalf("unknown fault %s", kind)
		}
		if _, ok := d.waitState(false, 30*time.Second); !ok {
			t.Fatalf("%s: the daemon did not notice within 30s", kind)
		}
		detect := time.Since(start)
		healStart := time.Now()
		if heal != nil {
			heal()
		}
		if _, ok := d.waitState(true, 60*time.Second); !ok {
			t.Fatalf("%s: the daemon did not recover within 60s", kind)
		}
		results = append(results, faultResult{name: kind, at: start, detect: detect, recovered: time.Since(healStart)})
		t.Logf("fault %-17s detected after %6s, ready again %6s after the primary/path was back", kind,
			detect.Round(time.Millisecond), time.Since(healStart).Round(time.Millisecond))
	}
	return results
}

// faultChannelConfig: the timings of startDaemon's config (heartbeat 500ms,
// reply timeout 2s, backoff 100ms to 1s) are the ones the fault tests expect.
const faultChannelConfig = ""

// Every fault kind while a caller keeps calling: each call gets exactly one
// outcome, no reply reaches the wrong call, the daemon notices and comes
// back, and its memory does not grow.
// claim: liveness.request-slow
// claim: liveness.blackhole-reply-timeout
// claim: liveness.unknown-never-resent
// claim: liveness.no-wait-past-deadline
// claim: liveness.transient-classes
func TestFaultsUnderLoad(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	installOnce(t, e)
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", e.PrimaryPort))
	d := startDaemon(t, faultChannelConfig+conninfoVia(p.port(), passfileFor(t, e)))
	d.waitReady(30 * time.Second)
	cl := startCaller(d)
	w := startWriter(d)
	waitFor(t, 30*time.Second, "100 calls before the faults", func() bool { return cl.calls.Load() >= 100 })
	rssBefore := vmRSSKB(d.cmd.Process.Pid)

	results := injectFaults(t, e, p, d, []string{"terminate", "restart-fast", "restart-immediate", "kill-backend",
		"kill-postmaster", "blackhole", "reset", "latency"})
	d.waitReady(60 * time.Second)
	after := cl.calls.Load()
	waitFor(t, 30*time.Second, "100 calls after the faults", func() bool { return cl.calls.Load() >= after+100 })
	calls, outcomes, misroutes := cl.finish()
	once := w.finish(t, e)
	rssAfter := vmRSSKB(d.cmd.Process.Pid)
	t.Logf("at most once: %s", once)
	once.check(t)

	t.Logf("%d calls: %v; daemon VmRSS %d kB -> %d kB", calls, outcomes, rssBefore, rssAfter)
	sum := 0
	for _, n := range outcomes {
		sum += n
	}
	if int64(sum) != calls {
		t.Fatalf("%d calls but %d outcomes", calls, sum)
	}
	if len(misroutes) > 0 {
		t.Fatalf("replies reached the wrong call: %v", misroutes)
	}
	// The daemon answers at the call's deadline at the latest (2s); allow
	// for scheduling on a loaded machine, not for a second timeout.
	if cl.longest > 3*time.Second {
		t.Fatalf("a call with a 2s deadline took %s", cl.longest)
	}
	t.Logf("longest call: %s (deadline 2s)", cl.longest.Round(time.Millisecond))
	if outcomes["ok"] < 100 {
		t.Fatalf("only %d calls succeeded", outcomes["ok"])
	}
	for kind := range outcomes {
		if strings.HasPrefix(kind, "client:") {
			t.Fatalf("a call failed without an answer from the daemon: %v", outcomes)
		}
	}
	for _, r := range results {
		// heartbeat 500ms + reply timeout 2s, plus a margin for a loaded machine.
		if r.name == "blackhole" && r.detect > 2*time.Second+500*time.Millisecond+3*time.Second {
			t.Errorf("blackhole detected after %s, configured reply timeout 2s + heartbeat 0.5s", r.detect)
		}
	}
	// The race detector's shadow memory grows with the heap: a daemon built
	// with -race (make test) gets more room.
	limitKB := 20 * 1024
	if builtWithRace(daemonBin) {
		limitKB = 64 * 1024
	}
	if rssAfter-rssBefore > limitKB {
		t.Errorf("daemon VmRSS grew by %d kB (limit %d kB)", rssAfter-rssBefore, limitKB)
	}
	// The slow log under real latency (TestRequestSlowAtHalfTheReplyTimeout
	// checks the threshold and the count).
	if !strings.Contains(d.log(), "request slow") {
		t.Error("400ms of latency with a 1s slow threshold logged no slow request")
	}
	if n, _ := d.metric(`standbyd_channel_connect_errors_total{class="transient"}`); n == 0 {
		t.Error("no transient connect errors counted while the primary was down")
	}
}

// The primary down when standbyd starts: it runs, says it is not ready, and
// connects when the primary comes; SIGTERM during backoff exits promptly.
// claim: liveness.shutdown-during-backoff
func TestStartWithPrimaryDown(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := context.Background()
	if err := e.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	pf := passfileFor(t, e)
	d := startDaemon(t, faultChannelConfig+conninfoVia(e.PrimaryPort, pf))
	if _, ok := d.waitState(false, 10*time.Second); !ok {
		t.Fatal("ready with the primary down?")
	}
	var st client.StatusResponse
	waitFor(t, 10*time.Second, "a status naming the refused connection", func() bool {
		st = d.status(ctx)
		return strings.Contains(st.LastError, "refused")
	})
	if st.State != "backing_off" && st.State != "connecting" {
		t.Fatalf("status with the primary down: %+v", st)
	}
	// Two failed attempts at least: the line below is for a run of failures.
	waitFor(t, 10*time.Second, "two failed attempts", func() bool {
		return d.metricSum("standbyd_channel_connect_errors_total") >= 2
	})
	if err := e.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	d.waitReady(30 * time.Second)
	if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
		t.Fatalf("after the primary came up: %d %q", code, out)
	}
	// One line says how many attempts failed and for how long.
	// claim: liveness.channel-back-line
	back := regexp.MustCompile(`"msg":"channel back after failed attempts",.*"failed_attempts":([1-9][0-9]*),"failing_for":"[0-9.]+m?s"`)
	if n := len(back.FindAllString(d.log(), -1)); n != 1 {
		t.Fatalf("%d \"channel back after failed attempts\" lines with the attempts and the time, want 1:\n%s", n, grepLines(d.log(), "channel back"))
	}

	// SIGTERM while backing off: the daemon stops at once, not when the
	// backoff is over. A 30s backoff against a 10s limit tells them apart.
	if err := e.StopServer(ctx, "primary", "immediate"); err != nil {
		t.Fatal(err)
	}
	defer e.StartServer(ctx, "primary")
	if _, ok := d.waitState(false, 10*time.Second); !ok {
		t.Fatal("did not notice the stop")
	}
	slow := startDaemonWith(t, daemonConfig{channel: conninfoVia(e.PrimaryPort, pf), backoff: "  backoff_min: 30s\n  backoff_max: 60s\n"})
	waitFor(t, 10*time.Second, "the daemon to back off", func() bool { return slow.state() == "backing_off" })
	took, err := slow.stopWithin(10 * time.Second)
	if err != nil {
		t.Fatalf("SIGTERM during a 30s backoff: %v", err)
	}
	t.Logf("SIGTERM during backoff: exited after %s", took.Round(time.Millisecond))
	if err := d.stop(); err != nil {
		t.Fatalf("exit after SIGTERM during backoff: %v", err)
	}
}

// A wrong password is a configuration error: counted as such, reported in
// the status, retried at the slow end of the backoff.
// claim: liveness.configuration-retried-slowly
// claim: readme.check-connect-explains
// claim: liveness.configuration-classes
// claim: readme.check-shows-source
func TestConfigurationErrorsAreRetriedSlowly(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	d := startDaemon(t, faultChannelConfig+fmt.Sprintf("  check_identity: false\n  conninfo: \"host=127.0.0.1 port=%d user=%s password=wrong sslmode=disable\"\n", e.PrimaryPort, testcluster.ChannelRole))
	// When each failed attempt is counted. The transient backoff (from
	// backoff_min, 100ms) would space the first ones 100-200ms apart; after
	// a configuration error the next attempt comes near backoff_max (1s),
	// from 750ms on.
	var at []time.Time
	last := 0.0
	d.poll(20*time.Second, func() bool {
		n, _ := d.metric(`standbyd_channel_connect_errors_total{class="configuration"}`)
		if n > last {
			at = append(at, time.Now())
			last = n
		}
		return len(at) >= 4
	})
	if len(at) < 4 {
		t.Fatalf("configuration errors counted: %v", last)
	}
	for i := 1; i < len(at); i++ {
		// Polling every 50ms can shorten a gap by that much.
		if gap := at[i].Sub(at[i-1]); gap < 700*time.Millisecond {
			t.Fatalf("attempt %d came %s after the previous one: configuration errors must be retried near backoff_max (1s)", i+1, gap)
		}
	}
	st := d.status(context.Background())
	if !strings.Contains(st.LastError, "28P01") || strings.Contains(st.LastError, "wrong") {
		t.Fatalf("status: %q (must name the failure, never the password)", st.LastError)
	}
	if !strings.Contains(d.log(), `"class":"configuration"`) || strings.Contains(d.log(), "password=wrong") {
		t.Fatal("the log must classify the error and never show the password")
	}
	out, _, code := d.cli("check", "--config", d.dir+"/standbyd.yaml", "--connect")
	if code != 4 || !strings.Contains(out, "wrong password") || strings.Contains(out, "password=wrong") || !strings.Contains(out, "password=********") {
		t.Fatalf("check --connect with a wrong password: exit %d\n%s", code, out)
	}
}

// fail_fast: a call while the channel is down fails at once.
// claim: liveness.fail-fast
func TestFailFast(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	if err := e.StopServer(context.Background(), "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, faultChannelConfig+"  fail_fast: true\n"+conninfoVia(e.PrimaryPort, passfileFor(t, e)))
	d.waitState(false, 10*time.Second)
	start := time.Now()
	_, errOut, code := d.call("--timeout", "20s", "N", "1", "2", "3")
	if code != 4 || !strings.Contains(errOut, "fail_fast") {
		t.Fatalf("fail_fast call: %d %q", code, errOut)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("fail_fast call waited %s", el)
	}
}

// TestSoak loops random faults under load for STANDBYD_SOAK (a duration;
// `make soak` sets it, 10m by default) and writes a report to
// STANDBYD_SOAK_REPORT. Without STANDBYD_SOAK it runs for a minute under CI
// and not at all elsewhere.
// claim: liveness.soak-checks
func TestSoak(t *testing.T) {
	needEnv(t)
	soak := os.Getenv("STANDBYD_SOAK")
	if soak == "" && testskip.InCI() {
		soak = "1m" // CI runs a short soak rather than none
	}
	dur, err := time.ParseDuration(soak)
	if err != nil || dur <= 0 {
		testskip.Skip(t, "set STANDBYD_SOAK to a duration (make soak)")
	}
	e := testcluster.New(t, testcluster.Options{})
	installOnce(t, e)
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", e.PrimaryPort))
	d := startDaemon(t, conninfoVia(p.port(), passfileFor(t, e)))
	d.waitReady(30 * time.Second)
	cl := startCaller(d)
	w := startWriter(d)
	kinds := []string{"terminate", "restart-fast", "restart-immediate", "kill-backend", "kill-postmaster", "blackhole", "reset", "latency"}
	rng := mathrand.New(mathrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var all []faultResult
	peakRSS, peakGoroutines := 0, 0.0
	start := time.Now()
	for time.Since(start) < dur {
		all = append(all, injectFaults(t, e, p, d, []string{kinds[rng.IntN(len(kinds))]})...)
		if r := vmRSSKB(d.cmd.Process.Pid); r > peakRSS {
			peakRSS = r
		}
		if g, _ := d.metric("go_goroutines"); g > peakGoroutines {
			peakGoroutines = g
		}
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond) // load between faults
	}
	d.waitReady(60 * time.Second)
	calls, outcomes, misroutes := cl.finish()
	once := w.finish(t, e)

	var b strings.Builder
	fmt.Fprintf(&b, "# standbyd soak, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Duration %s; %d faults injected; heartbeat 500ms, reply timeout 2s, backoff 100ms to 1s.\n\n", time.Since(start).Round(time.Second), len(all))
	fmt.Fprintf(&b, "Calls: %d (one N call after another, unique arguments, 2s deadline each).\n\n| outcome | calls |\n|---|---:|\n", calls)
	var okinds []string
	for k := range outcomes {
		okinds = append(okinds, k)
	}
	sort.Strings(okinds)
	for _, k := range okinds {
		fmt.Fprintf(&b, "| %s | %d |\n", k, outcomes[k])
	}
	fmt.Fprintf(&b, "\nReplies that reached the wrong call: %d. Longest call: %s (deadline 2s).\n\n", len(misroutes), cl.longest.Round(time.Millisecond))
	fmt.Fprintf(&b, "At most once, alongside: a writing, non-idempotent handler inserting one row per call id (2s deadline each).\n\n")
	fmt.Fprintf(&b, "| writing calls | ok | outcome_unknown | other | rows | double executions | rows for calls never sent | ok calls without a row |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d | %d |\n\n", once.calls, once.ok, once.unknown, once.other, once.rows, once.doubles, once.unsent, once.missing)
	fmt.Fprintf(&b, "Which requests reached the primary, from the handler's LOG line (written before its transaction can end): of the %d outcome_unknown calls, %d reached the handler and %d never did (lost on the way: a request written into a connection that a fault had already cut, or swallowed by a blackholed path, which the daemon cannot tell from one that ran); %d of the calls answered channel_unavailable (not sent) reached it (must be 0).\n\n",
		once.unknown, once.unknownReceived, once.unknownNotReceived, once.unavailableReceived)
	if len(once.lostAt) > 0 {
		// Each lost request is put on the last fault injected before its
		// call ended: the fault that cut it off.
		byFault := map[string]int{}
		for _, end := range once.lostAt {
			name := "before any fault"
			for _, f := range all {
				if !f.at.After(end) {
					name = f.name
				}
			}
			byFault[name]++
		}
		var names []string
		for n := range byFault {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "| fault before the lost request | outcome_unknown calls that never reached the handler |\n|---|---:|\n")
		for _, n := range names {
			fmt.Fprintf(&b, "| %s | %d |\n", n, byFault[n])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| fault | count | detection median | detection max | recovery median | recovery max |\n|---|---:|---:|---:|---:|---:|\n")
	for _, k := range kinds {
		var det, rec []time.Duration
		for _, r := range all {
			if r.name == k {
				det, rec = append(det, r.detect), append(rec, r.recovered)
			}
		}
		if len(det) == 0 {
			continue
		}
		det, rec = sortedDurations(det), sortedDurations(rec)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", k, len(det),
			det[len(det)/2].Round(time.Millisecond), det[len(det)-1].Round(time.Millisecond),
			rec[len(rec)/2].Round(time.Millisecond), rec[len(rec)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\nDetection: from the fault to /readyz answering 503. Recovery: from the primary or path being back to /readyz 200. Latency faults (400ms added for 3s) must not take the channel down and have no times.\n\n")
	fmt.Fprintf(&b, "Daemon: peak VmRSS %d kB, peak goroutines %.0f.\n", peakRSS, peakGoroutines)
	report := b.String()
	t.Log("\n" + report)
	if path := os.Getenv("STANDBYD_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(misroutes) > 0 {
		t.Fatalf("replies reached the wrong call: %v", misroutes)
	}
	once.check(t)
}

func sortedDurations(ds []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// A conninfo that points at another cluster (its system identifier is not
// the standby's) is refused as a configuration error and never served.
// claim: readme.identity-check
// claim: readme.check-connect-explains
// claim: protocol.hello-identity
func TestIdentityMismatchRefused(t *testing.T) {
	needEnv(t)
	other := testcluster.New(t, testcluster.Options{})
	d := startDaemon(t, fmt.Sprintf("  conninfo: \"host=127.0.0.1 port=%d user=%s sslmode=disable passfile=%s\"\n",
		other.PrimaryPort, testcluster.ChannelRole, passfileFor(t, other)))
	if !d.poll(15*time.Second, func() bool {
		n, _ := d.metric(`standbyd_channel_connect_errors_total{class="configuration"}`)
		return n >= 1
	}) {
		t.Fatal("no configuration error counted")
	}
	if d.readyz() == http.StatusOK {
		t.Fatal("ready with another cluster")
	}
	st := d.status(context.Background())
	if !strings.Contains(st.LastError, "another cluster") {
		t.Fatalf("status: %q", st.LastError)
	}
	if n, _ := d.metric("standbyd_identity_mismatches_total"); n < 1 {
		t.Fatalf("identity mismatches counted: %v", n)
	}
	out, _, code := d.cli("check", "--config", d.dir+"/standbyd.yaml", "--connect")
	if code != 4 || !strings.Contains(out, "connect: FAILED (configuration)") || !strings.Contains(out, "another cluster than this standby") {
		t.Fatalf("check --connect: exit %d\n%s", code, out)
	}
	if _, errOut, code := d.call("--timeout", "1s", "N", "1", "2", "3"); code != 4 {
		t.Fatalf("call against the wrong cluster: %d %s", code, errOut)
	}
}
