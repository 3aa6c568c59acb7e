// Package callcli is `standbyd call` through the daemon's socket: its
// flags, the argument encoding, the call, the output and the exit codes.
// Both standbyd and the small standbyd-call binary use it, so that the two
// behave alike; it imports none of the daemon's packages (configuration
// loader, metrics, channel), whose initialisation would cost a shell loop
// milliseconds per call.
package callcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/opfmt"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Exit codes, documented in docs/api.md.
const (
	ExitOK          = 0
	ExitFailure     = 1 // anything else: config, I/O
	ExitUsage       = 2 // bad arguments
	ExitPrimaryErr  = 3 // the primary answered with an error
	ExitUnavailable = 4 // nothing was written: daemon not running, primary down, busy
	ExitUnknown     = 5 // the request was handed over, its outcome is unknown
	ExitDenied      = 6 // api.allow does not let this user call the op
	ExitNotStandby  = 7 // this node is not a standby (promoted): nothing was sent
)

// DefaultConfigPath is read when --config is not given and it exists; the
// configuration package has the same default (a test keeps them equal).
const DefaultConfigPath = "/etc/standbyd/standbyd.yaml"

// DefaultSocket is the daemon's socket when neither a flag nor a
// configuration names one.
const DefaultSocket = "/run/standbyd/standbyd.sock"

// ExitError carries an exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Flags are the call's flags. The configuration flags that only --direct
// uses are defined too, so that both binaries accept the same command lines.
type Flags struct {
	ConfigPath string
	In, Out    string
	Timeout    time.Duration
	Direct     bool
	fs         *pflag.FlagSet
}

// AddFlags defines the call's flags on fs.
func AddFlags(fs *pflag.FlagSet, f *Flags) {
	f.fs = fs
	AddConfigFlags(fs, &f.ConfigPath)
	fs.StringVar(&f.In, "in", opfmt.InAuto, "argument encoding: auto, int32, text, hex, stdin")
	fs.StringVar(&f.Out, "out", opfmt.OutAuto, "output format: auto, text, hex, raw, json")
	fs.DurationVar(&f.Timeout, "timeout", 10*time.Second, "deadline for the whole call")
	fs.BoolVar(&f.Direct, "direct", false, "open a one-shot channel session instead of using the daemon")
	// Everything after OP is an argument, negative numbers included.
	fs.SetInterspersed(false)
}

// AddConfigFlags defines the flags that override the configuration, as every
// standbyd command that reads it has them.
func AddConfigFlags(fs *pflag.FlagSet, configPath *string) {
	fs.StringVarP(configPath, "config", "c", "", "config file (default "+DefaultConfigPath+" if it exists)")
	fs.String("data-directory", "", "the standby's data directory (standby.data_directory)")
	fs.String("pg-config-file", "", "the standby's postgresql.conf when not in the data directory (standby.config_file)")
	fs.String("conninfo", "", "connection string to use instead of primary_conninfo (channel.conninfo)")
	fs.String("database", "", "database the channel connects to (channel.database)")
	fs.String("socket", "", "local API socket (api.socket)")
	fs.String("metrics-listen", "", "address of the metrics listener, empty to disable (metrics.listen)")
	fs.String("log-level", "", "debug, info, warn or error (log.level)")
	fs.String("log-format", "", "auto, json or console (log.format)")
}

// Request is a parsed call: the op as given, its code, and the payload.
type Request struct {
	Name    string
	Op      uint16
	Payload []byte
}

// Parse reads OP and its arguments (args[0] is OP).
func Parse(f *Flags, args []string, stdin io.Reader) (Request, error) {
	if len(args) < 1 {
		return Request{}, &ExitError{Code: ExitUsage, Err: errors.New("requires at least 1 arg(s), only received 0")}
	}
	op, err := protocol.ParseOp(args[0])
	if err != nil {
		// Perhaps a handler registered on the primary: its name is
		// resolved by the daemon (or after hello with --direct), and its
		// arguments are encoded as for any user op.
		op = protocol.FirstUserOp
	}
	payload, err := opfmt.Encode(op, args[1:], f.In, stdin)
	if err != nil {
		return Request{}, &ExitError{Code: ExitUsage, Err: err}
	}
	return Request{Name: args[0], Op: op, Payload: payload}, nil
}

