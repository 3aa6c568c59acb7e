package api

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/standbyd/standbyd/internal/config"
)

// The configuration's defaults for the API and the channel, as docs/api.md
// gives them, loaded from a file that sets only the standby's directory.
// claim: api.socket-mode
// claim: api.channel-sessions
// claim: api.queue-limit-busy
// claim: api.memory-bounded
func TestDocumentedConfigDefaults(t *testing.T) {
	for _, k := range []string{"API_SOCKET", "API_SOCKET_MODE", "API_QUEUE_LIMIT", "API_MAX_CONNECTIONS", "CHANNEL_SESSIONS", "CHANNEL_MAX_IN_FLIGHT"} {
		// Overrides from the environment would hide the defaults: none
		// for this test (t.Setenv restores them afterwards).
		t.Setenv("STANDBYD_"+k, "")
		os.Unsetenv("STANDBYD_" + k)
	}
	path := filepath.Join(t.TempDir(), "standbyd.yaml")
	if err := os.WriteFile(path, []byte("standby:\n  data_directory: /nonexistent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	mode, err := c.API.Mode()
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Socket != "/run/standbyd/standbyd.sock" || mode != 0o660 {
		t.Errorf("api.socket %q, api.socket_mode %o", c.API.Socket, mode)
	}
	if c.Channel.Sessions != 1 || c.Channel.MaxInFlight != 16 {
		t.Errorf("channel.sessions %d, channel.max_in_flight %d", c.Channel.Sessions, c.Channel.MaxInFlight)
	}
	if c.API.QueueLimit != 1000 || c.API.MaxConnections != 1024 {
		t.Errorf("api.queue_limit %d, api.max_connections %d", c.API.QueueLimit, c.API.MaxConnections)
	}
}
