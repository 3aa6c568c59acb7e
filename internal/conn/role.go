package conn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// The failover refusals: standbyd serves only a standby, and only towards
// an upstream that is not behind it. A node that was promoted must not
// forward requests to its old primary (split-brain writes), and a standby
// must not serve an ex-primary left on an older timeline.

// LocalNode is what the supervisor knows of the node it runs on
// (internal/localnode reads it).
type LocalNode struct {
	// Known: the role was read. An unknown role never refuses.
	Known bool
	// Standby: the node is a standby (in recovery, or set to start as one).
	Standby bool
	// Timeline is the node's timeline, 0 when unknown.
	Timeline uint32
}

// NotStandbyError: the local node is not a standby (it was promoted, or
// standbyd was started on a primary). Calls fail with it at once and no
// session is kept; serving resumes when the node is a standby again.
type NotStandbyError struct {
	Timeline uint32
	// Promoted: the node was seen as a standby before.
	Promoted bool
}

func (e *NotStandbyError) Error() string {
	what := "is not a standby"
	if e.Promoted {
		what = "was promoted"
	}
	if e.Timeline > 0 {
		return fmt.Sprintf("this node %s (timeline %d): standbyd serves only standbys", what, e.Timeline)
	}
	return fmt.Sprintf("this node %s: standbyd serves only standbys", what)
}

// ErrNotStandby matches every *NotStandbyError with errors.Is.
var ErrNotStandby = errors.New("this node is not a standby")

// Is makes errors.Is(err, ErrNotStandby) true.
func (e *NotStandbyError) Is(target error) bool { return target == ErrNotStandby }

// StaleUpstreamError: the upstream is on an older timeline than the
// standby: an ex-primary left behind by a failover (or a standby still
// replaying it). A configuration error, like a wrong cluster.
type StaleUpstreamError struct {
	Upstream, Local uint32
	// InRecovery: the upstream is itself a standby (cascading); its
	// timeline is the one it replays.
	InRecovery bool
}

func (e *StaleUpstreamError) Error() string {
	what := "the upstream is on timeline %d"
	if e.InRecovery {
		what = "the upstream (a standby) replays timeline %d"
	}
	return fmt.Sprintf(what+", older than this standby's timeline %d: a stale ex-primary left behind by a failover (primary_conninfo should name the new primary)",
		e.Upstream, e.Local)
}

// SetLocal records a reading of the local node. When the node stops being
// a standby, every session closes and calls fail at once; when it is a
// standby again, the sessions connect at once (with the primary_conninfo
// the node has then).
func (s *Supervisor) SetLocal(n LocalNode) {
	s.mu.Lock()
	prev := s.local
	s.local = n
	was := s.refusing != nil
	var now *NotStandbyError
	if n.Known && !n.Standby {
		now = &NotStandbyError{Timeline: n.Timeline, Promoted: s.sawStandby}
	}
	if n.Known && n.Standby {
		s.sawStandby = true
	}
	s.refusing = now
	switch {
	case now != nil && !was:
		close(s.refused)
	case now == nil && was:
		s.refused = make(chan struct{})
	}
	if prev != n {
		close(s.localChanged)
		s.localChanged = make(chan struct{})
	}
	s.mu.Unlock()
	switch {
	case now != nil && !was:
		s.log.Warn("refusing to serve", zap.Error(now))
	case now == nil && was:
		s.log.Info("this node is a standby again: serving", zap.Uint32("timeline", n.Timeline))
	}
}

// refusal is the reason to refuse calls, nil while the node may be served.
func (s *Supervisor) refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusing == nil {
		return nil
	}
	return s.refusing
}

// refusedSignal is closed while the node is not a standby.
func (s *Supervisor) refusedSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// lastRefusal is the refusal a call waiting on refusedSignal reports: the
// node may be a standby again by the time the caller looks.
func (s *Supervisor) lastRefusal() error {
	if err := s.refusal(); err != nil {
		return err
	}
	return &NotStandbyError{}
}

