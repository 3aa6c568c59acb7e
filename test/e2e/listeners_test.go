package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Nothing listens on TCP for requests: the daemon's only TCP listener is
// the metrics one, and it serves /metrics, /healthz and /readyz, not calls.
// claim: api.no-tcp-requests
func TestOnlyTheMetricsListenerIsOnTCP(t *testing.T) {
	needEnv(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	out, err := exec.Command("ss", "-Hltnp").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	owner := "pid=" + strconv.Itoa(d.cmd.Process.Pid) + ","
	var mine []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, owner) {
			mine = append(mine, strings.Fields(l)[3])
		}
	}
	if len(mine) != 1 || mine[0] != d.metrics {
		t.Fatalf("the daemon listens on TCP at %v, want only the metrics address %s", mine, d.metrics)
	}
	resp, err := http.Post("http://"+d.metrics+"/v1/call/N", "application/octet-stream", bytes.NewReader(protocol.AppendN(nil, [3]int32{1, 2, 3})))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /v1/call/N on the metrics listener: %d, want 404", resp.StatusCode)
	}
}
