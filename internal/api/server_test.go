package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "api") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveCfg runs a server with cfg (Socket defaults to a fresh path) and
// returns its socket path.
func serveCfg(t *testing.T, cfg ServerConfig, ch Channel) string {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(shortDir(t), "s")
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = 0o600
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout, cfg.MaxTimeout = time.Second, 2*time.Second
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 64
	}
	srv, err := Listen(cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		<-done
	})
	return cfg.Socket
}

// claim: api.accept-json
func TestAcceptIsAList(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                  false,
		"*/*":                               false,
		"application/json":                  true,
		"application/json, */*":             true,
		"text/html, application/json;q=0.9": true,
		"application/octet-stream, application/json;q=0.5": false,
		"application/json;q=0":                             false,
	} {
		if got := wantsJSON(accept); got != want {
			t.Errorf("Accept %q: JSON %v, want %v", accept, got, want)
		}
	}
	sock := serveCfg(t, ServerConfig{}, &stubChannel{reply: func(uint16, []byte) ([]byte, error) { return []byte("hi"), nil }})
	hc := unixHTTP(sock)
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://standbyd/v1/call/N", nil)
	req.Header.Set("Accept", "application/json, */*")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(b), `"text": "hi"`) {
		t.Fatalf("Accept list: %s %s", resp.Header.Get("Content-Type"), b)
	}
}

func unixHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// The socket has its mode and group from the moment its name appears: a
// watcher of the directory never sees it created with another mode and
// changed afterwards.
// claim: api.socket-mode-from-the-start
func TestSocketHasItsModeWhenItAppears(t *testing.T) {
	dir := shortDir(t)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_ATTRIB|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	cfg := ServerConfig{Socket: sock, SocketMode: 0o660}
	if os.Geteuid() == 0 {
		cfg.SocketGroup = "nogroup"
	}
	serveCfg(t, cfg, &stubChannel{})
	var seen []string
	buf := make([]byte, 64<<10)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < n; {
		ev := (*unix.InotifyEvent)(unsafePointer(&buf[off]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		off += unix.SizeofInotifyEvent + int(ev.Len)
		if name != "s" {
			continue
		}
		switch {
		case ev.Mask&unix.IN_CREATE != 0:
			seen = append(seen, "created")
		case ev.Mask&unix.IN_ATTRIB != 0:
			seen = append(seen, "attributes changed")
		case ev.Mask&unix.IN_MOVED_TO != 0:
			seen = append(seen, "moved in")
		}
	}
	if len(seen) != 1 || seen[0] != "moved in" {
		t.Fatalf("the socket's name appeared as %v, want only [moved in] (complete when it appears)", seen)
	}
	var st unix.Stat_t
	if err := unix.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o660 || cfg.SocketGroup != "" && st.Gid != 65534 {
		t.Fatalf("mode %o gid %d", st.Mode&0o777, st.Gid)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".standbyd-*")); len(left) != 0 {
		t.Fatalf("private directory left: %v", left)
	}
}

// claim: api.socket-directory
func TestMissingSocketDirectorySaysWhatToDo(t *testing.T) {
	sock := filepath.Join(shortDir(t), "standbyd", "standbyd.sock")
	_, err := Listen(ServerConfig{Socket: sock, SocketMode: 0o660}, &stubChannel{})
	if !errors.Is(err, ErrSocketDirMissing) {
		t.Fatalf("%v", err)
	}
	for _, w := range []string{"create " + filepath.Dir(sock), "--socket", "api.socket"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q: %v", w, err)
		}
	}
}

// rawRequest sends a request head on a new connection, without its body,
// and returns the status line answered within a few seconds.
func rawRequest(t *testing.T, sock, head string) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "no answer: " + err.Error(), c
	}
	return strings.TrimSpace(line), c
}

// A call takes its slot before its body is read: with every slot taken, the
// next caller is refused at once, without the daemon reading (and holding)
// its body; and a body larger than a frame is refused from its length.
// claim: api.memory-bounded
func TestSlotTakenBeforeTheBodyIsRead(t *testing.T) {
	sock, release := holdTheOnlySlot(t)
	// The body is announced and never sent: only an answer given without
	// reading it can come back.
	status, _ := rawRequest(t, sock, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
	if !strings.Contains(status, "429") {
		t.Fatalf("all slots taken: %q, want 429 at once", status)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	status, _ = rawRequest(t, sock, "POST /v1/call/N HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	if !strings.Contains(status, "413") {
		t.Fatalf("a body larger than a frame: %q, want 413 at once", status)
	}
}

// holdTheOnlySlot serves with one call slot and takes it with a call that
// waits in the channel. release lets that call finish and returns its
// error; if the test ends first, the call is let go at its end.
func holdTheOnlySlot(t *testing.T) (sock string, release func() error) {
	t.Helper()
	unblock := make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(unblock) }) }
	entered := make(chan struct{}, 1)
	ch := &stubChannel{reply: func(uint16, []byte) ([]byte, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-unblock
		return nil, nil
	}}
	sock = serveCfg(t, ServerConfig{CallSlots: 1, DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, ch)
	c := client.New(sock)
	t.Cleanup(func() { c.Close() })
	t.Cleanup(letGo)
	first := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "N", nil); first <- err }()
	<-entered
	return sock, func() error { letGo(); return <-first }
}

