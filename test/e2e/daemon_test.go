package e2e

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// daemon is a running `standbyd run` process.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	socket  string
	metrics string
	logPath string
	done    chan error
	exited  bool
	exitErr error
}

// startDaemon runs the real binary against the shared standby's data
// directory; extra is appended to the channel section of its config.
func startDaemon(t *testing.T, extraChannel string) *daemon {
	t.Helper()
	return startDaemonFor(t, env.StandbyData, extraChannel)
}

// startDaemonFor is startDaemon against another standby.
func startDaemonFor(t *testing.T, standbyData, extraChannel string) *daemon {
	t.Helper()
	return startDaemonWith(t, daemonConfig{standbyData: standbyData, channel: extraChannel})
}

// daemonConfig is what a test adds to the daemon's configuration: lines
// for the standby, channel and metrics sections (indented by two spaces).
type daemonConfig struct {
	standbyData               string
	standby, channel, metrics string
	// backoff replaces the channel's backoff_min and backoff_max lines.
	backoff string
	// timing replaces the channel's heartbeat_interval and reply_timeout
	// lines; "defaults" leaves both out.
	timing string
}

// startDaemonWith runs the daemon with additions to its configuration.
func startDaemonWith(t *testing.T, dc daemonConfig) *daemon {
	t.Helper()
	standbyData := dc.standbyData
	if standbyData == "" {
		standbyData = env.StandbyData
	}
	timing := dc.timing
	switch timing {
	case "":
		timing = "  heartbeat_interval: 500ms\n  reply_timeout: 2s\n"
	case "defaults":
		timing = ""
	}
	backoff := dc.backoff
	if backoff == "" {
		backoff = "  backoff_min: 100ms\n  backoff_max: 1s\n"
	}
	dir, err := os.MkdirTemp("", "sbd-") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	port, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "api.sock"),
		metrics: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(dir, "standbyd.log"), done: make(chan error, 1)}
	cfg := fmt.Sprintf(`standby:
  data_directory: %s
%s
channel:
%s  connect_timeout: 3s
%s%s
api:
  socket: %s
metrics:
  listen: %s
%s
log:
  format: json
  level: debug
`, standbyData, dc.standby, timing, backoff, dc.channel, d.socket, d.metrics, dc.metrics)
	cfgPath := filepath.Join(dir, "standbyd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(daemonBin, "run", "--config", cfgPath)
	d.cmd.Env = raceEnv()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		checkRaceFree(t, d.stop(), d.log())
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("--- standbyd log ---\n%s", tailLines(string(b), 60))
		}
		os.RemoveAll(dir)
	})
	return d
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and waits; it returns the process's exit error.
func (d *daemon) stop() error {
	_, err := d.stopWithin(20 * time.Second)
	return err
}

// stopWithin sends SIGTERM and waits at most limit for the exit, then
// kills the daemon; it returns how long the exit took.
func (d *daemon) stopWithin(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if d.exited {
		return 0, d.exitErr
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.exited, d.exitErr = true, err
		return time.Since(start), err
	case <-time.After(limit):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.exited, d.exitErr = true, fmt.Errorf("standbyd did not exit within %s of SIGTERM", limit)
		return time.Since(start), d.exitErr
	}
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// waitReady waits until /readyz says the channel is up.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	if !d.poll(timeout, func() bool { return d.readyz() == http.StatusOK }) {
		d.t.Fatalf("channel not ready within %s (readyz %d)", timeout, d.readyz())
	}
}

func (d *daemon) readyz() int {
	resp, err := http.Get("http://" + d.metrics + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (d *daemon) poll(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return true
		}
		select {
		case err := <-d.done:
			d.exited, d.exitErr = true, err
			d.t.Fatalf("standbyd exited: %v\n%s", err, tailLines(d.log(), 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return ok()
}

// metric returns the value of an unlabelled series (or the exact series
// with labels, as written in the exposition format).
func (d *daemon) metric(series string) (float64, bool) {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// metricSum adds up every series of a metric, whatever its labels.
func (d *daemon) metricSum(name string) float64 {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// call runs `standbyd call` against the daemon's socket.
func (d *daemon) call(args ...string) (stdout, stderr string, exit int) {
	return d.cli("call", args...)
}

// cli runs a standbyd subcommand against the daemon's socket.
func (d *daemon) cli(sub string, args ...string) (stdout, stderr string, exit int) {
	full := append([]string{sub, "--socket", d.socket}, args...)
	cmd := exec.Command(daemonBin, full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		exit = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("running standbyd call: %v", err)
	}
	return o.String(), e.String(), exit
}

func (d *daemon) client() *client.Client {
	c := client.New(d.socket)
	d.t.Cleanup(c.Close)
	return c
}

// lastError is the status's last error, or "" while the daemon does not
// answer yet.
func (d *daemon) lastError() string {
	st, err := client.New(d.socket).Status(context.Background())
	if err != nil {
		return ""
	}
	return st.LastError
}

// state is the status's channel state, or "" while the daemon does not
// answer yet.
func (d *daemon) state() string {
	c := client.New(d.socket)
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		return ""
	}
	return st.State
}

func (d *daemon) status(ctx context.Context) client.StatusResponse {
	d.t.Helper()
	st, err := d.client().Status(ctx)
	if err != nil {
		d.t.Fatalf("status: %v", err)
	}
	return st
}

// raceExitCode is the exit status a daemon built with -race returns when it
// saw a data race (GORACE exitcode); no other path of the daemon uses it.
const raceExitCode = 66

// raceEnv is the environment for a daemon process: a binary built with
// -race (make test builds one) reports every race and exits raceExitCode.
func raceEnv() []string {
	return append(os.Environ(), fmt.Sprintf("GORACE=exitcode=%d halt_on_error=0", raceExitCode))
}

// checkRaceFree fails t when the daemon under test raced.
func checkRaceFree(t *testing.T, exitErr error, log string) {
	t.Helper()
	if err := raceReport(exitErr, log); err != nil {
		t.Error(err)
	}
}

// raceReport tells whether a process's log (its stderr) holds a race report
// or the process exited with raceExitCode.
func raceReport(exitErr error, log string) error {
	if i := strings.Index(log, "WARNING: DATA RACE"); i >= 0 {
		return fmt.Errorf("the daemon reported a data race:\n%s", tailLines(log[i:], 40))
	}
	var ee *exec.ExitError
	if errors.As(exitErr, &ee) && ee.ExitCode() == raceExitCode {
		return fmt.Errorf("the daemon exited %d: the race detector found a race", raceExitCode)
	}
	return nil
}

// builtWithRace reports whether the binary at path was built with -race.
func builtWithRace(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}
