package e2e

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
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

// Every metric of docs/metrics.md is exported, and the values that only
// make sense while connected say so when the channel is down.
func TestMetricsAsDocumented(t *testing.T) {
	needEnv(t)
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("(?m)^\\| `(standbyd_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(names) < 15 {
		t.Fatalf("only %d metrics in the doc", len(names))
	}
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	if _, _, code := d.call("N", "1", "2", "3"); code != 0 {
		t.Fatal("call")
	}
	time.Sleep(time.Second) // a heartbeat or two
	body := scrape(t, d)
	for _, n := range names {
		if !strings.Contains(body, "# TYPE "+n[1]+" ") {
			t.Errorf("%s is documented but not exported", n[1])
		}
	}
	for series, want := range map[string]func(float64) bool{
		"standbyd_channel_up":                                      func(v float64) bool { return v == 1 },
		`standbyd_channel_state{state="ready"}`:                    func(v float64) bool { return v == 1 },
		"standbyd_heartbeat_rtt_seconds":                           func(v float64) bool { return v > 0 && v < 1 },
		"standbyd_primary_wal_position_bytes":                      func(v float64) bool { return v > 0 },
		"standbyd_last_reply_timestamp_seconds":                    func(v float64) bool { return time.Since(time.Unix(int64(v), 0)) < time.Minute },
		"standbyd_session_start_timestamp_seconds":                 func(v float64) bool { return v > 0 },
		"standbyd_calls_waiting":                                   func(v float64) bool { return v == 0 },
		"standbyd_config_last_reload_successful":                   func(v float64) bool { return v == 1 },
		`standbyd_requests_total{op="N",result="ok"}`:              func(v float64) bool { return v >= 1 },
		`standbyd_request_duration_seconds_count{op="N"}`:          func(v float64) bool { return v >= 1 },
		`standbyd_channel_connect_errors_total{class="transient"}`: func(v float64) bool { return v == 0 },
	} {
		v, ok := d.metric(series)
		if !ok || !want(v) {
			t.Errorf("%s = %v (present %v) while ready", series, v, ok)
		}
	}
	sysid := primarySQL(t, "SELECT system_identifier FROM pg_control_system()")
	if !strings.Contains(body, `standbyd_primary_info{server_version_num="150020",system_identifier="`+sysid+`"} 1`) &&
		!strings.Contains(body, `system_identifier="`+sysid+`"`) {
		t.Errorf("primary_info does not name the primary %s", sysid)
	}

	// Down: nothing reads as healthy.
	ctx := context.Background()
	if err := env.StopServer(ctx, "primary", "fast"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = env.StartServer(ctx, "primary")
		_ = waitStandbyCaughtUp()
	}()
	d.waitState(false, 20*time.Second)
	for series, want := range map[string]func(float64) bool{
		"standbyd_channel_up":                      func(v float64) bool { return v == 0 },
		`standbyd_channel_state{state="ready"}`:    func(v float64) bool { return v == 0 },
		"standbyd_heartbeat_rtt_seconds":           math.IsNaN,
		"standbyd_primary_wal_position_bytes":      math.IsNaN,
		"standbyd_session_start_timestamp_seconds": func(v float64) bool { return v == 0 },
	} {
		if v, ok := d.metric(series); !ok || !want(v) {
			t.Errorf("%s = %v (present %v) while down", series, v, ok)
		}
	}
	if strings.Contains(scrape(t, d), "standbyd_primary_info{") {
		t.Error("primary_info still names a primary while down")
	}
	if !d.poll(10*time.Second, func() bool {
		v, _ := d.metric(`standbyd_channel_connect_errors_total{class="transient"}`)
		return v >= 1
	}) {
		t.Error("no transient connect error counted while the primary is down")
	}
}
