package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/callcli"
	"github.com/standbyd/standbyd/internal/testskip"
	"github.com/standbyd/standbyd/internal/testsock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDaemon speaks the local API's fast path (version 2) on a Unix
// socket: N adds 300 to each int32, echo returns the payload, and a few op
// names answer with the daemon's error kinds. It is stopped at the test's
// end.
func fakeDaemon(t *testing.T) string {
	t.Helper()
	answer := func(name string, payload []byte) ([]byte, *fastproto.ErrorReply) {
		fail := func(kind string) *fastproto.ErrorReply {
			return &fastproto.ErrorReply{Kind: kind, Message: kind + " from the fake daemon", SQLState: "P0001"}
		}
		switch name {
		case "N":
			if len(payload) != 12 {
				return nil, fail("bad_request")
			}
			out := make([]byte, 12)
			for i := 0; i < 12; i += 4 {
				binary.BigEndian.PutUint32(out[i:], binary.BigEndian.Uint32(payload[i:])+300)
			}
			return out, nil
		case "echo":
			return payload, nil
		case "refused":
			return nil, fail("forbidden")
		case "crowded":
			return nil, fail("busy")
		case "raises":
			return nil, fail("primary_error")
		case "lost":
			return nil, fail("outcome_unknown")
		case "explains":
			return nil, &fastproto.ErrorReply{Kind: "primary_error", Message: "out of stock", SQLState: "P0042",
				Detail: "item 7 has 0 left", Hint: "order fewer"}
		}
		return nil, fail("bad_request")
	}
	return testsock.Serve(t, func(c net.Conn) {
		v, _, err := fastproto.AcceptHandshake(c, fastproto.ServerPreamble{Version: fastproto.Version2, MaxFrame: 1 << 20, MaxInFlight: 8})
		if err != nil {
			return
		}
		for {
			h, body, err := fastproto.ReadFrame(c, 1<<20)
			if err != nil {
				return
			}
			req, err := fastproto.ParseRequestBody(h, body)
			if err != nil {
				return
			}
			out, e := answer(req.Name, req.Payload)
			frame := fastproto.AppendReply(nil, h.Op, h.ID, out)
			if e != nil {
				frame = fastproto.AppendErrorV(nil, v, h.Op, h.ID, *e)
			}
			if _, err := c.Write(frame); err != nil {
				return
			}
		}
	})
}

type callCase struct {
	name  string
	args  []string
	stdin string
	code  int
	out   string // "" with code != 0: nothing on stdout
}

func callCases(sock string) []callCase {
	s := "--socket=" + sock
	return []callCase{
		{"N", []string{s, "N", "100", "200", "-300"}, "", 0, "400 500 0\n"},
		{"negative args after OP", []string{s, "--out", "hex", "N", "-1", "-2", "-3"}, "", 0, "0000012b0000012a00000129\n"},
		{"text echo", []string{s, "echo", "hello", "world"}, "", 0, "hello world\n"},
		{"stdin raw", []string{s, "--in", "stdin", "--out", "raw", "echo"}, "\x00\x01binary", 0, "\x00\x01binary"},
		{"forbidden", []string{s, "refused"}, "", callcli.ExitDenied, ""},
		{"busy", []string{s, "crowded"}, "", callcli.ExitUnavailable, ""},
		{"primary error", []string{s, "raises"}, "", callcli.ExitPrimaryErr, ""},
		{"outcome unknown", []string{s, "lost"}, "", callcli.ExitUnknown, ""},
		{"bad arguments", []string{s, "N", "x"}, "", callcli.ExitUsage, ""},
		{"no OP", []string{s}, "", callcli.ExitUsage, ""},
		{"no daemon", []string{"--socket=/nonexistent/standbyd.sock", "ping"}, "", callcli.ExitUnavailable, ""},
	}
}

