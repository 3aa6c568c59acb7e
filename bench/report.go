package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// report is everything one run measured; it is written as JSON and as
// Markdown.
type report struct {
	Date       string              `json:"date"`
	Machine    machine             `json:"machine"`
	Settings   settings            `json:"settings"`
	Placements []*placementResult  `json:"placements"`
	Throughput []throughputFigures `json:"throughput"`
	// EightOverN is one session's throughput with 8 callers over that with
	// Settings.Callers: what pipelining gains.
	EightOverN float64   `json:"one_session_8_callers_over_callers_per_session"`
	Resources  resources `json:"resources"`
	started    time.Time
}

type machine struct {
	CPUModel   string `json:"cpu_model"`
	CPUs       int    `json:"cpus"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	PostgreSQL string `json:"postgresql"`
}

type placementResult struct {
	placement
	// Latency by contender, then workload.
	Latency map[string]map[string]Summary `json:"latency"`
	// BackendCPUPerRequestUS: CPU time of the primary's backend per request
	// (from /proc/<pid>/schedstat around each batch), for the contenders
	// whose backend is known.
	BackendCPUPerRequestUS map[string]map[string]float64 `json:"backend_cpu_per_request_us"`
	// HopCPUPerRequestUS: CPU time of the process on the standby host's
	// side that a request goes through (the daemon for api-fast and
	// api-http, the relay for c-relay and go-relay) per request.
	HopCPUPerRequestUS map[string]map[string]float64 `json:"hop_cpu_per_request_us"`
	// Ratios of medians by workload: "session/tcp" and the like.
	Ratios map[string]map[string]float64 `json:"median_ratios"`
	// Hops by workload: what one local hop adds to the median, in C, in Go
	// and through the daemon.
	Hops map[string]hopFigures `json:"local_hop"`
	// HandlerKinds: the LANGUAGE sql handler over the PL/pgSQL one through
	// the session (echo 8 B): "median" and "backend_cpu".
	HandlerKinds map[string]float64 `json:"sqlfn_over_plpgsql_session_echo_8b"`
	// Memory after each round: the daemon's and the in-process session's
	// backend's VmRSS, in kB.
	DaemonRSSKB  []int64 `json:"daemon_rss_kb_by_round"`
	BackendRSSKB []int64 `json:"session_backend_rss_kb_by_round"`

	lat        map[string]map[string][]time.Duration
	backendCPU map[string]map[string]time.Duration
	hopCPU     map[string]map[string]time.Duration
}

// hopFigures is one workload's local hop: the median added by a relay in C
// (c-relay over c-tcp), in Go (go-relay over c-tcp) and by the daemon
// (api-fast over session), in µs; and the api-fast/session ratio that the
// C relay's hop would give, the best a local hop can do on this machine.
type hopFigures struct {
	CRelayUS             float64 `json:"c_relay_us"`
	GoRelayUS            float64 `json:"go_relay_us"`
	DaemonUS             float64 `json:"daemon_us"`
	DaemonCCallerUS      float64 `json:"daemon_c_caller_us"`
	APIOverSessionAtCHop float64 `json:"api_fast_over_session_with_the_c_hop"`
}

type throughputFigures struct {
	Sessions  int     `json:"sessions"`
	Callers   int     `json:"callers"`
	Requests  int     `json:"requests"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"requests_per_second"`
	VsOne     float64 `json:"ratio_to_one_session_one_caller"`
}

type resources struct {
	Idle idleFigures `json:"idle"`
	Load loadFigures `json:"load"`
}

type idleFigures struct {
	Seconds             float64 `json:"seconds"`
	DaemonCPUMS         float64 `json:"daemon_cpu_ms"`
	DaemonCPUPercentage float64 `json:"daemon_cpu_percent"`
	BackendCPUMS        float64 `json:"backend_cpu_ms"`
	DaemonRSSStartKB    int64   `json:"daemon_rss_start_kb"`
	DaemonRSSEndKB      int64   `json:"daemon_rss_end_kb"`
}

type loadFigures struct {
	Seconds              float64 `json:"seconds"`
	Callers              int     `json:"callers"`
	Requests             int     `json:"requests"`
	PerSecond            float64 `json:"requests_per_second"`
	DaemonCPUPercentage  float64 `json:"daemon_cpu_percent"`
	DaemonCPUPerRequest  float64 `json:"daemon_cpu_per_request_us"`
	BackendCPUPerRequest float64 `json:"backend_cpu_per_request_us"`
	DaemonRSSPeakKB      int64   `json:"daemon_rss_peak_kb"`
}

func newReport(s settings) *report {
	r := &report{Settings: s, started: time.Now()}
	r.Date = r.started.UTC().Format("2006-01-02")
	r.Machine.CPUs = runtime.NumCPU()
	r.Machine.Go = runtime.Version()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				r.Machine.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(out))
	}
	return r
}

func newPlacementResult(pl placement) *placementResult {
	return &placementResult{placement: pl,
		lat:        map[string]map[string][]time.Duration{},
		backendCPU: map[string]map[string]time.Duration{},
		hopCPU:     map[string]map[string]time.Duration{},
	}
}

// batch runs n requests of c and keeps their latencies and, where c has a
// backend or goes through a local hop, that process's CPU time.
func (p *placementResult) batch(ctx context.Context, c contender, w workload, n int) error {
	pid, hop := c.BackendPID(), 0
	if h, ok := c.(hopContender); ok {
		hop = h.HopPID()
	}
	var c0, h0 time.Duration
	if pid != 0 {
		c0, _ = cpuTime(pid)
	}
	if hop != 0 {
		h0, _ = cpuTime(hop)
	}
	lat, err := c.Run(ctx, w, n)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", c.Name(), w.Name, err)
	}
	if pid != 0 {
		if c1, err := cpuTime(pid); err == nil {
			addCPU(p.backendCPU, c.Name(), w.Name, c1-c0)
		}
	}
	if hop != 0 {
		if h1, err := cpuTime(hop); err == nil {
			addCPU(p.hopCPU, c.Name(), w.Name, h1-h0)
		}
	}
	if p.lat[c.Name()] == nil {
		p.lat[c.Name()] = map[string][]time.Duration{}
	}
	p.lat[c.Name()][w.Name] = append(p.lat[c.Name()][w.Name], lat...)
	return nil
}

func addCPU(m map[string]map[string]time.Duration, c, w string, d time.Duration) {
	if m[c] == nil {
		m[c] = map[string]time.Duration{}
	}
	m[c][w] += d
}

func (p *placementResult) sampleMemory(daemon, backend int) {
	if r, err := rssKB(daemon); err == nil {
		p.DaemonRSSKB = append(p.DaemonRSSKB, r)
	}
	if r, err := rssKB(backend); err == nil {
		p.BackendRSSKB = append(p.BackendRSSKB, r)
	}
}

// ratioPairs are the comparisons the report makes: each a/b of medians.
// c-tcp is the loopback limit; libpq-c the blocking C client on the channel.
var ratioPairs = [][2]string{
	{"session", "c-tcp"}, {"libpq-c", "c-tcp"}, {"go-tcp", "c-tcp"}, {"session", "libpq-c"},
	{"sql", "session"}, {"api-fast", "session"}, {"api-fast", "sql"}, {"api-http", "session"},
	{"standby-sql", "sql"}, {"standby-sql", "api-fast"}, {"c-relay", "c-tcp"}, {"go-relay", "c-tcp"},
	{"api-c", "session"}, {"sql-c", "libpq-c"},
}

func (r *report) addPlacement(p *placementResult) {
	p.Latency = map[string]map[string]Summary{}
	p.BackendCPUPerRequestUS = map[string]map[string]float64{}
	p.HopCPUPerRequestUS = map[string]map[string]float64{}
	perRequest := func(out map[string]map[string]float64, in map[string]map[string]time.Duration, c, w string, n int) {
		if cpu, ok := in[c][w]; ok && n > 0 {
			if out[c] == nil {
				out[c] = map[string]float64{}
			}
			out[c][w] = float64(cpu) / float64(time.Microsecond) / float64(n)
		}
	}
	for c, byW := range p.lat {
		p.Latency[c] = map[string]Summary{}
		for w, lat := range byW {
			p.Latency[c][w] = summarise(lat)
			perRequest(p.BackendCPUPerRequestUS, p.backendCPU, c, w, len(lat))
			perRequest(p.HopCPUPerRequestUS, p.hopCPU, c, w, len(lat))
		}
	}
	p.Hops = map[string]hopFigures{}
	for _, w := range workloads {
		l := func(c string) float64 { return p.Latency[c][w.Name].MedianUS }
		if l("c-tcp") <= 0 || l("c-relay") <= 0 || l("go-relay") <= 0 || l("session") <= 0 || l("api-fast") <= 0 {
			continue
		}
		h := hopFigures{CRelayUS: l("c-relay") - l("c-tcp"), GoRelayUS: l("go-relay") - l("c-tcp"), DaemonUS: l("api-fast") - l("session")}
		if l("api-c") > 0 {
			h.DaemonCCallerUS = l("api-c") - l("session")
		}
		h.APIOverSessionAtCHop = ratio(l("session")+h.CRelayUS, l("session"))
		p.Hops[w.Name] = h
	}
	p.Ratios = map[string]map[string]float64{}
	for _, w := range workloads {
		p.Ratios[w.Name] = map[string]float64{}
		for _, pair := range ratioPairs {
			a, b := p.Latency[pair[0]][w.Name], p.Latency[pair[1]][w.Name]
			if a.Requests > 0 && b.Requests > 0 {
				p.Ratios[w.Name][pair[0]+"/"+pair[1]] = ratio(a.MedianUS, b.MedianUS)
			}
		}
	}
	p.HandlerKinds = map[string]float64{}
	if a, b := p.Latency["session"]["echo-8B-sqlfn"], p.Latency["session"]["echo-8B"]; a.Requests > 0 && b.Requests > 0 {
		p.HandlerKinds["median"] = ratio(a.MedianUS, b.MedianUS)
	}
	if a, b := p.BackendCPUPerRequestUS["session"]["echo-8B-sqlfn"], p.BackendCPUPerRequestUS["session"]["echo-8B"]; a > 0 && b > 0 {
		p.HandlerKinds["backend_cpu"] = ratio(a, b)
	}
	r.Placements = append(r.Placements, p)
}

func (r *report) addThroughput(t throughputFigures) {
	if len(r.Throughput) > 0 {
		t.VsOne = ratio(t.PerSecond, r.Throughput[0].PerSecond)
	} else {
		t.VsOne = 1
	}
	r.Throughput = append(r.Throughput, t)
}

// write saves <date>.json and <date>.md under dir; a second run on the same
// day gets -2, -3 ...
func (r *report) write(dir string) (string, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, r.Date)
	for i := 2; ; i++ {
		if _, err := os.Stat(base + ".md"); os.IsNotExist(err) {
			break
		}
		base = filepath.Join(dir, fmt.Sprintf("%s-%d", r.Date, i))
	}
	r.EightOverN = r.oneSessionEightOverFour()
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".md", []byte(r.markdown()), 0o644); err != nil {
		return "", "", err
	}
	return base + ".md", base + ".json", nil
}

// contenderOrder is how tables list the contenders.
var contenderOrder = []string{"c-tcp", "go-tcp", "c-relay", "go-relay", "libpq-c", "sql-c", "session", "sql", "api-fast", "api-c", "api-http", "standby-sql", "cli", "call-process", "true-process"}

// processContenders start one process per request; the report gives their
// figures in milliseconds too.
var processContenders = []string{"cli", "call-process", "true-process"}

var contenderText = map[string]string{
	"c-tcp":        "TCP ping-pong in C between two processes, blocking read/write, frames of the channel's shape: the loopback limit",
	"go-tcp":       "the same ping-pong in Go (net.Conn, bufio): what Go's runtime adds to the limit",
	"c-relay":      "c-tcp's client and echo server with a C relay process between them on the client's side (Unix socket in, TCP out, one blocking thread): the least a local hop such as the daemon's can cost",
	"go-relay":     "the same with the relay in Go (net.Conn, one goroutine per connection, nothing else): what Go's runtime adds to a local hop",
	"libpq-c":      "C, libpq PQputCopyData/PQgetCopyData, blocking, on the channel",
	"sql-c":        "the sql contender's statements from libpq-c's blocking C client (PQexecPrepared, binary parameter and result): plain SQL against the channel without Go's costs",
	"session":      "standbyd's session in process (internal/conn Session.Call)",
	"sql":          "plain SQL through pgconn: prepared SELECT public.bench_echo($1) (echo-8B-sqlfn: SELECT public.bench_echo_sql($1), which the planner inlines; ping: clock_timestamp(), pg_current_wal_flush_lsn(), pg_is_in_recovery())",
	"api-fast":     "through the daemon's local API with the Go client's default transport (client.New(socket).Call)",
	"api-c":        "through the daemon's fast path from a blocking C client (ctcp fastping, op codes): the daemon's hop with a caller that is not Go",
	"api-http":     "through the daemon's local API with the Go client held to HTTP over the Unix socket",
	"standby-sql":  "standbyd.call() from a SQL session on the standby through pgconn: prepared SELECT standbyd.call(256, $1) (echo-8B-sqlfn: 257), the standby's backend through the daemon to the same handler; registered handlers only, so no ping",
	"cli":          "`standbyd call` as a process through the daemon, start-up included",
	"call-process": "`standbyd-call` (the small call binary) as a process through the daemon, start-up included",
	"true-process": "`/bin/true` as a process, started as the two above are: what any process costs here, the floor under them",
}

func (r *report) markdown() string {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f("# standbyd benchmark, %s\n\n", r.Date)
	f("Machine: %s, %d CPUs, Linux %s, %s, PostgreSQL %s. Run took %s.\n\n",
		r.Machine.CPUModel, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go, r.Machine.PostgreSQL, time.Since(r.started).Round(time.Second))
	f("%d timed requests per contender and workload in %d interleaved rounds (order rotated each round), after %d warm-up requests; `standbyd call`: %d per workload. Workloads: the built-in ping (no payload in, 21 bytes out) and an echo through a registered PL/pgSQL handler of 8 B, 1 KiB and 64 KiB, and of 8 B through the same echo as a LANGUAGE sql handler (echo-8B-sqlfn). Latency in microseconds; req/s is one caller, back to back.\n\n",
		r.Settings.Count, r.Settings.Rounds, r.Settings.Warmup, r.Settings.CLICount)
	f("Contenders:\n\n")
	for _, c := range contenderOrder {
		f("- `%s`: %s\n", c, contenderText[c])
	}
	for _, p := range r.Placements {
		f("\n## Placement %s: client side on CPU %s, primary side on CPU %s\n\n", p.Name, p.ClientCPUs, p.ServerCPUs)
		f("| contender | workload | median µs | p90 µs | p99 µs | req/s | backend CPU µs/req | hop CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, w := range workloads {
			for _, c := range contenderOrder {
				s, ok := p.Latency[c][w.Name]
				if !ok {
					continue
				}
				cpu, hop := "–", "–"
				if v, ok := p.BackendCPUPerRequestUS[c][w.Name]; ok {
					cpu = fmt.Sprintf("%.1f", v)
				}
				if v, ok := p.HopCPUPerRequestUS[c][w.Name]; ok {
					hop = fmt.Sprintf("%.1f", v)
				}
				f("| %s | %s | %.1f | %.1f | %.1f | %.0f | %s | %s |\n", c, w.Name, s.MedianUS, s.P90US, s.P99US, s.PerSecond, cpu, hop)
			}
		}
		f("\nRatios of medians:\n\n| workload |")
		for _, pair := range ratioPairs {
			f(" %s/%s |", pair[0], pair[1])
		}
		f("\n|---|%s\n", strings.Repeat("---:|", len(ratioPairs)))
		for _, w := range workloads {
			f("| %s |", w.Name)
			for _, pair := range ratioPairs {
				if v, ok := p.Ratios[w.Name][pair[0]+"/"+pair[1]]; ok {
					f(" %.2f |", v)
				} else {
					f(" – |")
				}
			}
			f("\n")
		}
		f("\nThe local hop: what one process between the caller and the server adds to the median, in µs (c-relay − c-tcp, go-relay − c-tcp, api-fast − session, api-c − session), and the api-fast/session ratio the C relay's hop would give:\n\n| workload | C relay | Go relay | daemon | daemon, C caller | api-fast/session at the C hop |\n|---|---:|---:|---:|---:|---:|\n")
		for _, w := range workloads {
			if h, ok := p.Hops[w.Name]; ok {
				f("| %s | %.1f | %.1f | %.1f | %.1f | %.2f |\n", w.Name, h.CRelayUS, h.GoRelayUS, h.DaemonUS, h.DaemonCCallerUS, h.APIOverSessionAtCHop)
			}
		}
		f("\nLANGUAGE sql handler ÷ PL/pgSQL handler, through the session, echo 8 B: median %.2f, backend CPU per request %.2f.\n",
			p.HandlerKinds["median"], p.HandlerKinds["backend_cpu"])
		for _, c := range processContenders {
			for _, w := range cliWorkloads() {
				if v, ok := p.Latency[c][w.Name]; ok {
					f("\n`%s`, %s: %.2f ms per call (median), %.2f ms p90.", c, w.Name, v.MedianUS/1000, v.P90US/1000)
				}
			}
		}
		f("\n")
		f("\nMemory after each round (VmRSS, kB): daemon %s; in-process session's backend %s.\n", joinInts(p.DaemonRSSKB), joinInts(p.BackendRSSKB))
	}
	f("\n## Throughput (in-process supervisor, echo 8 B, no CPU pinning)\n\n| sessions | callers | requests | req/s | vs 1 session, 1 caller |\n|---:|---:|---:|---:|---:|\n")
	for _, t := range r.Throughput {
		f("| %d | %d | %d | %.0f | %.2f |\n", t.Sessions, t.Callers, t.Requests, t.PerSecond, t.VsOne)
	}
	if v := r.oneSessionEightOverFour(); v > 0 {
		f("\nOne session, 8 callers over %d callers: %.2f (a session that carries one request at a time stays near 1; pipelining should reach 2).\n", r.Settings.Callers, v)
	}
	id, ld := r.Resources.Idle, r.Resources.Load
	f("\n## Resources\n\n")
	f("- Idle for %.0f s with heartbeats on (default 2 s): daemon CPU %.1f ms (%.3f%% of a core), its channel backend %.1f ms; daemon VmRSS %d kB at the start, %d kB at the end.\n",
		id.Seconds, id.DaemonCPUMS, id.DaemonCPUPercentage, id.BackendCPUMS, id.DaemonRSSStartKB, id.DaemonRSSEndKB)
	f("- Under full load for %.0f s (%d API callers, echo 8 B, one session): %.0f req/s; daemon CPU %.0f%% of a core, %.1f µs per request; channel backend %.1f µs CPU per request; daemon peak VmRSS %d kB.\n",
		ld.Seconds, ld.Callers, ld.PerSecond, ld.DaemonCPUPercentage, ld.DaemonCPUPerRequest, ld.BackendCPUPerRequest, ld.DaemonRSSPeakKB)
	return b.String()
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// oneSessionEightOverFour is one session's throughput with 8 callers over
// that with -callers callers (0 when a step is missing).
func (r *report) oneSessionEightOverFour() float64 {
	var eight, base float64
	for _, t := range r.Throughput {
		if t.Sessions != 1 {
			continue
		}
		switch t.Callers {
		case 8:
			eight = t.PerSecond
		case r.Settings.Callers:
			base = t.PerSecond
		}
	}
	if eight == 0 || base == 0 {
		return 0
	}
	return eight / base
}
