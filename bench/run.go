package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// placement is where the two sides of every loopback round trip run: the
// standby host's side (this program, the daemon, the libpq client, the
// standby) and the primary's side (its postmaster and backends, the raw TCP
// echo server).
type placement struct {
	Name       string `json:"name"`
	ClientCPUs string `json:"client_cpus"`
	ServerCPUs string `json:"server_cpus"`
}

// bench holds what one run started.
type bench struct {
	s     settings
	env   *testcluster.Env
	pgcfg *pgconn.Config
	// standbyCfg is a SQL session on the standby (standby-sql).
	standbyCfg *pgconn.Config
	connstr    string // no password: the passfile holds it
	echoSrv    *exec.Cmd
	echoAdr    string
	ctcpSrv    *exec.Cmd
	ctcpAdr    string
	// The relays in front of the C echo server (c-relay, go-relay).
	cRelay, goRelay         *exec.Cmd
	cRelayPath, goRelayPath string
	daemon                  *exec.Cmd
	dsock                   string
	dconfig                 string
	dmetric                 string
	dclient                 *client.Client
	dir                     string
	rep                     *report
}

func run(ctx context.Context, s settings) (mdPath, jsonPath string, err error) {
	for _, p := range []*string{&s.standbyd, &s.chanbench, &s.ctcp, &s.call} {
		if *p, err = filepath.Abs(*p); err != nil {
			return "", "", err
		}
		if _, err := os.Stat(*p); err != nil {
			return "", "", fmt.Errorf("%w (make bench builds it)", err)
		}
	}
	b := &bench{s: s, rep: newReport(s)}
	defer b.stop()
	fmt.Println("starting a primary with the extension and a streaming standby ...")
	if err := b.start(ctx); err != nil {
		return "", "", err
	}

	fmt.Printf("daemon idle for %s ...\n", s.Idle)
	if err := b.idlePhase(ctx); err != nil {
		return "", "", err
	}
	for _, pl := range placements() {
		fmt.Printf("latency, placement %s (client CPUs %s, server CPUs %s) ...\n", pl.Name, pl.ClientCPUs, pl.ServerCPUs)
		if err := b.latencyPhase(ctx, pl); err != nil {
			return "", "", fmt.Errorf("placement %s: %w", pl.Name, err)
		}
	}
	if err := b.pinAll(allCPUs(), allCPUs()); err != nil {
		return "", "", err
	}
	fmt.Printf("daemon under load for %s ...\n", s.Load)
	if err := b.loadPhase(ctx); err != nil {
		return "", "", err
	}
	for _, st := range throughputSteps(s.Callers) {
		fmt.Printf("throughput with %d session(s), %d caller(s) ...\n", st.sessions, st.callers)
		if err := b.throughputStep(ctx, st.sessions, st.callers); err != nil {
			return "", "", err
		}
	}
	return b.rep.write(s.outDir)
}

