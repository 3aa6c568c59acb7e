package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// Under socket activation (standbyd.socket; here systemd-socket-activate,
// which passes the socket the same way) the daemon serves on the socket it
// was given, creates none of its own, and leaves the given one in place
// when it stops. Its api.socket_mode and api.socket_group are ignored, and
// both protocols are served on the socket.
// claim: api.socket-activation
// claim: api.fast-same-socket
func TestSocketActivation(t *testing.T) {
	needEnv(t)
	launcher, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate (package systemd) is needed")
	}
	dir, err := os.MkdirTemp("", "sbd-")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "activated.sock"),
		metrics: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(dir, "standbyd.log"), done: make(chan error, 1)}
	own := filepath.Join(dir, "own.sock")
	// api.socket_mode and api.socket_group are set, to be ignored.
	cfg := fmt.Sprintf("standby:\n  data_directory: %s\napi:\n  socket: %s\n  socket_mode: \"0600\"\n  socket_group: nogroup\nmetrics:\n  listen: %s\nlog:\n  format: json\n  level: debug\n",
		env.StandbyData, own, d.metrics)
	cfgPath := filepath.Join(dir, "standbyd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(launcher, "-l", d.socket, daemonBin, "run", "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("--- log ---\n%s", tailLines(d.log(), 40))
		}
		os.RemoveAll(dir)
	})
	if !d.poll(10*time.Second, func() bool { _, err := os.Stat(d.socket); return err == nil }) {
		t.Fatal("systemd-socket-activate made no socket")
	}
	var before unix.Stat_t
	if err := unix.Stat(d.socket, &before); err != nil {
		t.Fatal(err)
	}
	// The first connection starts the daemon; the call waits in the socket.
	c := client.New(d.socket)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "ping", nil); err != nil {
		t.Fatalf("a call through the activated socket: %v", err)
	}
	// Both protocols are served on the socket systemd passed.
	hc := client.New(d.socket, client.WithHTTP())
	defer hc.Close()
	if _, err := hc.Call(ctx, "ping", nil); err != nil {
		t.Fatalf("an HTTP call through the activated socket: %v", err)
	}
	var after unix.Stat_t
	if err := unix.Stat(d.socket, &after); err != nil {
		t.Fatal(err)
	}
	if after.Mode != before.Mode || after.Gid != before.Gid {
		t.Fatalf("the activated socket's mode or group changed: %o gid %d, was %o gid %d", after.Mode, after.Gid, before.Mode, before.Gid)
	}
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Fatalf("the daemon made its own socket at %s too: %v", own, err)
	}
	if !strings.Contains(d.log(), `"socket_activation":true`) {
		t.Fatal("the log does not say the socket came from systemd")
	}
	if err := d.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if _, err := os.Stat(d.socket); err != nil {
		t.Fatalf("the daemon removed the socket systemd owns: %v", err)
	}
}
