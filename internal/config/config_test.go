package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// claim: readme.check-defaults
func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Channel.ReplyTimeout != 3*time.Second || c.Channel.MaxFrameSize != 65536 || c.API.Socket != "/run/standbyd/api.sock" || c.Log.Level != "debug" {
		t.Fatalf("file values not applied: %+v", c)
	}
	if c.Channel.HeartbeatInterval != 2*time.Second || c.Channel.Database != "postgres" || c.Metrics.Listen != "127.0.0.1:9561" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	t.Setenv("STANDBYD_CHANNEL_REPLY_TIMEOUT", "4s")
	t.Setenv("STANDBYD_API_SOCKET", "/env.sock")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("socket", "", "")
	if err := fs.Parse([]string{"--socket", "/flag.sock"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load("testdata/good.yaml", fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Channel.ReplyTimeout != 4*time.Second {
		t.Errorf("env did not override the file: %s", c.Channel.ReplyTimeout)
	}
	if c.API.Socket != "/flag.sock" {
		t.Errorf("flag did not override env: %s", c.API.Socket)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	cases := map[string][]string{
		"testdata/unknown_key.yaml":  {"testdata/unknown_key.yaml", "reply_timeot"},
		"testdata/bad_duration.yaml": {"channel.heartbeat_interval", "invalid duration"},
		"testdata/bad_values.yaml": {"channel.mode", "channel.max_frame_size", "channel.backoff_max",
			"channel.procedure", "api.socket_mode", "log.level"},
		"testdata/bad_yaml.yaml": {"testdata/bad_yaml.yaml", "line"},
		"testdata/missing.yaml":  {"testdata/missing.yaml"},
	}
	for file, wants := range cases {
		_, err := Load(file, nil)
		if err == nil {
			t.Errorf("%s: want an error", file)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not mention %q: %v", file, w, err)
			}
		}
	}
}

func TestDataDirectoryRequired(t *testing.T) {
	_, err := Load("", nil)
	if err == nil || !strings.Contains(err.Error(), "standby.data_directory") {
		t.Fatalf("want standby.data_directory required, got %v", err)
	}
}

// claim: api.allow-load-errors
func TestAllowResolvedAtLoad(t *testing.T) {
	c, err := Load("testdata/allow.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.API.Allow) != 2 {
		t.Fatalf("rules: %+v", c.API.Allow)
	}
	r := c.API.Allow[0]
	if len(r.Ops) != 3 || r.Ops[1] != "put_order" {
		t.Fatalf("ops: %v", r.Ops)
	}
	if len(r.UIDs) != 2 || r.UIDs[0] != 0 || r.UIDs[1] != 4321 || len(r.GIDs) != 1 || r.GIDs[0] != 65534 {
		t.Fatalf("names not resolved: uids %v gids %v", r.UIDs, r.GIDs)
	}
	if g := c.API.Allow[1].GIDs; len(g) != 1 || g[0] != 0 {
		t.Fatalf("group root: %v", g)
	}
}

// claim: api.allow-load-errors
func TestAllowErrorsNameTheKey(t *testing.T) {
	_, err := Load("testdata/allow_bad.yaml", nil)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{`api.allow[0].users: "no_such_user_here"`, `api.allow[1].ops: "bad op!"`,
		`api.allow[1].groups: "no_such_group_here"`, "api.allow[2]: names no user and no group"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q: %v", w, err)
		}
	}
	// A misspelt key inside a rule is refused too (strict parsing).
	_, err = Load("testdata/allow_unknown_key.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "api.allow[0]") || !strings.Contains(err.Error(), "user") {
		t.Errorf("unknown key in a rule: %v", err)
	}
}

// The shipped example configuration loads as it is.
// claim: readme.check-defaults
func TestShippedConfigLoads(t *testing.T) {
	t.Setenv("STANDBYD_STANDBY_DATA_DIRECTORY", "/var/lib/postgresql/15/main")
	c, err := Load("../../configs/standbyd.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.MaxConnections != 1024 || c.API.Socket != "/run/standbyd/standbyd.sock" {
		t.Fatalf("%+v", c.API)
	}
}

// The file the README tells users to copy loads and validates once
// standby.data_directory is set, and shows every option with its default.
func TestShippedConfigLoadsWithTheDefaults(t *testing.T) {
	const shipped = "../../configs/standbyd.yaml"
	t.Setenv("STANDBYD_STANDBY_DATA_DIRECTORY", t.TempDir())
	c, err := Load(shipped, nil)
	if err != nil {
		t.Fatalf("configs/standbyd.yaml: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Load(empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.File, d.File = "", ""
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("configs/standbyd.yaml differs from the defaults:\nfile     %+v\ndefaults %+v", c, d)
	}
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	for key := range defaults {
		section, leaf, _ := strings.Cut(key, ".")
		if !strings.Contains(string(b), "\n"+section+":\n") || !strings.Contains(string(b), "\n  "+leaf+":") {
			t.Errorf("configs/standbyd.yaml does not show %s", key)
		}
	}
	// Without the data directory (or a conninfo) it is refused, naming it.
	t.Setenv("STANDBYD_STANDBY_DATA_DIRECTORY", "")
	os.Unsetenv("STANDBYD_STANDBY_DATA_DIRECTORY")
	if _, err := Load(shipped, nil); err == nil || !strings.Contains(err.Error(), "data_directory") {
		t.Fatalf("configs/standbyd.yaml as shipped: %v", err)
	}
}

// The defaults docs/liveness.md states, as values: the heartbeat, the reply
// timeout (and the slow threshold, 0: half the reply timeout), the backoff
// range, the close timeout and the connect timeout.
// claim: liveness.timing-defaults
func TestLivenessDefaults(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STANDBYD_STANDBY_DATA_DIRECTORY", t.TempDir())
	c, err := Load(empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Channel
	for _, d := range []struct {
		key       string
		got, want time.Duration
	}{
		{"heartbeat_interval", ch.HeartbeatInterval, 2 * time.Second},
		{"reply_timeout", ch.ReplyTimeout, 5 * time.Second},
		{"slow_threshold", ch.SlowThreshold, 0},
		{"backoff_min", ch.BackoffMin, 200 * time.Millisecond},
		{"backoff_max", ch.BackoffMax, 30 * time.Second},
		{"close_timeout", ch.CloseTimeout, 2 * time.Second},
		{"connect_timeout", ch.ConnectTimeout, 10 * time.Second},
	} {
		if d.got != d.want {
			t.Errorf("channel.%s defaults to %s, want %s", d.key, d.got, d.want)
		}
	}
}
