package client

import (
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// Error kinds, the "kind" field of an error response.
const (
	KindBadRequest         = fastproto.ErrorKindBadRequest
	KindPayloadTooLarge    = fastproto.ErrorKindPayloadTooLarge
	KindChannelUnavailable = fastproto.ErrorKindChannelUnavailable
	KindOutcomeUnknown     = fastproto.ErrorKindOutcomeUnknown
	KindPrimaryError       = fastproto.ErrorKindPrimaryError
	KindShuttingDown       = fastproto.ErrorKindShuttingDown
	KindBusy               = fastproto.ErrorKindBusy
	// KindForbidden: the daemon's api.allow list does not let this caller
	// (its uid and groups) call this op. Nothing was sent.
	KindForbidden = fastproto.ErrorKindForbidden
	// KindNotStandby: the node the daemon runs on is no longer a standby
	// (it was promoted): the daemon serves only standbys. Nothing was sent.
	KindNotStandby = fastproto.ErrorKindNotStandby
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
	// Detail and Hint are the primary's DETAIL and HINT of a
	// primary_error, when it gave them.
	Detail string `json:"detail,omitempty"`
	Hint   string `json:"hint,omitempty"`
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
	// Local is the node the daemon runs on, when its role is known.
	Local *Local `json:"local,omitempty"`
}

// Local describes the node the daemon runs on.
type Local struct {
	// Role is "standby" or "primary" (standbyd serves only standbys).
	Role     string `json:"role"`
	Timeline uint32 `json:"timeline,omitempty"`
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

// CallRequest is the JSON form of a call: at most one of the fields gives
// the payload (none: an empty payload).
type CallRequest struct {
	Text   *string  `json:"text,omitempty"`
	Base64 *string  `json:"base64,omitempty"`
	Hex    *string  `json:"hex,omitempty"`
	Int32  *[]int32 `json:"int32,omitempty"`
}

// CallResponse is the JSON form of a reply.
type CallResponse struct {
	Op     string  `json:"op"`
	Code   uint16  `json:"code"`
	Base64 string  `json:"base64"`
	Text   *string `json:"text,omitempty"`  // when the payload is valid UTF-8
	Int32  []int32 `json:"int32,omitempty"` // when it is a whole number of int32
}
