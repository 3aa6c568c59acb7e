package e2e

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A client that sends its request slowly holds only its own connection, and
// not for long: the headers must come within 5s, the whole request within
// 30s, or the daemon closes the connection; other callers are served
// meanwhile.
// claim: api.slow-client-timeouts
func TestSlowClientsAreCutOff(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)

	// closedAfter writes start on a new connection and says how long the
	// daemon took to close it.
	closedAfter := func(start string, took *time.Duration, err *error) {
		c, e := net.Dial("unix", d.socket)
		if e != nil {
			*err = e
			return
		}
		defer c.Close()
		began := time.Now()
		if _, e := io.WriteString(c, start); e != nil {
			*err = e
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, e = io.Copy(io.Discard, c) // whatever it answers, until it closes
		*took = time.Since(began)
		if ne, ok := e.(net.Error); ok && ne.Timeout() {
			*err = fmt.Errorf("still open after %s", *took)
		}
	}
	var wg sync.WaitGroup
	var headersTook, bodyTook time.Duration
	var headersErr, bodyErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		closedAfter("POST /v1/call/N HTTP/1.1\r\nHost: x\r\n", &headersTook, &headersErr)
	}()
	go func() {
		defer wg.Done()
		closedAfter("POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n\x00\x00", &bodyTook, &bodyErr)
	}()
	// Meanwhile the channel serves others.
	if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
		t.Fatalf("a call beside two stalled clients: %d %q", code, out)
	}
	wg.Wait()
	if headersErr != nil || bodyErr != nil {
		t.Fatalf("stalled headers: %v; stalled body: %v", headersErr, bodyErr)
	}
	t.Logf("stalled headers closed after %s, stalled body after %s", headersTook.Round(time.Millisecond), bodyTook.Round(time.Millisecond))
	// Not before the limit (that would be another cause), and by the limit
	// plus scheduling slack.
	if headersTook < 5*time.Second || headersTook > 15*time.Second {
		t.Errorf("stalled headers closed after %s, want the 5s header limit", headersTook)
	}
	if bodyTook < 30*time.Second || bodyTook > 40*time.Second {
		t.Errorf("stalled body closed after %s, want the 30s request limit", bodyTook)
	}
}
