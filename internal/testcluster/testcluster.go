// Package testcluster starts throwaway PostgreSQL clusters for end-to-end
// tests with scripts/cluster.sh (the same script the demo and the benchmarks
// use): a primary with the standbyd extension and, optionally, a streaming
// standby made with pg_basebackup -R.
//
// Every server a test starts is stopped: by Env.Stop (from t.Cleanup or
// TestMain), on SIGINT/SIGTERM, and, for runs that died without cleaning up
// (a go test timeout panics without running deferred code), by the next
// Start, which stops clusters whose owning test process is gone.
//
// The servers are PostgreSQL 15 from the host by default. STANDBYD_PG_MAJOR
// chooses another major and STANDBYD_PG_CHROOT a chroot that holds it
// (scripts/majors.sh makes them); every PostgreSQL program then runs inside
// the chroot, while the tests and the daemon stay on the host.
//
// It fails loudly, never skips, when the chosen major's server is missing.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultMajor is the PostgreSQL major of the host (Debian 12's).
const DefaultMajor = "15"

// Major is the PostgreSQL major the clusters run: STANDBYD_PG_MAJOR, or
// DefaultMajor.
func Major() string {
	if m := strings.TrimSpace(os.Getenv("STANDBYD_PG_MAJOR")); m != "" {
		return m
	}
	return DefaultMajor
}

// Chroot is the directory the PostgreSQL programs run in
// (STANDBYD_PG_CHROOT); "" means the host.
func Chroot() string {
	return strings.TrimSpace(os.Getenv("STANDBYD_PG_CHROOT"))
}

// PGBin is where Debian keeps the chosen major's server binaries, as the
// programs see it (inside Chroot, if one is set). PGBIN overrides it, as it
// does for scripts/cluster.sh (to test against a private build).
func PGBin() string {
	if b := strings.TrimSpace(os.Getenv("PGBIN")); b != "" {
		return b
	}
	return "/usr/lib/postgresql/" + Major() + "/bin"
}

// Command runs the PostgreSQL program prog of the chosen major as the
// clusters' owner: postgres when the tests run as root (PostgreSQL refuses
// to run as root), inside Chroot when one is set. It is the Go twin of
// cluster.sh's pg wrapper.
func Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	path := filepath.Join(PGBin(), prog)
	if c := Chroot(); c != "" {
		// The chroot's postgres user has the host's uid and gid.
		full := append([]string{"--userspec=postgres:postgres", c, "env", "HOME=/var/lib/postgresql", path}, args...)
		return exec.CommandContext(ctx, "chroot", full...)
	}
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

// CommandIn is Command run in the directory dir (which, like every test
// directory under /tmp, has the same path inside a chroot: chroot(8) itself
// would start the program in the chroot's /).
func CommandIn(ctx context.Context, dir, prog string, args ...string) *exec.Cmd {
	if Chroot() == "" {
		cmd := Command(ctx, prog, args...)
		cmd.Dir = dir
		return cmd
	}
	path := filepath.Join(PGBin(), prog)
	full := append([]string{"--userspec=postgres:postgres", Chroot(), "env", "HOME=/var/lib/postgresql",
		"sh", "-c", `cd "$0" && exec "$@"`, dir, path}, args...)
	return exec.CommandContext(ctx, "chroot", full...)
}

// serverMissing says why the chosen major's server cannot run, or nil.
func serverMissing() error {
	postgres := filepath.Join(Chroot(), PGBin(), "postgres")
	if _, err := os.Stat(postgres); err != nil {
		if Chroot() != "" {
			return fmt.Errorf("PostgreSQL %s server not found at %s (STANDBYD_PG_CHROOT): run `scripts/majors.sh build %s` as root", Major(), postgres, Major())
		}
		return fmt.Errorf("PostgreSQL %s server not found in %s: run `scripts/cluster.sh deps` as root (or `make test`, which does)", Major(), PGBin())
	}
	return nil
}

// basePrefix names the directories of test clusters under os.TempDir().
const basePrefix = "standbyd-test-"

// ChannelRole is the role the clusters create for replication and the
// channel (LOGIN REPLICATION, EXECUTE on standbyd.serve()).
const ChannelRole = "standbyd_repl"

// Options choose what Start builds.
type Options struct {
	// Standby adds a streaming standby.
	Standby bool
}

// Env is a running primary and, optionally, its standby.
type Env struct {
	Base        string // private directory holding everything
	PrimaryData string
	PrimaryPort int
	StandbyData string // "" without a standby
	StandbyPort int
	PassFile    string // passfile with the channel role's password
	SocketDir   string

	script  string
	stopped sync.Once
}

var (
	liveMu  sync.Mutex
	live    = map[*Env]bool{}
	sigStop chan struct{} // non-nil while the signal handler runs
)

