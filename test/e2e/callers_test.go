package e2e

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// napping reports whether a channel backend is in the nap handler's
// pg_sleep.
func napping(t *testing.T) bool {
	return primarySQL(t, "SELECT count(*) FROM pg_stat_activity WHERE query = 'CALL standbyd.serve()' AND wait_event = 'PgSleep'") != "0"
}

// slowDaemon is a daemon whose reply timeout outlasts the nap handler's
// sleeps used here.
func slowDaemon(t *testing.T) *daemon {
	t.Helper()
	registerHandlers(t)
	t.Setenv("STANDBYD_CHANNEL_REPLY_TIMEOUT", "60s")
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	return d
}

// A daemon killed while it carries a call leaves the CLI with exit 5
// (outcome unknown), never 4: the request was handed over and may run.
func TestCLIExitWhenTheDaemonDiesMidCall(t *testing.T) {
	needEnv(t)
	d := slowDaemon(t)
	cmd := exec.Command(daemonBin, "call", "--socket", d.socket, "--timeout", "60s", "nap", "30")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !d.poll(20*time.Second, func() bool { return napping(t) }) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the nap never started on the primary")
	}
	_ = d.cmd.Process.Kill()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Fatalf("call through a killed daemon: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "no answer") {
		t.Fatalf("stderr does not say the request was handed over: %q", errOut.String())
	}
	// With the daemon gone (its listening socket closed with it), nothing
	// can be written: exit 4.
	d.exitErr, d.exited = <-d.done, true
	if _, stderr, code := d.call("N", "1", "2", "3"); code != 4 {
		t.Fatalf("call with no daemon: exit %d, %q", code, stderr)
	}
	// Let the backend end its nap now rather than in 30 seconds.
	primarySQL(t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'CALL standbyd.serve()' AND wait_event = 'PgSleep'")
}

// At SIGTERM, and at SIGINT, the API stops accepting before the sessions
// close: the socket's path is removed, a call in flight gets its reply, a
// new caller finds no daemon (nothing of it is written; `standbyd call`
// exits 4), and the daemon exits 0.
// claim: liveness.shutdown-api-first
// claim: api.shutdown
func TestShutdownStopsTheAPIFirst(t *testing.T) {
	needEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) { testShutdownStopsTheAPIFirst(t, sig) })
	}
}

func testShutdownStopsTheAPIFirst(t *testing.T, sig syscall.Signal) {
	d := slowDaemon(t)
	c := d.client()
	inFlight := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "nap", []byte("2"))
		inFlight <- err
	}()
	if !d.poll(20*time.Second, func() bool { return napping(t) }) {
		t.Fatal("the nap never started on the primary")
	}
	_ = d.cmd.Process.Signal(sig)
	if !d.poll(10*time.Second, func() bool { return strings.Contains(d.log(), "api stopped accepting") }) {
		t.Fatalf("no \"api stopped accepting\" after %v:\n%s", sig, tailLines(d.log(), 20))
	}
	if _, err := os.Lstat(d.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket's path after the API stopped accepting: %v, want it removed", err)
	}
	if _, stderr, code := d.call("N", "1", "2", "3"); code != 4 {
		t.Fatalf("standbyd call after the API stopped accepting: exit %d, %q; want 4", code, stderr)
	}
	late := client.New(d.socket)
	defer late.Close()
	if _, err := late.Call(ctxT(t, 10*time.Second), "N", make([]byte, 12)); !errors.Is(err, client.ErrDaemonUnreachable) {
		t.Fatalf("a call after the API stopped accepting: %v", err)
	}
	if err := <-inFlight; err != nil {
		t.Fatalf("the call in flight at SIGTERM: %v", err)
	}
	select { // no second signal: that would force the exit
	case d.exitErr = <-d.done:
		d.exited = true
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after %v", sig)
	}
	if d.exitErr != nil {
		t.Fatalf("exit: %v", d.exitErr)
	}
	log := d.log()
	if a, b := strings.Index(log, "api stopped accepting"), strings.Index(log, `"to":"stopping"`); a < 0 || b < 0 || a > b {
		t.Fatalf("the API must stop accepting before the channel stops (at %d, %d):\n%s", a, b, tailLines(log, 20))
	}
}

// A second SIGTERM is not swallowed: it ends the daemon at once, without
// waiting for the call in flight.
// claim: liveness.second-sigterm
func TestSecondSIGTERMForcesTheExit(t *testing.T) {
	needEnv(t)
	d := slowDaemon(t)
	c := d.client()
	inFlight := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "nap", []byte("30"))
		inFlight <- err
	}()
	if !d.poll(20*time.Second, func() bool { return napping(t) }) {
		t.Fatal("the nap never started on the primary")
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if !d.poll(10*time.Second, func() bool { return strings.Contains(d.log(), "shutting down") }) {
		t.Fatal("no \"shutting down\" after SIGTERM")
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.done:
		d.exited, d.exitErr = true, err
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after a second SIGTERM (the nap takes 30s)")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(d.log(), "second signal: exiting at once") {
		t.Fatalf("exit after a second SIGTERM: %v\n%s", err, tailLines(d.log(), 10))
	}
	if err := <-inFlight; !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("the call in flight: %v, want outcome unknown", err)
	}
	primarySQL(t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'CALL standbyd.serve()' AND wait_event = 'PgSleep'")
}

// api.allow against real users: nobody may call ping but not N (exit 6,
// counted, logged without the payload); root, named, may call N.
// claim: api.allow
// claim: api.forbidden
func TestAllowListForRealUsers(t *testing.T) {
	needEnv(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to the nobody user: run it as root (make test does)")
	}
	b := startDaemon(t, "")
	b.waitReady(30 * time.Second)
	cfg := strings.Replace(readFile(t, b.dir+"/standbyd.yaml"), "api:\n",
		"api:\n  socket_mode: \"0666\"\n  allow:\n    - ops: [N, put]\n      users: [root]\n", 1)
	_ = b.stop()
	if err := os.WriteFile(b.dir+"/standbyd.yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := restartDaemon(t, b)
	d.waitReady(30 * time.Second)
	if err := os.Chmod(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "sbdbin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	_ = os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "standbyd")
	if b, err := os.ReadFile(daemonBin); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copying the binary")
	}
	asNobody := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		cmd := exec.Command("runuser", append([]string{"-u", "nobody", "--", bin, "call", "--socket", d.socket}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	if _, stderr, code := asNobody("N", "2147480001", "2", "3"); code != 6 || !strings.Contains(stderr, "forbidden") || !strings.Contains(stderr, "uid 65534") {
		t.Fatalf("nobody calling N: exit %d, %q", code, stderr)
	}
	if _, stderr, code := asNobody("ping"); code != 0 {
		t.Fatalf("nobody calling ping: exit %d, %q", code, stderr)
	}
	if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
		t.Fatalf("root calling N: %d %q", code, out)
	}
	if v, ok := d.metric(`standbyd_api_denied_total{op="N"}`); !ok || v != 1 {
		t.Fatalf("denials counted: %v %v", v, ok)
	}
	log := d.log()
	if !strings.Contains(log, "call refused by api.allow") || !strings.Contains(log, `"uid":65534`) {
		t.Fatalf("the refusal is not logged with the caller:\n%s", tailLines(log, 20))
	}
	if strings.Contains(log, "2147480001") {
		t.Fatal("the refused call's payload is in the log")
	}
}