// claim: api.call-binary
func TestCallBinaryOutputAndExitCodes(t *testing.T) {
	sock := fakeDaemon(t)
	for _, c := range callCases(sock) {
		var out, errb bytes.Buffer
		code := run(c.args, strings.NewReader(c.stdin), &out, &errb)
		if code != c.code || out.String() != c.out {
			t.Errorf("%s: exit %d, stdout %q (stderr %q); want exit %d, stdout %q", c.name, code, out.String(), errb.String(), c.code, c.out)
		}
		if code != 0 && !strings.HasPrefix(errb.String(), "standbyd-call: ") {
			t.Errorf("%s: exit %d without a message: stderr %q", c.name, code, errb.String())
		}
	}
}

// The same command lines give the same stdout and exit code through
// `standbyd call`: both binaries share internal/callcli, and this keeps
// them from drifting apart.
//
// claim: api.call-binary
func TestSameAsStandbydCall(t *testing.T) {
	if testing.Short() {
		testskip.Skip(t, "builds standbyd; run by make test, not make test-unit")
	}
	bin := os.Getenv("STANDBYD_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "standbyd")
		if out, err := exec.Command("go", "build", "-o", bin, "../standbyd").CombinedOutput(); err != nil {
			t.Fatalf("building standbyd: %v\n%s", err, out)
		}
	}
	sock := fakeDaemon(t)
	for _, c := range callCases(sock) {
		cmd := exec.Command(bin, append([]string{"call"}, c.args...)...)
		cmd.Stdin = strings.NewReader(c.stdin)
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var mine bytes.Buffer
		myCode := run(c.args, strings.NewReader(c.stdin), &mine, io.Discard)
		if code != myCode || string(out) != mine.String() {
			t.Errorf("%s: standbyd call: exit %d, stdout %q; standbyd-call: exit %d, stdout %q", c.name, code, out, myCode, mine.String())
		}
	}
	testDirect(t, bin)
}

// testDirect: with --direct, standbyd-call runs the standbyd beside it.
//
// claim: api.call-binary-direct
func testDirect(t *testing.T, standbyd string) {
	dir := t.TempDir()
	if err := os.Symlink(standbyd, filepath.Join(dir, "standbyd")); err != nil {
		t.Fatal(err)
	}
	call := filepath.Join(dir, "standbyd-call")
	if out, err := exec.Command("go", "build", "-o", call, ".").CombinedOutput(); err != nil {
		t.Fatalf("building standbyd-call: %v\n%s", err, out)
	}
	// A config file that does not exist: standbyd's loader refuses it.
	cmd := exec.Command(call, "--direct", "--config", filepath.Join(dir, "missing.yaml"), "ping")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != callcli.ExitFailure || !strings.HasPrefix(stderr.String(), "standbyd: config file") {
		t.Errorf("--direct: %v, stderr %q; want exit %d from standbyd's config loader", err, stderr.String(), callcli.ExitFailure)
	}
}