// RepoRoot finds the module root by walking up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Start builds and starts the clusters. The caller must call Stop.
func Start(opts Options) (*Env, error) {
	if err := serverMissing(); err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	sweepStale()
	base, err := os.MkdirTemp("", basePrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(base, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	e := &Env{
		Base:        base,
		PrimaryData: filepath.Join(base, "primary"),
		PassFile:    filepath.Join(base, "pgpass"),
		SocketDir:   filepath.Join(base, "sock"),
		script:      filepath.Join(root, "scripts", "cluster.sh"),
	}
	register(e)
	fail := func(err error) (*Env, error) {
		e.Stop()
		return nil, err
	}
	if e.PrimaryPort, err = FreePort(); err != nil {
		return fail(err)
	}
	if _, err := e.run(context.Background(), "primary", base, strconv.Itoa(e.PrimaryPort)); err != nil {
		return fail(err)
	}
	if opts.Standby {
		if e.StandbyPort, err = FreePort(); err != nil {
			return fail(err)
		}
		if _, err := e.run(context.Background(), "standby", base, strconv.Itoa(e.PrimaryPort), strconv.Itoa(e.StandbyPort)); err != nil {
			return fail(err)
		}
		e.StandbyData = filepath.Join(base, "standby")
	}
	return e, nil
}

// New is Start for one test: the clusters are stopped at the test's end, and
// their logs are printed if it failed.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := Start(opts)
	if err != nil {
		t.Fatalf("starting clusters: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			e.DumpLogs(t)
		}
		e.Stop()
	})
	return e
}

// Stop stops every server of the environment and removes its directory. It
// is safe to call more than once.
func (e *Env) Stop() {
	e.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, _ = e.run(ctx, "destroy", e.Base)
		unregister(e)
	})
}

// DumpLogs writes the tail of each server log to the test log.
func (e *Env) DumpLogs(t testing.TB) {
	for _, name := range []string{"primary", "standby"} {
		if tail := e.LogTail(name, 40); tail != "" {
			t.Logf("--- %s.log (tail) ---\n%s", name, tail)
		}
	}
}

// LogTail returns the last n lines of a server's log ("primary" or "standby").
func (e *Env) LogTail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(e.Base, name+".log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Log returns a server's whole log.
func (e *Env) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.Base, name+".log"))
	return string(b)
}

// SQL runs sql on "primary" or "standby" as the postgres superuser through
// psql (-XAtq, ON_ERROR_STOP) and returns its standard output, trimmed. Notices
// and INFO messages (VACUUM VERBOSE) are in Stderr of the returned error's
// output; use SQLWithStderr to get them on success.
func (e *Env) SQL(ctx context.Context, name, sql string) (string, error) {
	out, _, err := e.SQLWithStderr(ctx, name, sql)
	return out, err
}

// SQLWithStderr is SQL that also returns what psql wrote to standard error.
func (e *Env) SQLWithStderr(ctx context.Context, name, sql string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.script, "psql", e.Base, name, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", stderr.String(), fmt.Errorf("psql on %s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), nil
}

// PrimarySQL runs sql on the primary.
func (e *Env) PrimarySQL(ctx context.Context, sql string) (string, error) {
	return e.SQL(ctx, "primary", sql)
}

// AddStandby makes another streaming standby of the primary, named name
// (its data directory is Base/name), and returns its port.
func (e *Env) AddStandby(ctx context.Context, name string) (int, error) {
	port, err := FreePort()
	if err != nil {
		return 0, err
	}
	if _, err := e.run(ctx, "standby", e.Base, strconv.Itoa(e.PrimaryPort), strconv.Itoa(port), name); err != nil {
		return 0, err
	}
	return port, nil
}

// StopServer stops "primary" or "standby" with pg_ctl mode fast or
// immediate.
func (e *Env) StopServer(ctx context.Context, name, mode string) error {
	cmd := e.pgctl(ctx, name, "stop", "-m", mode, "-w", "-t", "60")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop %s: %v: %s", name, err, out)
	}
	return nil
}

// StartServer starts "primary" or "standby" again.
func (e *Env) StartServer(ctx context.Context, name string) error {
	_, err := e.run(ctx, "start", e.Base, name)
	return err
}

// PostmasterPID is the postmaster's process id from postmaster.pid.
func (e *Env) PostmasterPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(e.Base, name, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

func (e *Env) pgctl(ctx context.Context, name string, args ...string) *exec.Cmd {
	return Command(ctx, "pg_ctl", append([]string{"-D", filepath.Join(e.Base, name)}, args...)...)
}

func (e *Env) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.script, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// register remembers a live environment; while any is live a handler stops
// them all when the test binary is interrupted.
func register(e *Env) {
	liveMu.Lock()
	defer liveMu.Unlock()
	live[e] = true
	if sigStop != nil {
		return
	}
	stop := make(chan struct{})
	sigStop = stop
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(ch)
		select {
		case <-stop:
			return
		case s := <-ch:
			liveMu.Lock()
			envs := make([]*Env, 0, len(live))
			for e := range live {
				envs = append(envs, e)
			}
			liveMu.Unlock()
			for _, e := range envs {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				_, _ = e.run(ctx, "destroy", e.Base)
				cancel()
			}
			fmt.Fprintf(os.Stderr, "testcluster: %v: stopped %d test cluster(s)\n", s, len(envs))
			os.Exit(1)
		}
	}()
}

// unregister forgets an environment and ends the signal handler with the last.
func unregister(e *Env) {
	liveMu.Lock()
	defer liveMu.Unlock()
	delete(live, e)
	if len(live) == 0 && sigStop != nil {
		close(sigStop)
		sigStop = nil
	}
}

// sweepStale stops clusters left behind by test processes that died.
func sweepStale() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), basePrefix+"*"))
	for _, base := range matches {
		b, err := os.ReadFile(filepath.Join(base, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		root, err := RepoRoot()
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_ = exec.CommandContext(ctx, filepath.Join(root, "scripts", "cluster.sh"), "destroy", base).Run()
		cancel()
	}
}
