package testcluster

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// A port from the ephemeral range may be any outgoing connection's local
// port by the time a server binds it (CI once lost a primary that way:
// "could not bind IPv4 address "127.0.0.1": Address already in use").
func TestFreePortIsOutsideTheEphemeralRange(t *testing.T) {
	elo, ehi, err := ephemeralRange()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port >= elo && port <= ehi {
			t.Fatalf("FreePort gave %d, inside the ephemeral range %d-%d", port, elo, ehi)
		}
		if port < lowestTestPort || port > 65535 {
			t.Fatalf("FreePort gave %d, outside %d-65535", port, lowestTestPort)
		}
		if seen[port] {
			t.Fatalf("FreePort gave %d twice", port)
		}
		seen[port] = true
	}
}

// holdPortEnv makes the test binary a process that reserves one port, says
// so, and holds it until its standard input closes.
const holdPortEnv = "STANDBYD_TEST_HOLD_PORT"

func init() {
	p := os.Getenv(holdPortEnv)
	if p == "" {
		return
	}
	port, err := strconv.Atoi(p)
	if err == nil {
		_, err = reservePort(func() int { return port }, 1)
	}
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("held\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// Two test processes (go test runs packages in parallel) must not be given
// the same port; a port something listens on is not given either.
func TestFreePortSkipsPortsOthersHold(t *testing.T) {
	lo, hi, err := testPortRange()
	if err != nil {
		t.Fatal(err)
	}
	// Three ports of the range that nothing listens on and nobody reserved.
	var ports []int
	for p := hi; p >= lo && len(ports) < 3; p-- {
		if _, mine := portLocks[p]; !mine && bindable(p) == nil && !reservedElsewhere(t, p) {
			ports = append(ports, p)
		}
	}
	if len(ports) < 3 {
		t.Fatal("no three free ports in the test range")
	}
	held, listened, free := ports[0], ports[1], ports[2]

	other := exec.Command(os.Args[0], "-test.run=^$")
	other.Env = append(os.Environ(), holdPortEnv+"="+strconv.Itoa(held))
	stdin, err := other.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = other.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("the other process: %q, %v", line, err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(listened)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	order := []int{held, listened, free}
	next := 0
	got, err := reservePort(func() int { p := order[next%len(order)]; next++; return p }, len(order))
	if err != nil {
		t.Fatal(err)
	}
	if got != free {
		t.Fatalf("reservePort gave %d; want %d (%d is another process's, %d is listened on)", got, free, held, listened)
	}
	// This process holds free now: it is not given again.
	if p, err := reservePort(func() int { return free }, 1); err == nil {
		t.Fatalf("port %d given twice", p)
	}

	// When the other process ends, the kernel drops its lock.
	stdin.Close()
	if err := other.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	if got, err := reservePort(func() int { return held }, 1); err != nil || got != held {
		t.Fatalf("port %d after its holder ended: %d, %v", held, got, err)
	}
}

// reservedElsewhere reports whether another process holds port's lock.
func reservedElsewhere(t *testing.T, port int) bool {
	dir, err := reservationDir()
	if err != nil {
		t.Fatal(err)
	}
	f, err := lockPortFile(dir, port)
	if errors.Is(err, errPortTaken) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return false
}
