package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

// echoOp is the op code the benchmark registers its echo handler under
// (PL/pgSQL), and echoSQLOp the same echo as a LANGUAGE sql function.
const (
	echoOp    = protocol.FirstUserOp
	echoSQLOp = protocol.FirstUserOp + 1
)

// workload is one kind of request: the built-in ping (no payload in, 21
// bytes out) or an echo of size bytes through a registered handler,
// PL/pgSQL unless SQLFn (the same echo as a LANGUAGE sql function).
type workload struct {
	Name  string
	Ping  bool
	Size  int
	SQLFn bool
}

// op is the operation the workload calls on the channel, and opName its
// name for the API and `standbyd call`.
func (w workload) op() uint16 {
	switch {
	case w.Ping:
		return protocol.OpPing
	case w.SQLFn:
		return echoSQLOp
	}
	return echoOp
}

func (w workload) opName() string {
	switch {
	case w.Ping:
		return "ping"
	case w.SQLFn:
		return "echo_sql"
	}
	return "echo"
}

var workloads = []workload{
	{Name: "ping", Ping: true},
	{Name: "echo-8B", Size: 8},
	{Name: "echo-1KiB", Size: 1024},
	{Name: "echo-64KiB", Size: 64 << 10},
	{Name: "echo-8B-sqlfn", Size: 8, SQLFn: true},
}

// pattern is the payload of a given size; the echo is checked against it.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + 7)
	}
	return b
}

// contender makes requests one after another and times each.
type contender interface {
	Name() string
	// Run makes n requests of workload w and returns their latencies.
	Run(ctx context.Context, w workload, n int) ([]time.Duration, error)
	// BackendPID is the primary backend serving it (0: none or unknown), so
	// that its CPU time can be read around a batch.
	BackendPID() int
	Close()
}

// hopContender is a contender that goes through a process on the standby
// host's side (the daemon, a relay), whose CPU time is read around a batch
// too.
type hopContender interface {
	HopPID() int
}

// checkEcho checks a reply against its request.
func checkEcho(w workload, want, got []byte) error {
	if w.Ping {
		if len(got) != protocol.PingReplySize {
			return fmt.Errorf("ping reply of %d bytes, want %d", len(got), protocol.PingReplySize)
		}
		return nil
	}
	if !bytes.Equal(want, got) {
		return fmt.Errorf("echo reply differs from the request (%d bytes sent, %d back)", len(want), len(got))
	}
	return nil
}

// timeLoop runs one request n times and times each.
func timeLoop(ctx context.Context, n int, one func() error) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return lat, err
		}
		t0 := time.Now()
		if err := one(); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// ---- raw TCP in Go ----

// tcpContender ping-pongs frames of the channel's shape (12-byte header,
// payload) with an echo server in another process (tcpEchoServe).
type tcpContender struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
}

func dialTCP(addr string) (*tcpContender, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raw tcp: %w", err)
	}
	return &tcpContender{c: c, br: bufio.NewReaderSize(c, 128<<10)}, nil
}

func (t *tcpContender) Name() string    { return "go-tcp" }
func (t *tcpContender) BackendPID() int { return 0 }
func (t *tcpContender) Close()          { t.c.Close() }

func (t *tcpContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	req := make([]byte, protocol.HeaderSize+len(payload))
	req[0] = 'Q'
	binary.BigEndian.PutUint32(req[8:], uint32(len(payload)))
	copy(req[protocol.HeaderSize:], payload)
	var hdr [protocol.HeaderSize]byte
	return timeLoop(ctx, n, func() error {
		if _, err := t.c.Write(req); err != nil {
			return fmt.Errorf("raw tcp: %w", err)
		}
		if _, err := io.ReadFull(t.br, hdr[:]); err != nil {
			return fmt.Errorf("raw tcp: %w", err)
		}
		m := int(binary.BigEndian.Uint32(hdr[8:]))
		if cap(t.buf) < m {
			t.buf = make([]byte, m)
		}
		got := t.buf[:m]
		if _, err := io.ReadFull(t.br, got); err != nil {
			return fmt.Errorf("raw tcp: %w", err)
		}
		return checkEcho(w, payload, got)
	})
}