// start brings up the clusters, the echo handler, the TCP echo server and
// the daemon.
func (b *bench) start(ctx context.Context) error {
	env, err := testcluster.Start(testcluster.Options{Standby: true})
	if err != nil {
		return err
	}
	b.env = env
	// The echo handler: the same work (none) as the raw TCP echo server, so
	// the difference is the channel's cost. PL/pgSQL, not SQL: a prepared
	// SELECT would inline a SQL function and plan it once, while a handler
	// called through fmgr re-plans a SQL function in every (sub)transaction
	// on PostgreSQL 15; with PL/pgSQL both sides run the same cached code.
	// The same echo in LANGUAGE sql, to measure that handler kind against
	// PL/pgSQL (echo-8B-sqlfn).
	if _, err := env.PrimarySQL(ctx, `CREATE FUNCTION public.bench_echo(bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS 'BEGIN RETURN $1; END';
SELECT standbyd.register_handler(256, 'echo', 'public.bench_echo(bytea)');
CREATE FUNCTION public.bench_echo_sql(bytea) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1';
SELECT standbyd.register_handler(257, 'echo_sql', 'public.bench_echo_sql(bytea)');`); err != nil {
		return fmt.Errorf("registering the echo handler: %w", err)
	}
	if v, err := env.PrimarySQL(ctx, "SHOW server_version"); err == nil {
		b.rep.Machine.PostgreSQL = v
	}
	b.connstr = fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s passfile=%s sslmode=disable application_name=standbyd-bench",
		env.PrimaryPort, testcluster.ChannelRole, env.PassFile)
	if b.pgcfg, err = pgconn.ParseConfig(b.connstr); err != nil {
		return err
	}
	if b.standbyCfg, err = pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=postgres user=postgres application_name=standbyd-bench",
		env.SocketDir, env.StandbyPort)); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "sbdbench-"); err != nil {
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.echoSrv = exec.Command(self)
	b.echoSrv.Env = append(os.Environ(), tcpEchoEnv+"=1")
	out, err := b.echoSrv.StdoutPipe()
	if err != nil {
		return err
	}
	b.echoSrv.Stderr = os.Stderr
	if err := b.echoSrv.Start(); err != nil {
		return fmt.Errorf("tcp echo server: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("tcp echo server: %w", err)
	}
	b.echoAdr = strings.TrimSpace(line)
	if b.ctcpSrv, b.ctcpAdr, err = startServer(exec.Command(b.s.ctcp, "serve")); err != nil {
		return fmt.Errorf("c tcp echo server: %w", err)
	}
	if b.cRelay, b.cRelayPath, err = startServer(exec.Command(b.s.ctcp, "relay", filepath.Join(b.dir, "c-relay.sock"), b.ctcpAdr)); err != nil {
		return fmt.Errorf("c relay: %w", err)
	}
	goRelay := exec.Command(self)
	goRelay.Env = append(os.Environ(), goRelayEnv+"="+filepath.Join(b.dir, "go-relay.sock")+" "+b.ctcpAdr)
	if b.goRelay, b.goRelayPath, err = startServer(goRelay); err != nil {
		return fmt.Errorf("go relay: %w", err)
	}
	return b.startDaemon(ctx)
}

// startServer starts a server that prints its address as its first line.
func startServer(cmd *exec.Cmd) (*exec.Cmd, string, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", err
	}
	return cmd, strings.TrimSpace(line), nil
}

