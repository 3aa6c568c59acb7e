package conn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrorClass says whether retrying soon can help.
type ErrorClass string

const (
	// ClassTransient: the primary is down, restarting, unreachable, busy; the
	// next attempt may work.
	ClassTransient ErrorClass = "transient"
	// ClassConfiguration: authentication, pg_hba, a missing database or
	// extension, a missing privilege, a wrong cluster, a TLS verification
	// failure. Retrying soon cannot help; someone must change something.
	ClassConfiguration ErrorClass = "configuration"
)

// ErrorClasses lists the classes, for metrics.
var ErrorClasses = []ErrorClass{ClassTransient, ClassConfiguration}

// configurationSQLStates are server errors that a retry will not fix.
var configurationSQLStates = map[string]bool{
	pgerrcode.InvalidAuthorizationSpecification:             true, // no pg_hba entry
	pgerrcode.InvalidPassword:                               true,
	pgerrcode.InvalidCatalogName:                            true, // no such database
	pgerrcode.InsufficientPrivilege:                         true, // EXECUTE on standbyd.serve()
	pgerrcode.InvalidSchemaName:                             true, // extension not created
	pgerrcode.UndefinedFunction:                             true, // extension not created
	pgerrcode.FeatureNotSupported:                           true, // refused calling context
	pgerrcode.ActiveSQLTransaction:                          true,
	pgerrcode.InvalidTransactionTermination:                 true,
	pgerrcode.UndefinedObject:                               true, // a startup parameter the server refuses
	pgerrcode.CantChangeRuntimeParam:                        true,
	pgerrcode.SQLServerRejectedEstablishmentOfSQLConnection: true,
}

// ConfigError marks an error as a configuration problem (identity
// mismatch, a refused connection keyword).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Classify tells a transient failure from a configuration problem.
func Classify(err error) ErrorClass {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ClassConfiguration
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if configurationSQLStates[pe.Code] {
			return ClassConfiguration
		}
		return ClassTransient
	}
	var pr *ProtocolError
	if errors.As(err, &pr) {
		return ClassConfiguration
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &cve) {
		return ClassConfiguration
	}
	return ClassTransient
}

// DisconnectReason says in a word why a channel session ended: a small,
// fixed set, for the disconnects metric and the logs.
type DisconnectReason string

const (
	// ReasonShutdown: standbyd is stopping and closed the session itself.
	ReasonShutdown DisconnectReason = "shutdown"
	// ReasonReconnect: the connection settings changed (reload); the
	// session was closed to open one with the new settings.
	ReasonReconnect DisconnectReason = "reconnect"
	// ReasonReplyTimeout: a request or heartbeat got no reply within
	// reply_timeout (a hung primary, a black-holed network).
	ReasonReplyTimeout DisconnectReason = "reply_timeout"
	// ReasonServerClosed: the server ended the session with an error
	// (FATAL: administrator command, shutdown, idle timeout, ...).
	ReasonServerClosed DisconnectReason = "server_closed"
	// ReasonConnectionLost: the connection broke without a word from the
	// server (EOF, reset, a crashed backend, a network error).
	ReasonConnectionLost DisconnectReason = "connection_lost"
	// ReasonProtocol: the server sent something the protocol does not
	// allow; standbyd closed the session.
	ReasonProtocol DisconnectReason = "protocol_error"
	// ReasonRefused: standbyd closed the session because this node is no
	// longer a standby, or the upstream is on an older timeline (role.go).
	ReasonRefused DisconnectReason = "refused"
)

// DisconnectReasons lists the reasons, for metrics.
var DisconnectReasons = []DisconnectReason{ReasonShutdown, ReasonReconnect, ReasonReplyTimeout,
	ReasonServerClosed, ReasonConnectionLost, ReasonProtocol, ReasonRefused}

// ReasonOf tells why a session ended from what Supervisor.serve returned
// (nil when standbyd stopped it).
func ReasonOf(err error) DisconnectReason {
	var pe *pgconn.PgError
	var pr *ProtocolError
	var ce *CallError
	switch {
	case err == nil, errors.Is(err, ErrStopped):
		return ReasonShutdown
	case errors.Is(err, errRestart):
		return ReasonReconnect
	case isRefusal(err):
		return ReasonRefused
	case errors.As(err, &pr):
		return ReasonProtocol
	case errors.As(err, &pe):
		return ReasonServerClosed
	case errors.As(err, &ce) && ce.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return ReasonReplyTimeout
	default:
		return ReasonConnectionLost
	}
}