// The listener serves at most MaxConns connections; the next one is
// accepted when one of them closes.
// claim: api.memory-bounded
func TestConnectionsBounded(t *testing.T) {
	sock := serveCfg(t, ServerConfig{MaxConns: 2}, &stubChannel{})
	status := func(c net.Conn) chan string {
		out := make(chan string, 1)
		go func() {
			_, _ = io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				line = err.Error()
			}
			out <- strings.TrimSpace(line)
		}()
		return out
	}
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := <-status(c); !strings.Contains(got, "200") {
			t.Fatalf("connection %d: %q", i, got)
		}
		held = append(held, c)
	}
	third, err := net.Dial("unix", sock) // queued by the kernel
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	answer := status(third)
	select {
	case got := <-answer:
		t.Fatalf("a third connection was served while two are open: %q", got)
	case <-time.After(200 * time.Millisecond):
	}
	held[0].Close()
	select {
	case got := <-answer:
		if !strings.Contains(got, "200") {
			t.Fatalf("third connection: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not served after one closed")
	}
}

// claim: api.allow
func TestPolicy(t *testing.T) {
	offered := []protocol.OpInfo{{Op: protocol.OpPage, Name: "page", Builtin: true}, {Op: 0x100, Name: "put"}, {Op: 0x101, Name: "get"}}
	lookups, groupsOf3000 := 0, []uint32{7, 50}
	p := &Policy{Rules: []AllowRule{
		{Ops: []string{"page", "put"}, UIDs: []uint32{1000}, GIDs: []uint32{50}},
		{Ops: []string{"later"}, UIDs: []uint32{2000}}, // not in the hello yet
	}, groupsOf: func(uid uint32) []uint32 {
		lookups++
		if uid == 3000 {
			return groupsOf3000
		}
		return nil
	}}
	cases := []struct {
		op      uint16
		peer    Peer
		allowed bool
	}{
		{protocol.OpPage, Peer{Known: true, UID: 1000, GID: 1000}, true},
		{protocol.OpPage, Peer{Known: true, UID: 1001, GID: 50}, true},   // primary group
		{protocol.OpPage, Peer{Known: true, UID: 3000, GID: 3000}, true}, // supplementary group
		{protocol.OpPage, Peer{Known: true, UID: 1001, GID: 1001}, false},
		{protocol.OpPage, Peer{}, false},                        // no credentials
		{0x100, Peer{Known: true, UID: 1001, GID: 1001}, false}, // put, by number
		{0x101, Peer{Known: true, UID: 1001, GID: 1001}, true},  // get: not restricted
		{protocol.OpN, Peer{}, true},                            // not restricted
		{0x1FF, Peer{Known: true, UID: 1001, GID: 1001}, false}, // perhaps "later"
		{0x1FF, Peer{Known: true, UID: 2000, GID: 2000}, true},
		{protocol.OpPage, Peer{Known: true, UID: 0, GID: 0}, false}, // root is not special
	}
	for _, c := range cases {
		if got := p.check(c.op, offered, c.peer).allowed; got != c.allowed {
			t.Errorf("op %#x by %s: allowed %v, want %v", c.op, c.peer, got, c.allowed)
		}
	}
	// The groups are looked up at each restricted call: a membership
	// removed since the last call counts at once.
	before := lookups
	groupsOf3000 = []uint32{7}
	if p.check(protocol.OpPage, offered, Peer{Known: true, UID: 3000, GID: 3000}).allowed || lookups != before+1 {
		t.Errorf("after leaving group 50: allowed, or groups not looked up again (%d lookups)", lookups-before)
	}
	var none *Policy
	if !none.check(protocol.OpPage, nil, Peer{}).allowed {
		t.Error("no policy must allow all")
	}
}

// stubStatus is a stub whose hello offers ops.
func stubWithOps(reply func(uint16, []byte) ([]byte, error), ops ...protocol.OpInfo) *stubChannel {
	return &stubChannel{reply: reply, st: conn.Status{State: conn.StateReady, Hello: protocol.HelloReply{Ops: ops}}}
}