// The socket: --socket, else STANDBYD_API_SOCKET, else api.socket of the
// config file, else the default.
//
// claim: api.call-binary-socket
func TestCallBinarySocket(t *testing.T) {
	// The defaults the doc names, which the code paths below use.
	if callcli.DefaultSocket != "/run/standbyd/standbyd.sock" || callcli.DefaultConfigPath != "/etc/standbyd/standbyd.yaml" {
		t.Fatalf("default socket %q, default config file %q", callcli.DefaultSocket, callcli.DefaultConfigPath)
	}
	sock := fakeDaemon(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("standby:\n  data_directory: /nonexistent\napi:\n  socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong.yaml")
	if err := os.WriteFile(wrong, []byte("api:\n  socket: /nonexistent/other.sock\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(args ...string) int {
		return run(append(args, "N", "1", "2", "3"), strings.NewReader(""), io.Discard, io.Discard)
	}
	if code := call("--config", good); code != 0 {
		t.Errorf("socket from the config file: exit %d", code)
	}
	if code := call("--config", wrong); code != callcli.ExitUnavailable {
		t.Errorf("config naming a missing socket: exit %d, want %d", code, callcli.ExitUnavailable)
	}
	if code := call("--config", wrong, "--socket", sock); code != 0 {
		t.Errorf("--socket over the config file: exit %d", code)
	}
	t.Setenv("STANDBYD_API_SOCKET", sock)
	if code := call("--config", wrong); code != 0 {
		t.Errorf("STANDBYD_API_SOCKET over the config file: exit %d", code)
	}
	t.Setenv("STANDBYD_API_SOCKET", "")
	if code := call("--config", filepath.Join(dir, "missing.yaml")); code != callcli.ExitUnavailable {
		t.Errorf("missing config file (default socket, no daemon there): exit %d", code)
	}
}

// The binary links none of the daemon's packages: their initialisation is
// what made `standbyd call` slow to start.
//
// claim: api.call-binary-links-little
func TestCallBinaryLinksLittle(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	heavy := []string{
		"github.com/spf13/cobra", "github.com/spf13/viper", "github.com/prometheus/",
		"google.golang.org/protobuf", "go.uber.org/zap", "github.com/jackc/pgx",
		"github.com/standbyd/standbyd/internal/config", "github.com/standbyd/standbyd/internal/conn",
		"github.com/standbyd/standbyd/internal/metrics", "github.com/standbyd/standbyd/internal/api",
		// The Go client's HTTP fallback: net/http and TLS cost a process
		// about a millisecond more to start.
		"github.com/standbyd/standbyd/client", "net/http", "crypto/tls",
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/standbyd/standbyd/internal/api/fastproto" {
			continue // the local framing: the standard library only (checked below)
		}
		for _, h := range heavy {
			if strings.HasPrefix(pkg, h) {
				t.Errorf("standbyd-call links %s", pkg)
			}
		}
	}
	// The framing the client speaks stays free of the daemon's packages.
	imports, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "github.com/standbyd/standbyd/internal/api/fastproto").Output()
	if err != nil {
		t.Fatalf("go list fastproto: %v", err)
	}
	for _, pkg := range strings.Fields(string(imports)) {
		if strings.Contains(pkg, ".") {
			t.Errorf("internal/api/fastproto imports %s: only the standard library is allowed", pkg)
		}
	}
}

// A primary's error is printed with its DETAIL and HINT on lines of their
// own, as psql prints them; without them, the message alone.
// claim: api.call-detail-hint
func TestCallPrintsDetailAndHint(t *testing.T) {
	sock := fakeDaemon(t)
	var out, errb bytes.Buffer
	code := run([]string{"--socket=" + sock, "explains"}, strings.NewReader(""), &out, &errb)
	want := "standbyd-call: primary_error: out of stock (SQLSTATE P0042)\nDETAIL:  item 7 has 0 left\nHINT:  order fewer\n"
	if code != callcli.ExitPrimaryErr || errb.String() != want || out.Len() != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q; want exit %d, stderr %q", code, errb.String(), out.String(), callcli.ExitPrimaryErr, want)
	}
	errb.Reset()
	if code := run([]string{"--socket=" + sock, "raises"}, strings.NewReader(""), &out, &errb); code != callcli.ExitPrimaryErr ||
		strings.Contains(errb.String(), "DETAIL") || strings.Contains(errb.String(), "HINT") || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("without detail: exit %d, stderr %q", code, errb.String())
	}
}

// make build links standbyd-call statically: no dynamic loader, no shared
// libraries (cgo's start-up and the loader cost a process that makes one
// call about 1.5 ms on the machine the benchmark runs on).
//
// claim: api.call-binary-static
func TestCallBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		testskip.Skip(t, "builds with make; run by make test, not make test-unit")
	}
	bin := filepath.Join(t.TempDir(), "standbyd-call")
	if out, err := exec.Command("make", "-s", "-C", "../..", "build-call", "CALL_BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build-call: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): it is linked dynamically", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v)", bin, libs, err)
	}
}
