package main

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
)

// longestSilence is the longest a live channel loop goes without a beat:
// one step, a connection attempt (connect_timeout), a request or ping
// (reply_timeout), a polite close (close_timeout), an idle wait for the next
// heartbeat, or a tick of a backoff wait (the loops beat during backoff, so
// backoff_max does not count).
func longestSilence(c config.ChannelConfig) time.Duration {
	return max(c.ConnectTimeout, c.ReplyTimeout, c.CloseTimeout, c.HeartbeatInterval, time.Second)
}

// watchdogProblem says why a WatchdogSec of interval would get a healthy
// daemon restarted, or "" when it would not.
func watchdogProblem(interval time.Duration, c config.ChannelConfig) string {
	need := longestSilence(c)
	if interval <= 0 || interval > need+need/2 {
		return ""
	}
	return fmt.Sprintf("WatchdogSec=%s is not above 1.5 times the longest step of a channel loop (%s, the largest of "+
		"connect_timeout, reply_timeout, close_timeout, heartbeat_interval): systemd would restart a healthy daemon; "+
		"set WatchdogSec to %s or more", interval, need, (2 * need).Round(time.Second))
}

// notifySystemd keeps systemd informed until ctx ends: a STATUS line when
// the channel's state changes, and, when the unit sets WatchdogSec, a
// WATCHDOG=1 every half period only while every session loop beats (in
// backoff and connection attempts too), so that a hung loop gets the daemon
// restarted. Outside systemd it returns at once.
func notifySystemd(ctx context.Context, sup *conn.Supervisor, ch config.ChannelConfig, log *zap.Logger) {
	if ok, _ := daemon.SdNotify(false, "STATUS=starting"); !ok {
		return // not under systemd
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog", zap.Error(err))
	}
	if p := watchdogProblem(interval, ch); p != "" {
		log.Error("systemd watchdog", zap.String("problem", p))
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
		// Allow the whole watchdog period before calling a loop stuck.
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
