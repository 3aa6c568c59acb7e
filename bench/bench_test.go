package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testskip"
)

func TestMain(m *testing.M) {
	if os.Getenv(tcpEchoEnv) != "" {
		serveTCPEcho() // the harness re-executes the test binary as its echo server
	}
	if v := os.Getenv(goRelayEnv); v != "" {
		serveGoRelay(v) // and as its Go relay
	}
	os.Exit(m.Run())
}

// TestQuickRun runs the whole harness briefly against real servers, the
// real daemon and the real libpq client, and checks that the report holds a
// figure for every contender, workload and placement: the benchmark must
// not rot between the runs that produce figures.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		testskip.Skip(t, "starts PostgreSQL servers; run by make test, not make test-unit")
	}
	dir := t.TempDir()
	s := settings{Count: 40, Rounds: 2, CLICount: 4, Warmup: 5, Idle: time.Second, Load: time.Second,
		Throughput: 500 * time.Millisecond, Callers: 2, outDir: filepath.Join(dir, "results"),
		standbyd: os.Getenv("STANDBYD_BIN"), chanbench: filepath.Join(dir, "chanbench"),
		ctcp: filepath.Join(dir, "ctcp"), call: filepath.Join(dir, "standbyd-call")}
	if s.standbyd == "" {
		s.standbyd = filepath.Join(dir, "standbyd")
		build(t, "go", "build", "-o", s.standbyd, "../cmd/standbyd")
	}
	build(t, "make", "-s", "-C", "libpq", "PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config", "OUT="+s.chanbench)
	build(t, "make", "-s", "-C", "ctcp", "OUT="+s.ctcp)
	build(t, "go", "build", "-o", s.call, "../cmd/standbyd-call")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	md, js, err := run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(md); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if want := len(placements()); len(r.Placements) != want {
		t.Fatalf("%d placements, want %d", len(r.Placements), want)
	}
	for _, p := range r.Placements {
		for _, c := range contenderOrder {
			ws := workloads
			n := s.Count / s.Rounds * s.Rounds
			if slices.Contains(processContenders, c) {
				ws, n = cliWorkloads(), s.CLICount/s.Rounds*s.Rounds
			}
			for _, w := range ws {
				if c == "standby-sql" && w.Ping { // standbyd.call() reaches handlers only
					if _, ok := p.Latency[c][w.Name]; ok {
						t.Errorf("%s: standby-sql has figures for ping", p.Name)
					}
					continue
				}
				got := p.Latency[c][w.Name]
				if got.Requests != n || got.MedianUS <= 0 || got.P99US < got.MedianUS {
					t.Errorf("%s %s %s: %+v (want %d requests)", p.Name, c, w.Name, got, n)
				}
			}
		}
		for _, c := range []string{"session", "sql"} {
			if v := p.BackendCPUPerRequestUS[c]["echo-8B"]; v <= 0 {
				t.Errorf("%s: backend CPU per request of %s is %v", p.Name, c, v)
			}
		}
		for _, w := range workloads {
			h, ok := p.Hops[w.Name]
			if !ok || h.CRelayUS == 0 || h.GoRelayUS == 0 || h.DaemonUS == 0 || h.DaemonCCallerUS == 0 || h.APIOverSessionAtCHop <= 0 {
				t.Errorf("%s %s: local hop %+v", p.Name, w.Name, h)
			}
		}
		for _, c := range []string{"api-fast", "api-c", "api-http", "c-relay", "go-relay"} {
			if v := p.HopCPUPerRequestUS[c]["echo-8B"]; v <= 0 {
				t.Errorf("%s: hop CPU per request of %s is %v", p.Name, c, v)
			}
		}
		if p.HandlerKinds["median"] <= 0 || p.HandlerKinds["backend_cpu"] <= 0 {
			t.Errorf("%s: sql over PL/pgSQL handler: %v", p.Name, p.HandlerKinds)
		}
		if p.Ratios["echo-8B"]["sql-c/libpq-c"] <= 0 || p.Ratios["ping"]["sql-c/libpq-c"] <= 0 {
			t.Errorf("%s: no sql-c/libpq-c ratios: %v", p.Name, p.Ratios["echo-8B"])
		}
		if p.Ratios["echo-8B"]["standby-sql/sql"] <= 0 || p.Ratios["echo-8B"]["standby-sql/api-fast"] <= 0 {
			t.Errorf("%s: no standby-sql ratios: %v", p.Name, p.Ratios["echo-8B"])
		}
		if p.Ratios["echo-8B"]["session/c-tcp"] <= 0 || p.Ratios["ping"]["api-fast/sql"] <= 0 || len(p.DaemonRSSKB) != s.Rounds {
			t.Errorf("%s: ratios %v, daemon memory samples %v", p.Name, p.Ratios["echo-8B"], p.DaemonRSSKB)
		}
	}
	if len(r.Throughput) != 5 || r.Throughput[2].Callers != 8 || r.Throughput[4].Sessions != 4 || r.Throughput[0].PerSecond <= 0 {
		t.Errorf("throughput: %+v", r.Throughput)
	}
	if r.Resources.Idle.DaemonRSSEndKB <= 0 || r.Resources.Load.Requests <= 0 || r.Resources.Load.DaemonCPUPerRequest <= 0 {
		t.Errorf("resources: %+v", r.Resources)
	}
}

func build(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
