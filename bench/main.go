// Command standbyd-bench measures a request through standbyd side by side
// with what a user could use instead and with the loopback limit, in one run
// on one machine, and writes a report (docs/benchmarks.md explains it).
//
// It starts its own throwaway primary (with the extension) and streaming
// standby through internal/testcluster, the daemon from -standbyd, and the
// libpq client from -chanbench, and stops every server it started.
//
//	standbyd-bench [flags]          run and write bench/results/<date>.{md,json}
//
// Started with STANDBYD_BENCH_TCP_ECHO=1 in its environment, it is the raw
// TCP echo server instead; with STANDBYD_BENCH_RELAY="PATH HOST:PORT", the
// Go relay (the harness starts both so, as their own processes).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// settings are the knobs of a run, recorded in the report.
type settings struct {
	Count      int           `json:"requests_per_contender_and_workload"`
	Rounds     int           `json:"rounds"`
	CLICount   int           `json:"cli_requests_per_workload"`
	Warmup     int           `json:"warmup_requests"`
	Idle       time.Duration `json:"idle_ns"`
	Load       time.Duration `json:"load_ns"`
	Throughput time.Duration `json:"throughput_ns_per_step"`
	Callers    int           `json:"callers_per_session"`

	standbyd, chanbench, ctcp, call, outDir string
}

func main() {
	if os.Getenv(tcpEchoEnv) != "" {
		serveTCPEcho()
	}
	if v := os.Getenv(goRelayEnv); v != "" {
		serveGoRelay(v)
	}
	var s settings
	flag.IntVar(&s.Count, "count", 5000, "timed requests per contender and workload, split over the rounds")
	flag.IntVar(&s.Rounds, "rounds", 5, "rounds; each runs every contender in turn (order rotated), so drift hits all alike")
	flag.IntVar(&s.CLICount, "cli-count", 200, "`standbyd call` processes per workload")
	flag.IntVar(&s.Warmup, "warmup", 200, "untimed requests per contender and workload before the rounds")
	flag.DurationVar(&s.Idle, "idle", 60*time.Second, "how long the daemon's idle CPU and memory are watched")
	flag.DurationVar(&s.Load, "load", 10*time.Second, "how long the daemon is kept under full load through its API")
	flag.DurationVar(&s.Throughput, "throughput", 5*time.Second, "duration of each throughput step (1, 2, 4 sessions)")
	flag.IntVar(&s.Callers, "callers", 4, "concurrent callers per session in the throughput steps with 1 (besides 1 and 8), 2 and 4 sessions")
	flag.StringVar(&s.standbyd, "standbyd", "bin/standbyd", "the daemon binary")
	flag.StringVar(&s.chanbench, "chanbench", "bin/chanbench", "the libpq client (bench/libpq)")
	flag.StringVar(&s.ctcp, "ctcp", "bin/ctcp", "the C loopback ping-pong (bench/ctcp)")
	flag.StringVar(&s.call, "call", "bin/standbyd-call", "the small call binary (cmd/standbyd-call)")
	flag.StringVar(&s.outDir, "out", "bench/results", "directory for the report")
	quick := flag.Bool("quick", false, "a short run that checks the harness (small counts, 2 s idle); its figures mean little")
	flag.Parse()
	if *quick {
		s.Count, s.Rounds, s.CLICount, s.Warmup = 200, 2, 10, 20
		s.Idle, s.Load, s.Throughput = 2*time.Second, 2*time.Second, time.Second
	}
	if s.Count < s.Rounds || s.Rounds < 1 || s.CLICount < 1 {
		fmt.Fprintln(os.Stderr, "standbyd-bench: -count must be at least -rounds, both and -cli-count positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	md, js, err := run(ctx, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "standbyd-bench:", err)
		os.Exit(1)
	}
	fmt.Printf("report: %s\n        %s\n", md, js)
}

// tcpEchoEnv in the environment makes the program the raw TCP echo server.
const tcpEchoEnv = "STANDBYD_BENCH_TCP_ECHO"

// goRelayEnv in the environment ("PATH HOST:PORT") makes the program the
// Go relay.
const goRelayEnv = "STANDBYD_BENCH_RELAY"

// serveGoRelay runs the Go relay and never returns.
func serveGoRelay(v string) {
	path, upstream, _ := strings.Cut(v, " ")
	err := goRelayServe(path, upstream)
	fmt.Fprintln(os.Stderr, "go relay:", err)
	os.Exit(1)
}

// serveTCPEcho runs the echo server and never returns.
func serveTCPEcho() {
	err := tcpEchoServe()
	fmt.Fprintln(os.Stderr, "tcp echo server:", err)
	os.Exit(1)
}
