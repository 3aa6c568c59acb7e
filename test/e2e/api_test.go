package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/standbyd/standbyd/internal/protocol"
)

// mixedCalls runs callers × each calls of N, the echo handler and ping with
// arguments unique to each call, and checks every reply's content. It
// returns outcomes by kind; a wrong reply fails the test.
func mixedCalls(t *testing.T, d *daemon, callers, each int) map[string]int {
	return mixedCallsUntil(t, d, callers, each, time.Time{}, 0)
}

// mixedCallsUntil is mixedCalls that, with a non-zero until, keeps calling
// (pausing between calls) until then instead of stopping after each calls.
func mixedCallsUntil(t *testing.T, d *daemon, callers, each int, until time.Time, pause time.Duration) map[string]int {
	t.Helper()
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := client.New(d.socket)
			defer cl.Close()
			for i := 0; until.IsZero() && i < each || !until.IsZero() && time.Now().Before(until); i++ {
				time.Sleep(pause)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var (
					op      string
					payload []byte
					check   func([]byte) bool
				)
				switch i % 3 {
				case 0:
					args := [3]int32{int32(c), int32(i), int32(c*1000 + i)}
					op, payload = "N", protocol.AppendN(nil, args)
					check = func(b []byte) bool {
						got, err := protocol.ParseN(b)
						want, _ := protocol.ApplyN(args)
						return err == nil && got == want
					}
				case 1:
					text := fmt.Sprintf("caller %d call %d", c, i)
					op, payload = "echo", []byte(text)
					check = func(b []byte) bool { return string(b) == "echo:"+text }
				default:
					op = "ping"
					check = func(b []byte) bool { _, err := protocol.ParsePingReply(b); return err == nil }
				}
				out, err := cl.Call(ctx, op, payload)
				cancel()
				kind := "ok"
				var ae *client.Error
				switch {
				case err == nil:
					if !check(out) {
						t.Errorf("caller %d call %d (%s): wrong reply % x", c, i, op, out)
					}
				case errors.As(err, &ae):
					kind = ae.Kind
				default:
					kind = "client error"
					t.Errorf("caller %d call %d: %v", c, i, err)
				}
				mu.Lock()
				outcomes[kind]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return outcomes
}

func TestFiftyCallersThroughOneAndSeveralSessions(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	for _, sessions := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d sessions", sessions), func(t *testing.T) {
			d := startDaemon(t, fmt.Sprintf("  sessions: %d\n", sessions))
			d.waitReady(30 * time.Second)
			if !d.poll(20*time.Second, func() bool { return d.status(context.Background()).ReadySessions == sessions }) {
				t.Fatalf("%d sessions not ready: %+v", sessions, d.status(context.Background()))
			}
			got := primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'standbyd' AND query = 'CALL standbyd.serve()'")
			if got != strconv.Itoa(sessions) {
				t.Fatalf("%s channel backends on the primary, want %d", got, sessions)
			}
			start := time.Now()
			outcomes := mixedCalls(t, d, 50, 30)
			t.Logf("%d sessions: 1500 calls from 50 callers in %s: %v", sessions, time.Since(start).Round(time.Millisecond), outcomes)
			if outcomes["ok"] != 1500 {
				t.Fatalf("outcomes %v", outcomes)
			}
		})
	}
}

// A primary restart while 50 callers call: every call gets a documented
// outcome (never a wrong reply), and service comes back.
func TestCallersThroughAPrimaryRestart(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "  sessions: 2\n")
	d.waitReady(30 * time.Second)
	done := make(chan map[string]int)
	go func() { done <- mixedCallsUntil(t, d, 50, 0, time.Now().Add(4*time.Second), 10*time.Millisecond) }()
	waitFor(t, 10*time.Second, "calls answered before the restart", func() bool {
		return d.metricSum("standbyd_requests_total") > 0
	})
	ctx := context.Background()
	if err := env.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the outage's length, not a wait for an event
	if err := env.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	outcomes := <-done
	t.Logf("calls through a restart: %v", outcomes)
	for kind := range outcomes {
		switch kind {
		case "ok", client.KindChannelUnavailable, client.KindOutcomeUnknown:
		default:
			t.Errorf("undocumented outcome %q (%d)", kind, outcomes[kind])
		}
	}
	if outcomes["ok"] == 0 {
		t.Fatal("no call succeeded")
	}
	if n := d.metricSum("standbyd_channel_disconnects_total"); n < 2 {
		t.Fatalf("the restart did not happen during the calls (disconnects %v)", n)
	}
	d.waitReady(30 * time.Second)
	if out, _, code := d.call("echo", "back"); code != 0 || out != "echo:back\n" {
		t.Fatalf("after the restart: %d %q", code, out)
	}
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
}

