package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// ErrSocketDirMissing is wrapped when the socket's directory does not exist
// (a hand-started daemon without systemd's RuntimeDirectory).
var ErrSocketDirMissing = errors.New("api socket directory does not exist")

// createSocket binds the API socket at path with its final mode and group
// from the first moment the path exists: the socket is bound inside a
// private directory (0700) next to path, given its mode and group there, and
// renamed into place. Changing the umask around bind would do the same for
// the mode but is process-wide, and chown would still leave a window.
func createSocket(path string, mode fs.FileMode, gid int) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: create %s (owned by the daemon's user; under systemd RuntimeDirectory=standbyd does it), or put the socket elsewhere with --socket or api.socket: %w",
			ErrSocketDirMissing, dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("api socket %s exists and is not a socket", path)
		}
		// A socket nobody answers on is stale; one that answers belongs to
		// another running daemon.
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale api socket: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".standbyd-")
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	private := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: private, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	// The listener would unlink the private name; Shutdown removes path.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(private, mode); err != nil {
		return fail(fmt.Errorf("api socket mode: %w", err))
	}
	if gid >= 0 {
		if err := os.Chown(private, -1, gid); err != nil {
			return fail(fmt.Errorf("api socket group %d: %w", gid, err))
		}
	}
	if err := os.Rename(private, path); err != nil {
		return fail(fmt.Errorf("api socket: %w", err))
	}
	return ln, nil
}

// systemdListener returns the Unix stream socket systemd passed to this
// process (socket activation, standbyd.socket), or nil when none was.
func systemdListener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	var found net.Listener
	for _, ln := range lns {
		if ln == nil {
			continue
		}
		if _, ok := ln.(*net.UnixListener); ok && found == nil {
			found = ln
			continue
		}
		ln.Close()
	}
	if found == nil {
		return nil, errors.New("systemd socket activation: no Unix stream socket passed (ListenStream= must name a path)")
	}
	return found, nil
}
