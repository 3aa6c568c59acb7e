package e2e

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// With the default heartbeat (2s) and reply timeout (5s), a primary that
// goes silent (a blackholed path: nothing closes, nothing answers) is
// noticed by the reply timeout within 7 seconds.
// claim: liveness.silent-primary-within-7s
// claim: liveness.blackhole-reply-timeout
func TestSilentPrimaryNoticedWithin7sWithDefaults(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", e.PrimaryPort))
	d := startDaemonWith(t, daemonConfig{timing: "defaults", channel: conninfoVia(p.port(), passfileFor(t, e))})
	d.waitReady(30 * time.Second)
	before, _ := d.metric(`standbyd_channel_disconnects_total{reason="reply_timeout"}`)
	p.setBlackhole(true)
	defer p.setBlackhole(false)
	took, ok := d.waitState(false, 30*time.Second)
	if !ok {
		t.Fatal("a silent primary was not noticed within 30s")
	}
	t.Logf("silent primary noticed after %s", took.Round(time.Millisecond))
	if after, _ := d.metric(`standbyd_channel_disconnects_total{reason="reply_timeout"}`); after != before+1 {
		t.Fatalf("the session did not end by the reply timeout (reply_timeout disconnects %v -> %v)", before, after)
	}
	// Logged once, as "channel lost" with the same reason.
	// claim: liveness.channel-lost-logged-once
	lost := regexp.MustCompile(`"msg":"channel lost".*"reason":"([a-z_]+)"`).FindAllStringSubmatch(d.log(), -1)
	if len(lost) != 1 || lost[0][1] != "reply_timeout" {
		t.Fatalf("\"channel lost\" lines: %v, want one with reason reply_timeout", lost)
	}
	// At most one heartbeat interval (2s) until the ping, then the reply
	// timeout (5s); the extra second is for polling /readyz on a busy machine.
	if took < 5*time.Second || took > 8*time.Second {
		t.Fatalf("noticed after %s, want between the reply timeout (5s) and 7s, plus 1s for polling", took)
	}
}
