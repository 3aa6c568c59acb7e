// Loopback ports for test servers.
//
// A port that a listen on :0 returned is in the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where every outgoing connection on the host
// takes its own local port: between FreePort's answer and the server's bind,
// or while a test has a server stopped to restart it, a psql or a
// pg_basebackup may hold it, and PostgreSQL then fails with "could not bind
// IPv4 address: Address already in use". Two test processes (go test runs
// packages in parallel) may also pick the same port before either binds it.
//
// So FreePort picks ports below the ephemeral range (outgoing connections
// never take those) and reserves each one for the life of the test process
// with an flock on a file in a directory that every test process of the host
// shares: the kernel drops the lock when the process ends, however it ends.

package testcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// portLockDir holds one lock file per port a test process has reserved.
const portLockDir = "standbyd-test-ports"

// lowestTestPort keeps clear of the well-known ports and of 5432's neighbours.
const lowestTestPort = 10000

var (
	portsMu sync.Mutex
	// portLocks keeps the lock files open (and so locked) until the process
	// ends.
	portLocks = map[int]*os.File{}
)

// FreePort returns a loopback TCP port outside the ephemeral range that no
// other process listens on and that no test process of this host has been
// given before (this one included, for as long as it runs).
func FreePort() (int, error) {
	lo, hi, err := testPortRange()
	if err != nil {
		return 0, err
	}
	return reservePort(func() int { return lo + rand.IntN(hi-lo+1) }, 200)
}

// testPortRange is the range FreePort draws from: lowestTestPort up to the
// first ephemeral port, or above the last one if the ephemeral range starts
// too low to leave room.
func testPortRange() (lo, hi int, err error) {
	elo, ehi, err := ephemeralRange()
	if err != nil {
		return 0, 0, err
	}
	switch {
	case elo-1-lowestTestPort >= 1000:
		return lowestTestPort, elo - 1, nil
	case 65535-ehi >= 1000:
		return ehi + 1, 65535, nil
	}
	return 0, 0, fmt.Errorf("no room for test ports outside the ephemeral range %d-%d (net.ipv4.ip_local_port_range)", elo, ehi)
}

// ephemeralRange reads net.ipv4.ip_local_port_range.
func ephemeralRange() (lo, hi int, err error) {
	const path = "/proc/sys/net/ipv4/ip_local_port_range"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: want two numbers, got %q", path, strings.TrimSpace(string(b)))
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	if err != nil || lo > hi {
		return 0, 0, fmt.Errorf("%s: not a range: %q", path, strings.TrimSpace(string(b)))
	}
	return lo, hi, nil
}

// reservePort tries up to attempts candidates and returns the first that this
// process could lock and bind.
func reservePort(candidate func() int, attempts int) (int, error) {
	dir, err := reservationDir()
	if err != nil {
		return 0, err
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	var lastErr error
	for range attempts {
		port := candidate()
		if _, mine := portLocks[port]; mine {
			continue
		}
		f, err := lockPortFile(dir, port)
		if err != nil {
			lastErr = err
			continue
		}
		if err := bindable(port); err != nil {
			f.Close()
			lastErr = err
			continue
		}
		portLocks[port] = f
		return port, nil
	}
	return 0, fmt.Errorf("no free test port after %d attempts (last: %v)", attempts, lastErr)
}

// reservationDir makes and returns the directory of the lock files.
func reservationDir() (string, error) {
	dir := filepath.Join(os.TempDir(), portLockDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("port reservations: %w", err)
	}
	// Sticky and world-writable, as /tmp: tests may run as other users.
	_ = os.Chmod(dir, 0o777|os.ModeSticky)
	return dir, nil
}

// errPortTaken says another test process holds a port's reservation.
var errPortTaken = errors.New("reserved by another test process")

// lockPortFile opens and locks dir/port; the lock holds while the file stays
// open.
func lockPortFile(dir string, port int) (*os.File, error) {
	path := filepath.Join(dir, strconv.Itoa(port))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("port %d: %w", port, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("port %d: %w", port, errPortTaken)
		}
		return nil, fmt.Errorf("port %d: locking %s: %w", port, path, err)
	}
	return f, nil
}

// bindable reports whether nothing listens on 127.0.0.1:port now.
func bindable(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d: %w", port, err)
	}
	return ln.Close()
}
