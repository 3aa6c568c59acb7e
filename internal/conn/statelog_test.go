package conn

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/conn/conntest"
)

// Every state change is logged as "channel state" with from, to and the
// error that caused it.
// claim: liveness.state-changes-logged
func TestEveryStateChangeIsLogged(t *testing.T) {
	p := conntest.Start(t)
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := fastConfig(p)
	cfg.Logger = zap.New(core)
	cfg.Dial, _ = dialFailingFirst(p, 1)
	sup := run(t, cfg)
	waitReady(t, sup)
	var got []string
	for _, e := range logs.FilterMessage("channel state").All() {
		m := e.ContextMap()
		step := m["from"].(string) + ">" + m["to"].(string)
		if msg, ok := m["error"].(string); ok {
			step += " (" + msg + ")"
		}
		got = append(got, step)
	}
	want := []string{
		"connecting>backing_off (dial tcp 127.0.0.1:5432: connect: connection refused)",
		"backing_off>connecting",
		"connecting>entering",
		"entering>ready",
	}
	if s := strings.Join(got, "; "); !strings.HasSuffix(s, strings.Join(want, "; ")) {
		t.Fatalf("state changes logged:\n%s\nwant them to end with:\n%s", s, strings.Join(want, "; "))
	}
}
