// Package api serves standbyd's local request API: HTTP over a Unix domain
// socket on the standby host, so that scripts (curl --unix-socket),
// `standbyd call` and Go programs (package client) send requests through the
// daemon's channel without a connection of their own to the primary.
// docs/api.md specifies it.
package api

import (
	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
)

// The wire types are the client package's, so that the server and every
// client agree on them.
type (
	ErrorBody      = client.ErrorBody
	ErrorDetail    = client.ErrorDetail
	StatusResponse = client.StatusResponse
	Primary        = client.Primary
	Session        = client.Session
	OpsResponse    = client.OpsResponse
	Op             = client.Op
	CallRequest    = client.CallRequest
	CallResponse   = client.CallResponse
)

// Error kinds (see the client package).
const (
	KindBadRequest         = client.KindBadRequest
	KindPayloadTooLarge    = client.KindPayloadTooLarge
	KindChannelUnavailable = client.KindChannelUnavailable
	KindOutcomeUnknown     = client.KindOutcomeUnknown
	KindPrimaryError       = client.KindPrimaryError
	KindShuttingDown       = client.KindShuttingDown
	KindBusy               = client.KindBusy
)

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
