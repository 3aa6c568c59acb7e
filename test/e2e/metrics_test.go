package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

func scrape(t *testing.T, d *daemon) string {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Every metric of docs/metrics.md is exported and asserted here against the
// running daemon, as the channel goes up, down (a terminated backend, then a
// stopped primary) and up again: the values move, and nothing reads as
// healthy while the channel is down.
// claim: liveness.channel-up-only-when-ready
func TestMetricsAsDocumented(t *testing.T) {
	needEnv(t)
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("(?m)^\\| `(standbyd_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(names) < 20 {
		t.Fatalf("only %d metrics in the doc", len(names))
	}
	d := startDaemonWith(t, daemonConfig{
		standby: fmt.Sprintf("  conninfo: host=%s port=%d user=postgres dbname=postgres", env.SocketDir, env.StandbyPort),
	})
	d.waitReady(30 * time.Second)
	if _, _, code := d.call("N", "1", "2", "3"); code != 0 {
		t.Fatal("call")
	}
	// An identified caller (as a standby backend's standbyd.call() is):
	// standbyd_api_sql_calls_total has a series once one has called.
	c, _ := fastRawV(t, d.socket, fastproto.Version2)
	req := fastproto.AppendIdentify(nil, fastproto.Identify{PID: 4242, Role: "app", Database: "shop"})
	req = fastproto.AppendRequest(req, fastproto.Request{ID: 1, Op: protocol.OpPing})
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var hdr [fastproto.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("the identified ping got no reply: %v", err)
	}
	// A heartbeat or two, and a reading of the standby's replay position.
	d.poll(10*time.Second, func() bool { v, ok := d.metric("standbyd_standby_replay_lag_bytes"); return ok && !math.IsNaN(v) })
	body := scrape(t, d)
	for _, n := range names {
		if !strings.Contains(body, "# TYPE "+n[1]+" ") {
			t.Errorf("%s is documented but not exported", n[1])
		}
	}
	recent := func(v float64) bool { return time.Since(time.Unix(int64(v), 0)) < time.Minute }
	zero := func(v float64) bool { return v == 0 }
	checkAll := func(when string, want map[string]func(float64) bool) {
		t.Helper()
		for series, ok := range want {
			if v, present := d.metric(series); !present || !ok(v) {
				t.Errorf("%s = %v (present %v) %s", series, v, present, when)
			}
		}
	}
	checkAll("while ready", map[string]func(float64) bool{
		"standbyd_channel_up":                                        func(v float64) bool { return v == 1 },
		`standbyd_channel_state{state="ready"}`:                      func(v float64) bool { return v == 1 },
		`standbyd_channel_state{state="backing_off"}`:                zero,
		"standbyd_channel_connects_total":                            func(v float64) bool { return v == 1 },
		`standbyd_channel_disconnects_total{reason="server_closed"}`: zero,
		`standbyd_channel_disconnects_total{reason="reply_timeout"}`: zero,
		"standbyd_heartbeat_rtt_seconds":                             func(v float64) bool { return v > 0 && v < 1 },
		"standbyd_primary_wal_position_bytes":                        func(v float64) bool { return v > 0 },
		"standbyd_standby_replay_position_bytes":                     func(v float64) bool { return v > 0 },
		"standbyd_standby_replay_lag_bytes":                          func(v float64) bool { return v >= 0 },
		"standbyd_last_reply_timestamp_seconds":                      recent,
		"standbyd_session_start_timestamp_seconds":                   recent,
		"standbyd_calls_waiting":                                     zero,
		"standbyd_requests_in_flight":                                zero,
		"standbyd_identity_mismatches_total":                         zero,
		"standbyd_config_last_reload_successful":                     func(v float64) bool { return v == 1 },
		"standbyd_config_last_reload_success_timestamp_seconds":      recent,
		`standbyd_config_reloads_total{result="success"}`:            zero,
		`standbyd_requests_total{op="N",result="ok"}`:                func(v float64) bool { return v >= 1 },
		`standbyd_requests_total{op="ping",result="failed"}`:         zero,
		`standbyd_request_duration_seconds_count{op="N"}`:            func(v float64) bool { return v >= 1 },
		`standbyd_slow_requests_total{op="N"}`:                       zero,
		`standbyd_channel_connect_errors_total{class="transient"}`:   zero,
	})
	sysid := primarySQL(t, "SELECT system_identifier FROM pg_control_system()")
	if !regexp.MustCompile(`standbyd_primary_info\{host="127\.0\.0\.1:` + strconv.Itoa(env.PrimaryPort) + `",server_version_num="1500\d\d",system_identifier="` + sysid + `"\} 1`).MatchString(body) {
		t.Errorf("primary_info does not name the primary %s at 127.0.0.1:%d:\n%s", sysid, env.PrimaryPort, grepLines(body, "primary_info"))
	}
	if !regexp.MustCompile(`standbyd_build_info\{version="[^"]+"\} 1`).MatchString(body) {
		t.Error("build_info has no version")
	}

	// Replay lag: paused replay on the standby while the primary writes
	// shows as a lag; resumed, it shrinks again.
	ctx := context.Background()
	if _, err := env.SQL(ctx, "standby", "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			_, _ = env.SQL(ctx, "standby", "SELECT pg_wal_replay_resume()")
			resumed = true
		}
	}
	defer resume()
	primarySQL(t, "CREATE TABLE IF NOT EXISTS metrics_lag (x int); INSERT INTO metrics_lag SELECT generate_series(1, 20000)")
	var lag float64
	if !d.poll(15*time.Second, func() bool { lag, _ = d.metric("standbyd_standby_replay_lag_bytes"); return lag > 100000 }) {
		t.Errorf("replay paused and 20000 rows written, yet the replay lag reads %v", lag)
	}
	resume()
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
	var after float64
	if !d.poll(15*time.Second, func() bool { after, _ = d.metric("standbyd_standby_replay_lag_bytes"); return after < lag/10 }) {
		t.Errorf("replay resumed and caught up, yet the lag reads %v (was %v)", after, lag)
	}

	// A reload is counted.
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric(`standbyd_config_reloads_total{result="success"}`); return v == 1 }) {
		t.Error("SIGHUP reload not counted")
	}

	// The backend is terminated: a disconnect by the server, then a second
	// session.
	primarySQL(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'standbyd'")
	if !d.poll(15*time.Second, func() bool {
		v, _ := d.metric(`standbyd_channel_disconnects_total{reason="server_closed"}`)
		c, _ := d.metric("standbyd_channel_connects_total")
		return v == 1 && c == 2
	}) {
		t.Errorf("after pg_terminate_backend: %s", grepLines(scrape(t, d), "connects_total"))
	}

	// Down: nothing reads as healthy.
	if err := env.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = env.StartServer(ctx, "primary")
			_ = waitStandbyCaughtUp()
		}
	}()
	d.waitState(false, 20*time.Second)
	checkAll("while down", map[string]func(float64) bool{
		"standbyd_channel_up":                      zero,
		`standbyd_channel_state{state="ready"}`:    zero,
		"standbyd_heartbeat_rtt_seconds":           math.IsNaN,
		"standbyd_primary_wal_position_bytes":      math.IsNaN,
		"standbyd_standby_replay_lag_bytes":        math.IsNaN,
		"standbyd_standby_replay_position_bytes":   func(v float64) bool { return v > 0 }, // the standby is still there
		"standbyd_session_start_timestamp_seconds": zero,
	})
	if strings.Contains(scrape(t, d), "standbyd_primary_info{") {
		t.Error("primary_info still names a primary while down")
	}
	if !d.poll(10*time.Second, func() bool {
		v, _ := d.metric(`standbyd_channel_connect_errors_total{class="transient"}`)
		return v >= 1
	}) {
		t.Error("no transient connect error counted while the primary is down")
	}

	// Up again.
	if err := env.StartServer(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := waitStandbyCaughtUp(); err != nil {
		t.Fatal(err)
	}
	d.waitReady(30 * time.Second)
	d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_standby_replay_lag_bytes"); return !math.IsNaN(v) })
	checkAll("when up again", map[string]func(float64) bool{
		"standbyd_channel_up":                                        func(v float64) bool { return v == 1 },
		"standbyd_channel_connects_total":                            func(v float64) bool { return v == 3 },
		`standbyd_channel_disconnects_total{reason="server_closed"}`: func(v float64) bool { return v == 2 }, // shutdown fast: FATAL 57P01
		"standbyd_session_start_timestamp_seconds":                   recent,
		"standbyd_standby_replay_lag_bytes":                          func(v float64) bool { return v >= 0 },
		"standbyd_primary_wal_position_bytes":                        func(v float64) bool { return v > 0 },
	})
	if !strings.Contains(scrape(t, d), `standbyd_primary_info{host=`) {
		t.Error("primary_info missing when up again")
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