func postJSON(t *testing.T, d *daemon, path, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://standbyd"+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// claim: liveness.caller-gives-up
// claim: api.json-form
// claim: api.queue-limit-busy
// claim: api.vanished-caller
// claim: api.error-kinds
func TestJSONFormBusyAndBadInput(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	js := map[string]string{"Content-Type": "application/json"}

	code, body := postJSON(t, d, "/v1/call/N", `{"int32":[100,200,300]}`, js)
	var resp client.CallResponse
	if code != 200 || json.Unmarshal(body, &resp) != nil || fmt.Sprint(resp.Int32) != "[400 500 600]" || resp.Op != "N" {
		t.Fatalf("JSON N: %d %s", code, body)
	}
	code, body = postJSON(t, d, "/v1/call/echo", `{"text":"json"}`, js)
	if code != 200 || json.Unmarshal(body, &resp) != nil || resp.Text == nil || *resp.Text != "echo:json" {
		t.Fatalf("JSON echo: %d %s", code, body)
	}
	for _, bad := range []string{`{"text":`, `{"txt":"x"}`, `{"text":"a","hex":"00"}`, `{"hex":"zz"}`} {
		code, body = postJSON(t, d, "/v1/call/echo", bad, js)
		if code != 400 || !strings.Contains(string(body), client.KindBadRequest) {
			t.Fatalf("bad JSON %s: %d %s", bad, code, body)
		}
	}
	code, body = postJSON(t, d, "/v1/call/no_such_handler", "", nil)
	if code != 400 || !strings.Contains(string(body), "no_such_handler") {
		t.Fatalf("unknown op name: %d %s", code, body)
	}
	code, body = postJSON(t, d, "/v1/call/echo", strings.Repeat("x", 1<<20), nil)
	if code != 413 || !strings.Contains(string(body), client.KindPayloadTooLarge) {
		t.Fatalf("oversize payload: %d %.100s", code, body)
	}
	code, _ = postJSON(t, d, "/v1/call/N?timeout=soon", "", nil)
	if code != 400 {
		t.Fatalf("bad timeout: %d", code)
	}

	// A client that sends half a request and stalls, and one whose deadline
	// passes in the middle of a slow call (its request on the wire: the
	// reply is read and dropped when it comes), disturb nobody: the same
	// session serves the next call.
	stalled, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n\x00\x00")
	pid := d.status(context.Background()).ChannelBackendID
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = d.client().Call(ctx, "nap", []byte("1"))
	cancel()
	var ae *client.Error
	if !errors.Is(err, client.ErrOutcomeUnknown) && !(errors.As(err, &ae) && ae.Kind == client.KindOutcomeUnknown) {
		t.Fatalf("a 1s nap with a 200ms deadline: %v, want outcome unknown", err)
	}
	if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
		t.Fatalf("after a stalled client and one that gave up: %d %q", code, out)
	}
	if now := d.status(context.Background()).ChannelBackendID; now != pid {
		t.Fatalf("the session was replaced (%d -> %d): the abandoned call's reply was not drained", pid, now)
	}

	// busy: one session held by a 3s nap (one request in flight), a queue
	// of 2: the fourth call is refused at once.
	b := startDaemon(t, "  max_in_flight: 1\n")
	b.waitReady(30 * time.Second)
	bcfg := strings.Replace(readFile(t, b.dir+"/standbyd.yaml"), "api:\n", "api:\n  queue_limit: 2\n", 1)
	_ = b.stop()
	os.WriteFile(b.dir+"/standbyd.yaml", []byte(bcfg), 0o600)
	q := restartDaemon(t, b)
	q.waitReady(30 * time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = q.client().Call(ctx, "nap", []byte("3"))
		}()
	}
	// The queue is full once one nap is in flight and two wait.
	waitFor(t, 10*time.Second, "one call in flight and two waiting", func() bool {
		inFlight, _ := q.metric("standbyd_requests_in_flight")
		waiting, _ := q.metric("standbyd_calls_waiting")
		return inFlight == 1 && waiting == 2
	})
	start := time.Now()
	_, err = q.client().Call(context.Background(), "N", protocol.AppendN(nil, [3]int32{}))
	if !errors.As(err, &ae) || ae.Kind != client.KindBusy || ae.HTTPStatus != 429 {
		t.Fatalf("fourth call with queue_limit 2: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("busy took %s: it must be immediate", time.Since(start))
	}
	wg.Wait()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// restartDaemon starts the binary again with d's config file.
func restartDaemon(t *testing.T, d *daemon) *daemon {
	t.Helper()
	n := &daemon{t: t, dir: d.dir, socket: d.socket, metrics: d.metrics, logPath: d.logPath + ".2", done: make(chan error, 1)}
	logf, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(daemonBin, "run", "--config", d.dir+"/standbyd.yaml")
	n.cmd.Env = raceEnv()
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() { checkRaceFree(t, n.stop(), n.log()) })
	return n
}

// The socket keeps other users out: an unprivileged OS user cannot call.
// claim: api.socket-mode
func TestSocketPermissions(t *testing.T) {
	needEnv(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to the nobody user: run it as root (make test does)")
	}
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	// The directory is open to all; only the socket's mode (0660) protects.
	if err := os.Chmod(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.socket)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	binDir, err := os.MkdirTemp("", "sbdbin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "standbyd")
	if b, err := os.ReadFile(daemonBin); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copying the binary")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command("runuser", "-u", "nobody", "--", bin, "call", "--socket", d.socket, "N", "1", "2", "3")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(errOut.String(), "permission denied") {
		t.Fatalf("nobody calling: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	// The owner (root here) still can.
	if o, _, code := d.call("N", "1", "2", "3"); code != 0 || o != "301 302 303\n" {
		t.Fatalf("owner: %d %q", code, o)
	}
}
