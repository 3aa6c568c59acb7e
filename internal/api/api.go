// Package api is standbyd's local request API: HTTP over a Unix domain socket
// on the standby host, so that scripts (curl --unix-socket), `standbyd call`
// and Go programs (Client) send requests through the daemon's channel
// without a connection of their own to the primary. docs/api.md specifies
// it.
package api

import (
	"time"

	"github.com/standbyd/standbyd/internal/conn"
)

// Error kinds, the "kind" field of an error response.
const (
	KindBadRequest         = "bad_request"
	KindPayloadTooLarge    = "payload_too_large"
	KindChannelUnavailable = "channel_unavailable"
	KindOutcomeUnknown     = "outcome_unknown"
	KindPrimaryError       = "primary_error"
	KindShuttingDown       = "shutting_down"
	KindBusy               = "busy"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong.
type ErrorDetail struct {
	Kind     string `json:"kind"`
	Message  string `json:"message"`
	SQLState string `json:"sqlstate,omitempty"`
}

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	State            string     `json:"state"`
	StateSince       time.Time  `json:"state_since"`
	LastError        string     `json:"last_error,omitempty"`
	Primary          *Primary   `json:"primary,omitempty"`
	SessionStart     *time.Time `json:"session_start,omitempty"`
	LastReply        *time.Time `json:"last_reply,omitempty"`
	ChannelBackendID uint32     `json:"backend_pid,omitempty"`
	ReadySessions    int        `json:"ready_sessions"`
	Waiting          int        `json:"waiting_calls"`
	Sessions         []Session  `json:"sessions"`
}

// Session is one channel session of the daemon.
type Session struct {
	State        string     `json:"state"`
	StateSince   time.Time  `json:"state_since"`
	LastError    string     `json:"last_error,omitempty"`
	SessionStart *time.Time `json:"session_start,omitempty"`
	BackendPID   uint32     `json:"backend_pid,omitempty"`
}

// Primary describes the primary of the current session (from hello).
type Primary struct {
	SystemIdentifier string `json:"system_identifier"`
	ServerVersionNum uint32 `json:"server_version_num"`
	Timeline         uint32 `json:"timeline"`
	InRecovery       bool   `json:"in_recovery"`
	ProtocolVersion  uint16 `json:"protocol_version"`
	MaxFrameSize     uint32 `json:"max_frame_size"`
}

// OpsResponse is the body of GET /v1/ops.
type OpsResponse struct {
	Ops []Op `json:"ops"`
}

// Op is one operation the primary offers.
type Op struct {
	Code    uint16 `json:"code"`
	Name    string `json:"name"`
	Builtin bool   `json:"builtin"`
}

func statusResponse(st conn.Status) StatusResponse {
	r := StatusResponse{
		State:         st.State.String(),
		StateSince:    st.StateSince,
		LastError:     st.LastError,
		ReadySessions: st.Ready,
		Waiting:       st.Waiting,
		Sessions:      []Session{},
	}
	for _, ss := range st.Sessions {
		s := Session{State: ss.State.String(), StateSince: ss.StateSince, LastError: ss.LastError, BackendPID: ss.BackendPID}
		if !ss.SessionStart.IsZero() {
			start := ss.SessionStart
			s.SessionStart = &start
		}
		r.Sessions = append(r.Sessions, s)
	}
	if st.State == conn.StateReady {
		h := st.Hello
		r.Primary = &Primary{
			SystemIdentifier: formatSysID(h.SystemIdentifier),
			ServerVersionNum: h.ServerVersionNum,
			Timeline:         h.Timeline,
			InRecovery:       h.InRecovery,
			ProtocolVersion:  h.Version,
			MaxFrameSize:     h.MaxFrameSize,
		}
		start := st.SessionStart
		r.SessionStart = &start
		r.ChannelBackendID = st.BackendPID
	}
	if !st.LastReply.IsZero() {
		lr := st.LastReply
		r.LastReply = &lr
	}
	return r
}