// waitWhileRefusing keeps a slot from connecting while the node is not a
// standby. It returns refused=false at once when the node may be served;
// otherwise it waits for the next reading of the local node (or ctx) and
// returns alive=false when ctx ended.
func (s *Supervisor) waitWhileRefusing(ctx context.Context, sl *slot) (refused, alive bool) {
	s.mu.Lock()
	err, changed := s.refusing, s.localChanged
	s.mu.Unlock()
	if err == nil {
		return false, true
	}
	s.setState(sl, StateBackingOff, err)
	tick := time.NewTicker(maxBeatGap)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, false
		case <-changed:
			return true, true
		case <-tick.C:
			sl.beat()
		}
	}
}

// checkUpstream refuses an upstream on an older timeline than the local
// node's. A cascading upstream reports the timeline it replays.
func (s *Supervisor) checkUpstream(timeline uint32, inRecovery bool) error {
	s.mu.Lock()
	local := s.local
	s.mu.Unlock()
	return local.CheckUpstream(timeline, inRecovery)
}

// CheckUpstream returns a *StaleUpstreamError when an upstream on timeline
// (from hello or ping; 0 in raw mode: not checked) is older than n's.
func (n LocalNode) CheckUpstream(timeline uint32, inRecovery bool) error {
	if timeline == 0 || n.Timeline == 0 || timeline >= n.Timeline {
		return nil
	}
	return &StaleUpstreamError{Upstream: timeline, Local: n.Timeline, InRecovery: inRecovery}
}

// admit checks a new session's upstream: hello's timeline (zero in raw
// mode: not checked). A refused session is closed. A primary behind the
// standby stays behind: a configuration error, retried slowly. A cascading
// upstream reports the timeline it has replayed, which can trail the one
// it has received (and passed on to this standby) for a moment after a
// timeline switch: retried with the ordinary backoff.
func (s *Supervisor) admit(sess *Session) error {
	h := sess.Hello()
	err := s.checkUpstream(h.Timeline, h.InRecovery)
	if err == nil {
		return nil
	}
	s.closeRefused(sess)
	if h.InRecovery {
		return err
	}
	return &ConfigError{Err: err}
}

// checkPing checks the upstream at each heartbeat: a refused session is
// closed and the error ends it. The status follows the upstream's timeline
// and role from the pings (a cascading upstream may be promoted while the
// session lasts).
func (s *Supervisor) checkPing(sl *slot, sess *Session, p protocol.PingReply) error {
	err := s.notePing(sl, p)
	if err == nil {
		return nil
	}
	s.closeRefused(sess)
	return err
}

// notePing records what a ping says of the upstream and returns the
// refusal it calls for, without touching the session (a pipelined
// session's reader calls it: the session is closed by its writer).
func (s *Supervisor) notePing(sl *slot, p protocol.PingReply) error {
	s.mu.Lock()
	was := sl.hello
	if p.Timeline != 0 {
		sl.hello.Timeline, sl.hello.InRecovery = p.Timeline, p.InRecovery
	}
	s.mu.Unlock()
	if p.Timeline != 0 && (was.InRecovery != p.InRecovery || was.Timeline != p.Timeline) {
		sl.logger.Info("the upstream changed", zap.Uint32("timeline", p.Timeline), zap.Bool("in_recovery", p.InRecovery),
			zap.Uint32("was_timeline", was.Timeline), zap.Bool("was_in_recovery", was.InRecovery))
	}
	return s.checkUpstream(p.Timeline, p.InRecovery)
}

// endRefused closes a serving session because the node is not a standby
// and returns why.
func (s *Supervisor) endRefused(sess *Session) error {
	err := s.lastRefusal()
	s.closeRefused(sess)
	return err
}

func (s *Supervisor) closeRefused(sess *Session) {
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	_ = sess.Close(cctx)
}

// isRefusal tells a failover refusal, for ReasonOf.
func isRefusal(err error) bool {
	var ns *NotStandbyError
	var su *StaleUpstreamError
	return errors.As(err, &ns) || errors.As(err, &su)
}