func (b *bench) startDaemon(ctx context.Context) error {
	port, err := testcluster.FreePort()
	if err != nil {
		return err
	}
	b.dsock = filepath.Join(b.dir, "api.sock")
	b.dmetric = fmt.Sprintf("127.0.0.1:%d", port)
	b.dconfig = filepath.Join(b.dir, "standbyd.yaml")
	// Defaults everywhere else (heartbeat every 2 s): the daemon as shipped.
	// The standby's backends (standby-sql) run as postgres: as root, the
	// socket is given to postgres's group and its directory opened.
	group := ""
	if os.Geteuid() == 0 {
		group = "  socket_group: postgres\n"
		if err := os.Chmod(b.dir, 0o755); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf("standby:\n  data_directory: %s\napi:\n  socket: %s\n%smetrics:\n  listen: %s\nlog:\n  format: json\n  level: warn\n",
		b.env.StandbyData, b.dsock, group, b.dmetric)
	if err := os.WriteFile(b.dconfig, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(b.dir, "standbyd.log"))
	if err != nil {
		return err
	}
	b.daemon = exec.Command(b.s.standbyd, "run", "--config", b.dconfig)
	b.daemon.Stdout, b.daemon.Stderr = logf, logf
	if err := b.daemon.Start(); err != nil {
		return fmt.Errorf("starting standbyd: %w", err)
	}
	b.dclient = client.New(b.dsock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + b.dmetric + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return b.setStandbySocket(ctx)
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("standbyd not ready after 30 s; its log:\n%s", log)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setStandbySocket points the standby's standbyd.socket (its
// postgresql.conf) at the daemon, for standbyd.call(), and reloads it.
func (b *bench) setStandbySocket(ctx context.Context) error {
	f, err := os.OpenFile(filepath.Join(b.env.StandbyData, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "standbyd.socket = '%s'\n", b.dsock)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("setting standbyd.socket: %w", err)
	}
	if _, err := b.env.SQL(ctx, "standby", "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reloading the standby: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		v, err := b.env.SQL(ctx, "standby", "SHOW standbyd.socket")
		if err == nil && v == b.dsock {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the standby does not show standbyd.socket = %s (%q, %v)", b.dsock, v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonBackend is the PID of the daemon's channel backend on the primary.
func (b *bench) daemonBackend() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := b.dclient.Status(ctx)
	if err != nil {
		return 0
	}
	return int(st.ChannelBackendID)
}

func (b *bench) stop() {
	if b.daemon != nil && b.daemon.Process != nil {
		_ = b.daemon.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = b.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = b.daemon.Process.Kill()
			<-done
		}
	}
	if b.dclient != nil {
		b.dclient.Close()
	}
	for _, srv := range []*exec.Cmd{b.echoSrv, b.ctcpSrv, b.cRelay, b.goRelay} {
		if srv != nil && srv.Process != nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
	}
	if b.env != nil {
		b.env.Stop()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// ---- CPU placement ----

func placements() []placement {
	if runtime.NumCPU() < 2 {
		return []placement{{Name: "shared", ClientCPUs: "0", ServerCPUs: "0"}}
	}
	return []placement{
		{Name: "split", ClientCPUs: "0", ServerCPUs: "1"},
		{Name: "shared", ClientCPUs: "0", ServerCPUs: "0"},
	}
}

func allCPUs() string { return fmt.Sprintf("0-%d", runtime.NumCPU()-1) }

// pinAll pins the standby host's side and the primary's side.
func (b *bench) pinAll(clientCPUs, serverCPUs string) error {
	client := []int{os.Getpid(), b.daemon.Process.Pid, b.cRelay.Process.Pid, b.goRelay.Process.Pid}
	if pid, err := b.env.PostmasterPID("standby"); err == nil {
		client = append(client, pid)
		client = append(client, childPIDs(pid)...)
	}
	server := []int{b.echoSrv.Process.Pid, b.ctcpSrv.Process.Pid}
	pm, err := b.env.PostmasterPID("primary")
	if err != nil {
		return err
	}
	server = append(server, pm)
	server = append(server, childPIDs(pm)...)
	if err := pin(clientCPUs, client...); err != nil {
		return err
	}
	return pin(serverCPUs, server...)
}

// ---- phases ----

// usage is the CPU time used so far by the daemon and by its channel
// backend on the primary.
type usage struct{ daemon, backend time.Duration }

// daemonUsage reads it; the backend's is 0 when it cannot be read.
func (b *bench) daemonUsage(backend int) (usage, error) {
	d, err := cpuTime(b.daemon.Process.Pid)
	if err != nil {
		return usage{}, err
	}
	be, _ := cpuTime(backend)
	return usage{daemon: d, backend: be}, nil
}

// idlePhase watches the daemon with nothing to do but its heartbeats.
func (b *bench) idlePhase(ctx context.Context) error {
	pid := b.daemon.Process.Pid
	backend := b.daemonBackend()
	u0, err := b.daemonUsage(backend)
	if err != nil {
		return err
	}
	r0, _ := rssKB(pid)
	select {
	case <-time.After(b.s.Idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	u1, err := b.daemonUsage(backend)
	if err != nil {
		return err
	}
	r1, _ := rssKB(pid)
	b.rep.Resources.Idle = idleFigures{
		Seconds:             b.s.Idle.Seconds(),
		DaemonCPUMS:         ms(u1.daemon - u0.daemon),
		BackendCPUMS:        ms(u1.backend - u0.backend),
		DaemonRSSStartKB:    r0,
		DaemonRSSEndKB:      r1,
		DaemonCPUPercentage: 100 * (u1.daemon - u0.daemon).Seconds() / b.s.Idle.Seconds(),
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyPhase runs every contender on every workload, interleaved in rounds.
func (b *bench) latencyPhase(ctx context.Context, pl placement) error {
	if err := b.pinAll(pl.ClientCPUs, pl.ServerCPUs); err != nil {
		return err
	}
	cs, err := b.contenders(ctx)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	// Backends opened since the postmaster was pinned inherit its CPUs;
	// the daemon's existing one is pinned again to be sure.
	if err := b.pinAll(pl.ClientCPUs, pl.ServerCPUs); err != nil {
		return err
	}
	res := newPlacementResult(pl)
	clis := []contender{
		&cliContender{name: "cli", bin: b.s.standbyd, args: []string{"call"}, cfg: b.dconfig},
		&cliContender{name: "call-process", bin: b.s.call, cfg: b.dconfig},
		trueContender{},
	}
	for _, c := range cs {
		for _, w := range workloads {
			if !runs(c, w) {
				continue
			}
			if _, err := c.Run(ctx, w, b.s.Warmup); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	perRound := b.s.Count / b.s.Rounds
	cliPerRound := max(1, b.s.CLICount/b.s.Rounds)
	var sessPID int
	for _, c := range cs {
		if sc, ok := c.(*sessionContender); ok {
			sessPID = sc.BackendPID()
		}
	}
	for r := range b.s.Rounds {
		for i := range cs {
			c := cs[(i+r)%len(cs)] // rotate the order each round
			for _, w := range workloads {
				if !runs(c, w) {
					continue
				}
				if err := res.batch(ctx, c, w, perRound); err != nil {
					return err
				}
			}
		}
		for i := range clis {
			c := clis[(i+r)%len(clis)]
			for _, w := range cliWorkloads() {
				if err := res.batch(ctx, c, w, cliPerRound); err != nil {
					return err
				}
			}
		}
		res.sampleMemory(b.daemon.Process.Pid, sessPID)
	}
	b.rep.addPlacement(res)
	return nil
}

func cliWorkloads() []workload { return workloads[:2] } // ping, echo-8B

// contenders opens one of each; the order is the first round's.
func (b *bench) contenders(ctx context.Context) ([]contender, error) {
	cs := []contender{&ctcpContender{bin: b.s.ctcp, addr: b.ctcpAdr}}
	tcp, err := dialTCP(b.echoAdr)
	if err != nil {
		return cs, err
	}
	cs = append(cs, tcp, &libpqContender{bin: b.s.chanbench, conninfo: b.connstr}, &libpqContender{bin: b.s.chanbench, conninfo: b.connstr, sql: true})
	sess, err := dialSession(ctx, b.pgcfg)
	if err != nil {
		return cs, err
	}
	cs = append(cs, sess)
	sq, err := dialSQL(ctx, b.pgcfg)
	if err != nil {
		return cs, err
	}
	backend := b.daemonBackend()
	daemon := b.daemon.Process.Pid
	cs = append(cs, sq,
		&apiContender{name: "api-fast", c: client.New(b.dsock), backend: backend, daemon: daemon},
		&apiContender{name: "api-http", c: newHTTPClient(b.dsock), backend: backend, daemon: daemon},
		&apiCContender{bin: b.s.ctcp, socket: b.dsock, backend: backend, daemon: daemon},
		&relayContender{name: "c-relay", bin: b.s.ctcp, path: b.cRelayPath, pid: b.cRelay.Process.Pid},
		&relayContender{name: "go-relay", bin: b.s.ctcp, path: b.goRelayPath, pid: b.goRelay.Process.Pid})
	ssql, err := dialStandbySQL(ctx, b.standbyCfg, backend)
	if err != nil {
		return cs, err
	}
	cs = append(cs, ssql)
	return cs, nil
}

// loadPhase keeps the daemon busy through its API with more callers than
// it has sessions, and measures its CPU and memory and its backend's CPU.
func (b *bench) loadPhase(ctx context.Context) error {
	pid := b.daemon.Process.Pid
	backend := b.daemonBackend()
	u0, err := b.daemonUsage(backend)
	if err != nil {
		return err
	}
	var peak atomic.Int64
	var clients []*client.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	calls, elapsed, err := hammer(ctx, 8, b.s.Load, func() func(context.Context) error {
		cl := client.New(b.dsock)
		clients = append(clients, cl)
		payload := pattern(8)
		return func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := cl.Call(cctx, "echo", payload)
			return err
		}
	}, func() {
		if r, err := rssKB(pid); err == nil && r > peak.Load() {
			peak.Store(r)
		}
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	u1, err := b.daemonUsage(backend)
	if err != nil {
		return err
	}
	b.rep.Resources.Load = loadFigures{
		Seconds:              elapsed.Seconds(),
		Callers:              8,
		Requests:             calls,
		PerSecond:            float64(calls) / elapsed.Seconds(),
		DaemonCPUPercentage:  100 * (u1.daemon - u0.daemon).Seconds() / elapsed.Seconds(),
		DaemonCPUPerRequest:  float64(u1.daemon-u0.daemon) / float64(time.Microsecond) / float64(calls),
		BackendCPUPerRequest: float64(u1.backend-u0.backend) / float64(time.Microsecond) / float64(calls),
		DaemonRSSPeakKB:      peak.Load(),
	}
	return nil
}

// throughputStep is one step of the throughput phase.
type throughputStepSpec struct{ sessions, callers int }

// throughputSteps: one session with one caller (its round-trip bound), with
// callersPerSession and with 8 callers (what pipelining on one session
// gains), then 2 and 4 sessions with callersPerSession each.
func throughputSteps(callersPerSession int) []throughputStepSpec {
	return []throughputStepSpec{
		{1, 1}, {1, callersPerSession}, {1, 8},
		{2, 2 * callersPerSession}, {4, 4 * callersPerSession},
	}
}

// throughputStep runs an in-process supervisor with n sessions and
// callers concurrent callers.
func (b *bench) throughputStep(ctx context.Context, n, callers int) error {
	sup, err := conn.NewSupervisor(conn.SupervisorConfig{
		Dial: func(ctx context.Context, connected func()) (*conn.Session, error) {
			return conn.Dial(ctx, conn.DialOptions{Config: b.pgcfg, ClientName: "standbyd-bench", OnConnected: connected})
		},
		HeartbeatInterval: 2 * time.Second,
		ReplyTimeout:      10 * time.Second,
		ConnectTimeout:    10 * time.Second,
		BackoffMin:        100 * time.Millisecond,
		BackoffMax:        time.Second,
		Sessions:          n,
	})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { sup.Run(sctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for sup.Status().Ready < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("throughput: %d of %d sessions ready after 30 s: %s", sup.Status().Ready, n, sup.Status().LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	payload := pattern(8)
	calls, elapsed, err := hammer(ctx, callers, b.s.Throughput, func() func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := sup.Call(ctx, echoOp, payload)
			return err
		}
	}, nil)
	if err != nil {
		return fmt.Errorf("throughput with %d sessions, %d callers: %w", n, callers, err)
	}
	b.rep.addThroughput(throughputFigures{Sessions: n, Callers: callers, Requests: calls,
		Seconds: elapsed.Seconds(), PerSecond: float64(calls) / elapsed.Seconds()})
	return nil
}

// hammer runs callers goroutines, each making calls one after another for
// d, and returns how many succeeded. Calls get the parent context, not one
// that ends with the phase: a call cut by the phase's end would be a failure
// of the harness, not of the contender. sample, if set, is called every
// 100 ms.
func hammer(ctx context.Context, callers int, d time.Duration, newCaller func() func(context.Context) error, sample func()) (int, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		total    atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	start := time.Now()
	end := start.Add(d)
	for range callers {
		call := newCaller()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				if err := call(ctx); err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				total.Add(1)
			}
		}()
	}
	if sample != nil {
		t := time.NewTicker(100 * time.Millisecond)
		for ctx.Err() == nil && time.Now().Before(end) {
			select {
			case <-t.C:
				sample()
			case <-ctx.Done():
			}
		}
		t.Stop()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, elapsed, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, elapsed, err
	}
	return int(total.Load()), elapsed, nil
}
