package conn

import (
	"fmt"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Status is a snapshot of the supervisor for `standbyd status` and the API.
// With several sessions, the session fields describe the first ready one
// (or the first one, when none is ready).
type Status struct {
	State        State
	StateSince   time.Time
	LastError    string
	Hello        protocol.HelloReply
	SessionStart time.Time
	LastReply    time.Time
	BackendPID   uint32
	// Sessions has one entry per session; Ready counts the ready ones.
	Sessions []SessionStatus
	Ready    int
	// Waiting is the number of calls waiting for a session; InFlight the
	// requests sent and not yet answered.
	Waiting  int
	InFlight int
	// Local is the node standbyd runs on (role.go); NotStandby is set while
	// standbyd refuses to serve because it is not a standby.
	Local      LocalNode
	NotStandby bool
}

// SessionStatus describes one session of the supervisor.
type SessionStatus struct {
	State        State
	StateSince   time.Time
	LastError    string
	SessionStart time.Time
	BackendPID   uint32
}

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{State: State(s.state.Load()), StateSince: s.aggSince, LastReply: s.lastReply,
		Waiting: int(s.waiting.Load()), InFlight: int(s.inFlight.Load())}
	pick := s.slots[0]
	for _, sl := range s.slots {
		if sl.state == StateReady {
			if st.Ready == 0 {
				pick = sl
			}
			st.Ready++
		}
		st.Sessions = append(st.Sessions, SessionStatus{State: sl.state, StateSince: sl.since, LastError: sl.err,
			SessionStart: sl.start, BackendPID: sl.pid})
	}
	st.LastError = pick.err
	st.Hello = pick.hello
	st.SessionStart = pick.start
	st.BackendPID = pick.pid
	st.Local, st.NotStandby = s.local, s.refusing != nil
	return st
}

// aggregate is the supervisor's state from its sessions': ready if one is,
// else the state of the first session. Called with s.mu held.
func (s *Supervisor) aggregate() State {
	for _, sl := range s.slots {
		if sl.state == StateReady {
			return StateReady
		}
	}
	return s.slots[0].state
}

func (s *Supervisor) unavailable(cause error) error {
	st := s.Status()
	if st.State == StateReady {
		return fmt.Errorf("%w: channel busy until the deadline: %w", ErrUnavailable, cause)
	}
	if st.LastError != "" {
		return fmt.Errorf("%w (%s: %s): %w", ErrUnavailable, st.State, st.LastError, cause)
	}
	return fmt.Errorf("%w (%s): %w", ErrUnavailable, st.State, cause)
}
