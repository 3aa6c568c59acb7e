package main

import (
	"slices"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/config"
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
