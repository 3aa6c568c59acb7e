package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/standbyd/standbyd/internal/callcli"
	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/localnode"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/upstream"
)

func newCallCommand() *cobra.Command {
	var f callcli.Flags
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

standbyd-call is the same command as a binary of its own that starts in a
fraction of the time (it links none of the daemon's packages): use it in
shell loops.

Exit codes: 0 ok, 2 usage, 3 the primary answered with an error,
4 unavailable (nothing was sent: safe to retry), 5 outcome unknown (the
request was handed over and may have run: do not blindly repeat a write),
6 not allowed (api.allow), 7 this node is not a standby (it was promoted:
nothing was sent), 1 other failures.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := callcli.Parse(&f, args, os.Stdin)
			if err != nil {
				return callExit(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.Timeout)
			defer cancel()

			var reply []byte
			if f.Direct {
				cfg, err := config.Load(f.ConfigPath, cmd.Flags())
				if err != nil {
					return &exitError{code: exitFailure, err: err}
				}
				reply, err = callDirect(ctx, cfg, req.Name, req.Payload)
				if err != nil {
					return callExit(err)
				}
			} else {
				socket := f.Socket(func() (string, error) {
					cfg, err := config.Load(f.ConfigPath, cmd.Flags())
					if err != nil {
						return "", err
					}
					return cfg.API.Socket, nil
				})
				reply, err = callcli.ViaDaemon(ctx, socket, req)
				if err != nil {
					return callExit(err)
				}
			}
			if err := callcli.Print(os.Stdout, &f, req, reply); err != nil {
				return callExit(err)
			}
			return nil
		},
	}
	callcli.AddFlags(cmd.Flags(), &f)
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

// callExit maps a call failure to the documented exit code; a failure of
// --direct's own session after its request was sent is an unknown outcome.
func callExit(err error) error {
	// --direct's own refusals (not a standby) carry their code already.
	var own *exitError
	if errors.As(err, &own) {
		return own
	}
	ee := callcli.Exit(err, func(err error) (int, bool) {
		var ce *conn.CallError
		if errors.As(err, &ce) && ce.OutcomeUnknown() {
			return exitUnknown, true
		}
		return 0, false
	})
	return &exitError{code: ee.Code, err: ee.Err}
}
