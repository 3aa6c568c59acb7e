package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testskip"
)

const (
	childSocketEnv = "STANDBYD_API_TEST_SOCKET"
	childOpEnv     = "STANDBYD_API_TEST_OP"
)

// childCall is the test binary run as another user: one call, its outcome
// on stdout.
func childCall(sock, op string) int {
	c := client.New(sock)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Call(ctx, op, []byte("payload-not-for-logs"))
	var ae *client.Error
	switch {
	case err == nil:
		fmt.Print("ok")
	case errors.As(err, &ae):
		fmt.Print(ae.Kind + ": " + ae.Message)
	default:
		fmt.Print("error: " + err.Error())
	}
	return 0
}

// callAs runs one call through sock as uid:gid in a child process.
func callAs(t *testing.T, bin, sock, op string, uid, gid uint32) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childSocketEnv+"="+sock, childOpEnv+"="+op)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child as %d: %v %s", uid, err, out)
	}
	return string(out), cmd.Process.Pid
}

// The daemon knows each caller by SO_PEERCRED, and api.allow lets only the
// named users call a restricted op; a refusal reads no payload, is counted,
// and is logged with the caller, never with the payload.
// claim: api.caller-by-peercred
// claim: api.allow
// claim: api.forbidden
func TestAllowWithRealUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root, to run callers as other users")
	}
	// The test binary and the socket must be reachable by nobody.
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	ch := stubWithOps(func(uint16, []byte) ([]byte, error) { calls.Add(1); return []byte("done"), nil },
		protocol.OpInfo{Op: protocol.OpPage, Name: "page", Builtin: true}, protocol.OpInfo{Op: 0x100, Name: "put"})
	var denied atomic.Int64
	core, logs := observer.New(zap.DebugLevel)
	sock := serveCfg(t, ServerConfig{
		Socket: filepath.Join(dir, "s"), SocketMode: 0o666,
		Allow:  &Policy{Rules: []AllowRule{{Ops: []string{"page", "put"}, UIDs: []uint32{0}}}},
		Denied: func(op uint16) { denied.Add(1) },
		Logger: zap.New(core),
	}, ch)

	out, pid := callAs(t, bin, sock, "put", 65534, 65534)
	if !strings.HasPrefix(out, client.KindForbidden+": ") || !strings.Contains(out, "uid 65534") {
		t.Fatalf("nobody calling put: %q", out)
	}
	if out, _ := callAs(t, bin, sock, "0x0100", 65534, 65534); !strings.HasPrefix(out, client.KindForbidden) {
		t.Fatalf("nobody calling put by number: %q", out)
	}
	if calls.Load() != 0 || denied.Load() != 2 {
		t.Fatalf("refused calls reached the channel (%d) or were not counted (%d)", calls.Load(), denied.Load())
	}
	if out, _ := callAs(t, bin, sock, "N", 65534, 65534); out != "ok" {
		t.Fatalf("nobody calling an unrestricted op: %q", out)
	}
	if out, _ := callAs(t, bin, sock, "put", 0, 0); out != "ok" {
		t.Fatalf("root calling put: %q", out)
	}
	refused := logs.FilterMessage("call refused by api.allow").All()
	if len(refused) != 2 {
		t.Fatalf("refusals logged: %d", len(refused))
	}
	f := refused[0].ContextMap()
	if f["uid"] != uint32(65534) || f["gid"] != uint32(65534) || f["pid"] != int32(pid) || f["op"] != "0x0100" {
		t.Fatalf("refusal log fields: %v (child pid %d)", f, pid)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "payload-not-for-logs") {
			t.Fatalf("payload logged: %v", e)
		}
	}
	if n := logs.FilterMessage("call").FilterField(zap.Uint32("uid", 65534)).Len(); n != 3 {
		t.Fatalf("debug lines naming the caller: %d, want 3", n)
	}
}

// A slow call is logged with its caller while it runs.
// claim: api.caller-by-peercred
func TestSlowCallNamesTheCaller(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	ch := &stubChannel{reply: func(uint16, []byte) ([]byte, error) {
		for logs.FilterMessage("call slow").Len() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		return nil, nil
	}}
	sock := serveCfg(t, ServerConfig{SlowThreshold: 10 * time.Millisecond, Logger: zap.New(core)}, ch)
	c := client.New(sock)
	defer c.Close()
	if _, err := c.Call(context.Background(), "N", nil); err != nil {
		t.Fatal(err)
	}
	f := logs.FilterMessage("call slow").All()[0].ContextMap()
	if f["uid"] != uint32(os.Getuid()) || f["pid"] != int32(os.Getpid()) || f["op"] != "N" {
		t.Fatalf("slow call fields: %v", f)
	}
}
