// Package api serves standbyd's local request API: HTTP over a Unix domain
// socket on the standby host, so that scripts (curl --unix-socket),
// `standbyd call` and Go programs (package client) send requests through the
// daemon's channel without a connection of their own to the primary.
// docs/api.md specifies it; the wire types are the client package's, so
// that the server and every client agree on them.
package api

import (
	"strconv"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
)

func statusResponse(st conn.Status) client.StatusResponse {
	r := client.StatusResponse{
		State:         st.State.String(),
		StateSince:    st.StateSince,
		LastError:     st.LastError,
		ReadySessions: st.Ready,
		Waiting:       st.Waiting,
		Sessions:      []client.Session{},
	}
	for _, ss := range st.Sessions {
		s := client.Session{State: ss.State.String(), StateSince: ss.StateSince, LastError: ss.LastError, BackendPID: ss.BackendPID}
		if !ss.SessionStart.IsZero() {
			start := ss.SessionStart
			s.SessionStart = &start
		}
		r.Sessions = append(r.Sessions, s)
	}
	if st.State == conn.StateReady {
		h := st.Hello
		r.Primary = &client.Primary{
			SystemIdentifier: strconv.FormatUint(h.SystemIdentifier, 10),
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
	if st.Local.Known {
		role := "primary"
		if st.Local.Standby {
			role = "standby"
		}
		r.Local = &client.Local{Role: role, Timeline: st.Local.Timeline}
	}
	if !st.LastReply.IsZero() {
		lr := st.LastReply
		r.LastReply = &lr
	}
	return r
}
