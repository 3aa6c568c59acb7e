package main

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/conn"
)

// notifySystemd keeps systemd informed until ctx ends: a STATUS line when
// the channel's state changes, and, when the unit sets WatchdogSec, a
// WATCHDOG=1 every half period only while the supervisor's session loops go
// round, so that a hung loop gets the daemon restarted. Outside systemd it
// returns at once.
func notifySystemd(ctx context.Context, sup *conn.Supervisor, log *zap.Logger) {
	if ok, _ := daemon.SdNotify(false, "STATUS=starting"); !ok {
		return // not under systemd
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog", zap.Error(err))
	}
	tick := 2 * time.Second
	if interval > 0 && interval/2 < tick {
		tick = interval / 2
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	last := ""
	for {
		st := sup.Status()
		line := fmt.Sprintf("STATUS=channel %s, %d of %d sessions ready", st.State, st.Ready, len(st.Sessions))
		if st.State != conn.StateReady && st.LastError != "" {
			line += ": " + st.LastError
		}
		if line != last {
			_, _ = daemon.SdNotify(false, line)
			last = line
		}
		// The loops wake at least every reply timeout or backoff step; allow
		// the whole watchdog period before calling them stuck.
		if interval > 0 && sup.Alive(interval) {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			_, _ = daemon.SdNotify(false, "STATUS=stopping")
			return
		case <-t.C:
		}
	}
}