// tcpEchoServe is the other end of tcpContender, run as its own process: it answers each frame with the same frame,
// or, for an empty payload, with a payload of a ping reply's size. It prints
// its address on stdout and serves until killed (see tcpEchoEnv); it
// returns only the error that stopped it.
func tcpEchoServe() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return serveEach(ln, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 128<<10)
		var hdr [protocol.HeaderSize]byte
		var buf []byte
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			m := int(binary.BigEndian.Uint32(hdr[8:]))
			out := m
			if m == 0 {
				out = protocol.PingReplySize
			}
			if cap(buf) < protocol.HeaderSize+out {
				buf = make([]byte, protocol.HeaderSize+out)
			}
			frame := buf[:protocol.HeaderSize+out]
			if _, err := io.ReadFull(br, frame[protocol.HeaderSize:protocol.HeaderSize+m]); err != nil {
				return
			}
			copy(frame, hdr[:])
			frame[0] = 'A'
			binary.BigEndian.PutUint32(frame[8:], uint32(out))
			if _, err := c.Write(frame); err != nil {
				return
			}
		}
	})
}

// serveEach serves each connection ln accepts with serve, in a goroutine
// of its own, closing it after; it returns when accepting fails.
func serveEach(ln net.Listener, serve func(net.Conn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

// goRelayServe is the Go relay: on the Unix socket path, each connection
// gets its own connection to upstream, and each request frame goes there
// and its reply back, by one goroutine with blocking reads and writes: what
// a local hop costs in Go with nothing else to do (the c-relay's twin).
func goRelayServe(path, upstream string) error {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	fmt.Println(path)
	return serveEach(ln, func(c net.Conn) {
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			fmt.Fprintln(os.Stderr, "go relay:", err)
			return
		}
		defer up.Close()
		buf := make([]byte, protocol.HeaderSize+relayMaxPayload)
		for carryFrame(c, up, buf) == nil && carryFrame(up, c, buf) == nil {
		}
	})
}

// relayMaxPayload is the largest frame payload the relays carry (ctcp's
// MAX_PAYLOAD).
const relayMaxPayload = 1 << 20

// carryFrame reads one frame (header, then the payload its length gives)
// from one connection and writes it to the other in one write.
func carryFrame(from io.Reader, to io.Writer, buf []byte) error {
	if _, err := io.ReadFull(from, buf[:protocol.HeaderSize]); err != nil {
		return err
	}
	m := int(binary.BigEndian.Uint32(buf[8:protocol.HeaderSize]))
	if m > relayMaxPayload {
		return fmt.Errorf("frame payload of %d bytes, more than %d", m, relayMaxPayload)
	}
	if _, err := io.ReadFull(from, buf[protocol.HeaderSize:protocol.HeaderSize+m]); err != nil {
		return err
	}
	_, err := to.Write(buf[:protocol.HeaderSize+m])
	return err
}

// ---- C programs run once per batch: the C limit and libpq ----

// runLatencies runs a C client that times its own requests and prints each
// latency in nanoseconds, one a line; only the requests are timed, not the
// program's start or its connection.
func runLatencies(ctx context.Context, name string, n int, env []string, bin string, args ...string) ([]time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	lat := make([]time.Duration, 0, n)
	for _, f := range strings.Fields(string(out)) {
		ns, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad output %q", name, f)
		}
		lat = append(lat, time.Duration(ns))
	}
	if len(lat) != n {
		return nil, fmt.Errorf("%s: %d latencies for %d requests", name, len(lat), n)
	}
	return lat, nil
}

// ctcpContender is the loopback limit: bench/ctcp, a blocking C ping-pong
// of frames of the channel's shape with a C echo server in another process
// (started once, pinned with the primary's side).
type ctcpContender struct {
	bin, addr string
}

func (c *ctcpContender) Name() string    { return "c-tcp" }
func (c *ctcpContender) BackendPID() int { return 0 }
func (c *ctcpContender) Close()          {}

func (c *ctcpContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	return runLatencies(ctx, "c-tcp", n, nil, c.bin, "ping", c.addr, strconv.Itoa(w.Size), strconv.Itoa(n))
}

// relayContender pings the C echo server through a relay process on the
// standby host's side (c-relay: ctcp relay; go-relay: goRelayServe) with
// the same C client as c-tcp: the difference from c-tcp is the least a local
// hop costs, in C and in Go.
type relayContender struct {
	name, bin, path string
	pid             int // the relay's process
}

func (c *relayContender) Name() string    { return c.name }
func (c *relayContender) BackendPID() int { return 0 }
func (c *relayContender) HopPID() int     { return c.pid }
func (c *relayContender) Close()          {}

func (c *relayContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	return runLatencies(ctx, c.name, n, nil, c.bin, "ping", c.path, strconv.Itoa(w.Size), strconv.Itoa(n))
}

// apiCContender calls through the daemon's fast path from C (ctcp
// fastping, op codes, blocking): the daemon's hop with a caller that is not
// Go, next to api-fast's Go client.
type apiCContender struct {
	bin, socket     string
	backend, daemon int
}

