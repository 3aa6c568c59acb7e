package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/localnode"
	"github.com/standbyd/standbyd/internal/opfmt"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/upstream"
)

func newCallCommand() *cobra.Command {
	var (
		configPath string
		in, out    string
		timeout    time.Duration
		direct     bool
	)
	cmd := &cobra.Command{
		Use:   "call OP [ARGS...]",
		Short: "Send one request through the channel and print the reply",
		Long: `Send one request and print the reply.

OP is an op name (N, ping) or number (0x0100). Flags come before OP, so that
arguments such as -300 are taken as values. By default the request goes
through the running daemon's API socket; --direct opens a one-shot channel
session of its own with the same configuration.

  standbyd call N 100 200 300      prints 400 500 600
  standbyd call ping

Exit codes: 0 ok, 2 usage, 3 the primary answered with an error,
4 unavailable (nothing was sent: safe to retry), 5 outcome unknown (the
request was handed over and may have run: do not blindly repeat a write),
6 not allowed (api.allow), 7 this node is not a standby (it was promoted:
nothing was sent), 1 other failures.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := protocol.ParseOp(args[0])
			if err != nil {
				// Perhaps a handler registered on the primary: its name is
				// resolved by the daemon (or after hello with --direct), and
				// its arguments are encoded as for any user op.
				op = protocol.FirstUserOp
			}
			payload, err := opfmt.Encode(op, args[1:], in, os.Stdin)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()

			var reply []byte
			if direct {
				cfg, err := config.Load(configPath, cmd.Flags())
				if err != nil {
					return &exitError{code: exitFailure, err: err}
				}
				reply, err = callDirect(ctx, cfg, args[0], payload)
				if err != nil {
					return callExit(err)
				}
			} else {
				socket := cmd.Flags().Lookup("socket").Value.String()
				if socket == "" {
					cfg, err := config.Load(configPath, cmd.Flags())
					if err != nil {
						// No config needed to reach the default socket.
						socket = "/run/standbyd/standbyd.sock"
					} else {
						socket = cfg.API.Socket
					}
				}
				c := client.New(socket)
				defer c.Close()
				reply, err = c.Call(ctx, args[0], payload)
				if err != nil {
					return callExit(err)
				}
			}
			text, err := opfmt.Format(op, reply, out)
			if err != nil {
				return &exitError{code: exitFailure, err: fmt.Errorf("formatting the reply: %w", err)}
			}
			os.Stdout.Write(text)
			if out != opfmt.OutRaw {
				os.Stdout.Write([]byte("\n"))
			}
			return nil
		},
	}
	// Everything after OP is an argument, negative numbers included.
	cmd.Flags().SetInterspersed(false)
	addConfigFlags(cmd.Flags(), &configPath)
	cmd.Flags().StringVar(&in, "in", opfmt.InAuto, "argument encoding: auto, int32, text, hex, stdin")
	cmd.Flags().StringVar(&out, "out", opfmt.OutAuto, "output format: auto, text, hex, raw, json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "deadline for the whole call")
	cmd.Flags().BoolVar(&direct, "direct", false, "open a one-shot channel session instead of using the daemon")
	return cmd
}

func callDirect(ctx context.Context, cfg *config.Config, opName string, payload []byte) ([]byte, error) {
	// The daemon's failover refusals hold here too: nothing from a node
	// that is not a standby, nothing to an upstream behind it.
	var local conn.LocalNode
	if dir := cfg.Standby.DataDirectory; dir != "" {
		if n, err := localnode.ReadFiles(dir); err == nil {
			if n.Role != localnode.RoleStandby {
				return nil, &exitError{code: exitNotStandby, err: &conn.NotStandbyError{Timeline: n.Timeline}}
			}
			local = conn.LocalNode{Known: true, Standby: true, Timeline: n.Timeline}
		}
	}
	t, err := upstream.Resolve(cfg)
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err}
	}
	opts, err := dialOptions(cfg, t)
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err}
	}
	opts.ClientName = "standbyd call " + version
	sess, err := conn.Dial(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", conn.ErrUnavailable, err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), cfg.Channel.CloseTimeout)
	defer cancel()
	defer func() { _ = sess.Close(cctx) }()
	h := sess.Hello()
	if err := local.CheckUpstream(h.Timeline, h.InRecovery); err != nil {
		return nil, fmt.Errorf("%w: %w", conn.ErrUnavailable, err)
	}
	op, err := protocol.ResolveOp(opName, sess.Hello().Ops)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return sess.Call(ctx, op, payload)
}

// callExit maps a call failure to the documented exit code.
func callExit(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee
	}
	var ae *client.Error
	if errors.As(err, &ae) {
		switch ae.Kind {
		case client.KindPrimaryError:
			return &exitError{code: exitPrimaryErr, err: err}
		case client.KindChannelUnavailable, client.KindShuttingDown, client.KindBusy:
			return &exitError{code: exitUnavailable, err: err}
		case client.KindOutcomeUnknown:
			return &exitError{code: exitUnknown, err: err}
		case client.KindBadRequest, client.KindPayloadTooLarge:
			return &exitError{code: exitUsage, err: err}
		case client.KindForbidden:
			return &exitError{code: exitDenied, err: err}
		case client.KindNotStandby:
			return &exitError{code: exitNotStandby, err: err}
		}
		return &exitError{code: exitFailure, err: err}
	}
	// The daemon got the request and then died, or gave no answer in time:
	// it may have passed it on.
	if errors.Is(err, client.ErrOutcomeUnknown) {
		return &exitError{code: exitUnknown, err: err}
	}
	var se *protocol.ServerError
	if errors.As(err, &se) {
		return &exitError{code: exitPrimaryErr, err: err}
	}
	var ce *conn.CallError
	if errors.As(err, &ce) && ce.OutcomeUnknown() {
		return &exitError{code: exitUnknown, err: err}
	}
	// Nothing reached the daemon (client.ErrDaemonUnreachable), or --direct
	// could not send: no channel from here.
	return &exitError{code: exitUnavailable, err: err}
}
