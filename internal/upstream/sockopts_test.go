package upstream

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/standbyd/standbyd/internal/config"
)

// dialedSockopts resolves the target of a config loaded with the defaults
// and the given channel.conninfo, dials a local listener with its DialFunc
// and reads the client socket's TCP options as the kernel holds them.
func dialedSockopts(t *testing.T, conninfo string) map[string]int {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STANDBYD_STANDBY_DATA_DIRECTORY", t.TempDir())
	c, err := config.Load(empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if s, err := ln.Accept(); err == nil {
			s.Close()
		}
	}()
	c.Channel.Conninfo = conninfo
	c.Channel.CheckIdentity = false // no pg_control in the empty data directory
	target, err := Resolve(c)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := target.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		get := func(name string, level, opt int) {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil && gerr == nil {
				gerr = err
			}
			out[name] = v
		}
		get("keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		get("user_timeout_ms", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		get("idle_s", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		get("interval_s", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		get("count", unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return out
}

// The channel's socket gets TCP_USER_TIMEOUT 10s and keepalives (idle 5s,
// interval 2s, 3 probes) from the default configuration, and the
// conninfo's own values when it sets them.
// claim: liveness.tcp-user-timeout-and-keepalive-defaults
func TestChannelSocketOptionsDefaultsAndConninfo(t *testing.T) {
	check := func(name string, got, want map[string]int) {
		t.Helper()
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s = %d, want %d (all: %v)", name, k, got[k], w, got)
			}
		}
	}
	check("defaults", dialedSockopts(t, "host=127.0.0.1 user=replicator"),
		map[string]int{"keepalive": 1, "user_timeout_ms": 10000, "idle_s": 5, "interval_s": 2, "count": 3})
	check("conninfo", dialedSockopts(t, "host=127.0.0.1 user=replicator tcp_user_timeout=3500 keepalives_idle=7 keepalives_interval=4 keepalives_count=6"),
		map[string]int{"keepalive": 1, "user_timeout_ms": 3500, "idle_s": 7, "interval_s": 4, "count": 6})
}