// Socket is the daemon's socket: --socket, else what loadSocket reads from
// the configuration, else DefaultSocket (no configuration is needed to reach
// the default socket).
func (f *Flags) Socket(loadSocket func() (string, error)) string {
	if fl := f.fs.Lookup("socket"); fl != nil && fl.Value.String() != "" {
		return fl.Value.String()
	}
	if s, err := loadSocket(); err == nil && s != "" {
		return s
	}
	return DefaultSocket
}

// ViaDaemon sends the request through the daemon at socket, on its fast
// path (fast.go).
func ViaDaemon(ctx context.Context, socket string, r Request) ([]byte, error) {
	return viaFastPath(ctx, socket, r.Name, r.Payload)
}

// Print writes the reply in the --out format.
func Print(w io.Writer, f *Flags, r Request, reply []byte) error {
	text, err := opfmt.Format(r.Op, reply, f.Out)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("formatting the reply: %w", err)}
	}
	if f.Out != opfmt.OutRaw {
		text = append(text, '\n')
	}
	if _, err := w.Write(text); err != nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("writing the reply: %w", err)}
	}
	return nil
}

// Exit maps a call failure to the documented exit code. other, if set,
// classifies errors of --direct's own session; it is asked before the last
// resort (unavailable).
func Exit(err error, other func(error) (int, bool)) *ExitError {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee
	}
	var de *DaemonError
	if errors.As(err, &de) {
		switch de.Kind {
		case fastproto.ErrorKindPrimaryError:
			return &ExitError{Code: ExitPrimaryErr, Err: withDetail(err, de.Detail, de.Hint)}
		case fastproto.ErrorKindChannelUnavailable, fastproto.ErrorKindShuttingDown, fastproto.ErrorKindBusy:
			return &ExitError{Code: ExitUnavailable, Err: err}
		case fastproto.ErrorKindOutcomeUnknown:
			return &ExitError{Code: ExitUnknown, Err: err}
		case fastproto.ErrorKindBadRequest, fastproto.ErrorKindPayloadTooLarge:
			return &ExitError{Code: ExitUsage, Err: err}
		case fastproto.ErrorKindForbidden:
			return &ExitError{Code: ExitDenied, Err: err}
		case fastproto.ErrorKindNotStandby:
			return &ExitError{Code: ExitNotStandby, Err: err}
		}
		return &ExitError{Code: ExitFailure, Err: err}
	}
	// The daemon got the request and then died, or gave no answer in time:
	// it may have passed it on.
	if errors.Is(err, ErrOutcomeUnknown) {
		return &ExitError{Code: ExitUnknown, Err: err}
	}
	var se *protocol.ServerError
	if errors.As(err, &se) {
		return &ExitError{Code: ExitPrimaryErr, Err: withDetail(err, se.Detail, se.Hint)}
	}
	if other != nil {
		if code, ok := other(err); ok {
			return &ExitError{Code: code, Err: err}
		}
	}
	// Nothing reached the daemon (ErrDaemonUnreachable), or --direct
	// could not send: no channel from here.
	return &ExitError{Code: ExitUnavailable, Err: err}
}

// detailError shows a primary's error as psql does: its DETAIL and HINT
// on lines of their own after the message.
type detailError struct {
	err          error
	detail, hint string
}

func withDetail(err error, detail, hint string) error {
	if detail == "" && hint == "" {
		return err
	}
	return &detailError{err: err, detail: detail, hint: hint}
}

func (e *detailError) Error() string {
	var b strings.Builder
	b.WriteString(e.err.Error())
	if e.detail != "" {
		b.WriteString("\nDETAIL:  ")
		b.WriteString(e.detail)
	}
	if e.hint != "" {
		b.WriteString("\nHINT:  ")
		b.WriteString(e.hint)
	}
	return b.String()
}

func (e *detailError) Unwrap() error { return e.err }
