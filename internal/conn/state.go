package conn

// State is where the supervisor is in its life cycle.
type State int32

const (
	// StateConnecting: dialing the primary and authenticating.
	StateConnecting State = iota
	// StateReady: a session is up and serving calls.
	StateReady
	// StateBackingOff: the last attempt or session failed; waiting before the next.
	StateBackingOff
	// StateStopping: shutting down, closing the session.
	StateStopping
	// StateStopped: Run has returned.
	StateStopped
	// StateEntering: connected; CALL standbyd.serve() and hello under way.
	StateEntering
)

// States lists every state, for metrics that export one series per state.
var States = []State{StateConnecting, StateEntering, StateReady, StateBackingOff, StateStopping, StateStopped}

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateEntering:
		return "entering"
	case StateReady:
		return "ready"
	case StateBackingOff:
		return "backing_off"
	case StateStopping:
		return "stopping"
	case StateStopped:
		return "stopped"
	}
	return "unknown"
}