func (a *apiCContender) Name() string    { return "api-c" }
func (a *apiCContender) BackendPID() int { return a.backend }
func (a *apiCContender) HopPID() int     { return a.daemon }
func (a *apiCContender) Close()          {}

func (a *apiCContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	return runLatencies(ctx, "api-c", n, nil, a.bin, "fastping", a.socket, strconv.Itoa(int(w.op())), strconv.Itoa(w.Size), strconv.Itoa(n))
}

// libpqContender runs bench/libpq/chanbench, a blocking libpq client, for
// each batch: on the channel (libpq-c), or with sql set the sql contender's
// statements (sql-c, CHANBENCH_SQL): plain SQL against the channel without
// Go's costs on either.
type libpqContender struct {
	bin      string
	conninfo string
	sql      bool
}

func (l *libpqContender) Name() string {
	if l.sql {
		return "sql-c"
	}
	return "libpq-c"
}
func (l *libpqContender) BackendPID() int { return 0 }
func (l *libpqContender) Close()          {}

func (l *libpqContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	env, op := []string{"CHANBENCH_EXPECT_ECHO=1"}, strconv.Itoa(int(w.op()))
	if w.Ping {
		env[0] = "CHANBENCH_EXPECT_ECHO=0"
	}
	if l.sql {
		stmt := sqlEcho
		switch {
		case w.Ping:
			stmt = sqlPing
		case w.SQLFn:
			stmt = sqlEchoSQL
		}
		env, op = append(env, "CHANBENCH_SQL="+stmt), "0"
	}
	return runLatencies(ctx, l.Name(), n, env, l.bin, l.conninfo, op, strconv.Itoa(w.Size), strconv.Itoa(n))
}

// ---- standbyd's session, in process ----

type sessionContender struct{ s *conn.Session }

func dialSession(ctx context.Context, cfg *pgconn.Config) (*sessionContender, error) {
	s, err := conn.Dial(ctx, conn.DialOptions{Config: cfg, ClientName: "standbyd-bench"})
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return &sessionContender{s: s}, nil
}

func (c *sessionContender) Name() string    { return "session" }
func (c *sessionContender) BackendPID() int { return int(c.s.BackendPID()) }
func (c *sessionContender) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.s.Close(ctx)
}

func (c *sessionContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	return timeLoop(ctx, n, func() error {
		got, err := c.s.Call(ctx, w.op(), payload)
		if err != nil {
			return fmt.Errorf("session: %w", err)
		}
		return checkEcho(w, payload, got)
	})
}

// ---- plain SQL through pgconn: what a user would otherwise do ----

// sqlContender calls the echo handler's function, and for ping the same
// facts as the built-in, as prepared statements over the extended protocol
// with binary parameters and results.
type sqlContender struct{ pc *pgconn.PgConn }

const (
	sqlEcho    = "SELECT public.bench_echo($1)"
	sqlEchoSQL = "SELECT public.bench_echo_sql($1)"
	sqlPing    = "SELECT clock_timestamp(), pg_current_wal_flush_lsn(), pg_is_in_recovery()"
)

func dialSQL(ctx context.Context, cfg *pgconn.Config) (*sqlContender, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	for name, q := range map[string]string{"echo": sqlEcho, "echo_sql": sqlEchoSQL, "ping": sqlPing} {
		if _, err := pc.Prepare(ctx, name, q, nil); err != nil {
			pc.Close(ctx)
			return nil, fmt.Errorf("sql: prepare %s: %w", name, err)
		}
	}
	return &sqlContender{pc: pc}, nil
}

func (c *sqlContender) Name() string    { return "sql" }
func (c *sqlContender) BackendPID() int { return int(c.pc.PID()) }
func (c *sqlContender) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.pc.Close(ctx)
}

func (c *sqlContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	name, params, formats := w.opName(), [][]byte{payload}, []int16{1}
	if w.Ping {
		name, params, formats = "ping", nil, nil
	}
	return timeLoop(ctx, n, func() error {
		rr := c.pc.ExecPrepared(ctx, name, params, formats, []int16{1}).Read()
		if rr.Err != nil {
			return fmt.Errorf("sql: %w", rr.Err)
		}
		if len(rr.Rows) != 1 {
			return fmt.Errorf("sql: %d rows", len(rr.Rows))
		}
		if w.Ping {
			return nil
		}
		return checkEcho(w, payload, rr.Rows[0][0])
	})
}

// ---- standbyd.call() from a SQL session on the standby ----

