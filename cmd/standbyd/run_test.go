package main

import (
	"slices"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/reload"
	"github.com/standbyd/standbyd/internal/upstream"
)

// Every setting that shapes the connection counts as a change (and
// reconnects), none silently.
// claim: liveness.reload-reconnects
func TestConnectionSettings(t *testing.T) {
	base := config.Config{Channel: config.ChannelConfig{Mode: "extension", Procedure: "standbyd.serve",
		ApplicationName: "standbyd", MaxFrameSize: 1 << 20, ConnectTimeout: 10 * time.Second,
		KeepalivesIdle: 5 * time.Second, KeepalivesIntvl: 2 * time.Second, KeepalivesCount: 3}}
	for name, change := range map[string]func(*config.Config){
		"channel.mode":                func(c *config.Config) { c.Channel.Mode = "raw" },
		"channel.procedure":           func(c *config.Config) { c.Channel.Procedure = "other.serve" },
		"channel.application_name":    func(c *config.Config) { c.Channel.ApplicationName = "x" },
		"channel.max_frame_size":      func(c *config.Config) { c.Channel.MaxFrameSize = 4096 },
		"channel.connect_timeout":     func(c *config.Config) { c.Channel.ConnectTimeout = time.Second },
		"channel.tcp_user_timeout":    func(c *config.Config) { c.Channel.TCPUserTimeout = time.Second },
		"channel.keepalives_idle":     func(c *config.Config) { c.Channel.KeepalivesIdle = time.Second },
		"channel.keepalives_interval": func(c *config.Config) { c.Channel.KeepalivesIntvl = time.Second },
		"channel.keepalives_count":    func(c *config.Config) { c.Channel.KeepalivesCount = 9 },
		"channel.protocol_version":    func(c *config.Config) { c.Channel.ProtocolVersion = 1 },
		"channel.check_identity":      func(c *config.Config) { c.Channel.CheckIdentity = !c.Channel.CheckIdentity },
		"standby.data_directory":      func(c *config.Config) { c.Standby.DataDirectory = "/elsewhere" },
		"standby.config_file":         func(c *config.Config) { c.Standby.ConfigFile = "/elsewhere/postgresql.conf" },
	} {
		next := base
		change(&next)
		if got := connectionSettings(&base, &next); !slices.Equal(got, []string{name}) {
			t.Errorf("changing %s: %v", name, got)
		}
	}
	same := base
	if got := connectionSettings(&base, &same); len(got) != 0 {
		t.Errorf("no change: %v", got)
	}
}

// primary_conninfo (the target's conninfo), the cluster it names and the
// database make the reloader reconnect by themselves; nothing else does.
// claim: liveness.reload-reconnects
func TestConninfoChanged(t *testing.T) {
	state := func(conninfo string, sysid uint64, db string) *reload.State {
		return &reload.State{Config: &config.Config{Channel: config.ChannelConfig{Database: db, ReplyTimeout: time.Second}},
			Target: &upstream.Target{Conninfo: conninfo, SystemIdentifier: sysid}}
	}
	old := state("host=a", 7, "postgres")
	for name, c := range map[string]struct {
		st   *reload.State
		want bool
	}{
		"nothing":           {state("host=a", 7, "postgres"), false},
		"primary_conninfo":  {state("host=b", 7, "postgres"), true},
		"system identifier": {state("host=a", 8, "postgres"), true},
		"channel.database":  {state("host=a", 7, "app"), true},
	} {
		if got := conninfoChanged(old, c.st); got != c.want {
			t.Errorf("%s: conninfoChanged %v, want %v", name, got, c.want)
		}
	}
}

// A change to a watched configuration file is reloaded after one quiet
// second (the "about 1s" of docs/liveness.md for a repointed
// primary_conninfo).
// claim: liveness.failover-intervals
func TestReloadDebounce(t *testing.T) {
	if reloadDebounce != time.Second {
		t.Fatalf("reload debounce %s, docs/liveness.md says 1s", reloadDebounce)
	}
}