// standbySQLContender calls the echo handler with standbyd.call() from a
// SQL session on the standby, as prepared statements through pgconn: the
// standby's backend asks the daemon (standbyd.socket), which asks the
// primary. It sits beside sqlContender, the same handler over an
// application's own SQL connection to the primary.
type standbySQLContender struct {
	pc      *pgconn.PgConn
	backend int // the daemon's channel backend on the primary
}

func dialStandbySQL(ctx context.Context, cfg *pgconn.Config, backend int) (*standbySQLContender, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("standby-sql: %w", err)
	}
	for name, op := range map[string]uint16{"echo": echoOp, "echo_sql": echoSQLOp} {
		if _, err := pc.Prepare(ctx, name, fmt.Sprintf("SELECT standbyd.call(%d, $1)", op), nil); err != nil {
			pc.Close(ctx)
			return nil, fmt.Errorf("standby-sql: prepare %s (the extension 1.3 on the primary?): %w", name, err)
		}
	}
	return &standbySQLContender{pc: pc, backend: backend}, nil
}

func (c *standbySQLContender) Name() string    { return "standby-sql" }
func (c *standbySQLContender) BackendPID() int { return c.backend }
func (c *standbySQLContender) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.pc.Close(ctx)
}

// Supports: standbyd.call() reaches registered handlers only, not the
// built-in ping.
func (c *standbySQLContender) Supports(w workload) bool { return !w.Ping }

func (c *standbySQLContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	params := [][]byte{payload}
	return timeLoop(ctx, n, func() error {
		rr := c.pc.ExecPrepared(ctx, w.opName(), params, []int16{1}, []int16{1}).Read()
		if rr.Err != nil {
			return fmt.Errorf("standby-sql: %w", rr.Err)
		}
		if len(rr.Rows) != 1 {
			return fmt.Errorf("standby-sql: %d rows", len(rr.Rows))
		}
		return checkEcho(w, payload, rr.Rows[0][0])
	})
}

// partial is a contender that runs only some workloads.
type partial interface{ Supports(w workload) bool }

// runs reports whether contender c runs workload w.
func runs(c contender, w workload) bool {
	p, ok := c.(partial)
	return !ok || p.Supports(w)
}

// ---- the local API, with the Go client ----

// apiContender calls through the daemon's local API with the Go client:
// "api-fast" as client.New gives it (the client's default path), "api-http"
// with the client held to HTTP (newHTTPClient).
type apiContender struct {
	name    string
	c       *client.Client
	backend int // the daemon's channel backend, read once
	daemon  int // the daemon's process
}

func (a *apiContender) Name() string    { return a.name }
func (a *apiContender) BackendPID() int { return a.backend }
func (a *apiContender) HopPID() int     { return a.daemon }
func (a *apiContender) Close()          { a.c.Close() }

func (a *apiContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	return timeLoop(ctx, n, func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := a.c.Call(cctx, w.opName(), payload)
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		return checkEcho(w, payload, got)
	})
}

// ---- a call as a process, start-up included ----

// cliContender runs one process per request: `standbyd call` ("cli") or
// the small standbyd-call binary ("call-process"), what a shell loop pays.
type cliContender struct {
	name string
	bin  string
	args []string // before the call's own flags: "call" for standbyd
	cfg  string
}

func (c *cliContender) Name() string    { return c.name }
func (c *cliContender) BackendPID() int { return 0 }
func (c *cliContender) Close()          {}

func (c *cliContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	args := append(append([]string{}, c.args...), "--config", c.cfg, "--out", "raw")
	if w.Ping {
		args = append(args, "ping")
	} else {
		args = append(args, "--in", "stdin", "echo")
	}
	return timeLoop(ctx, n, func() error {
		cmd := exec.CommandContext(ctx, c.bin, args...)
		cmd.Stdin = bytes.NewReader(payload)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", c.name, err, strings.TrimSpace(stderr.String()))
		}
		return checkEcho(w, payload, got)
	})
}

// trueContender starts /bin/true per request, as the process contenders
// start theirs: what starting any process costs on the machine, the floor
// under cli and call-process.
type trueContender struct{}

func (trueContender) Name() string    { return "true-process" }
func (trueContender) BackendPID() int { return 0 }
func (trueContender) Close()          {}

func (trueContender) Run(ctx context.Context, w workload, n int) ([]time.Duration, error) {
	payload := pattern(w.Size)
	return timeLoop(ctx, n, func() error {
		cmd := exec.CommandContext(ctx, "/bin/true")
		cmd.Stdin = bytes.NewReader(payload)
		if _, err := cmd.Output(); err != nil {
			return fmt.Errorf("true-process: %w", err)
		}
		return nil
	})
}
