package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/upstream"
)

func newCheckCommand() *cobra.Command {
	var (
		configPath string
		connect    bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the configuration, and with --connect the channel, and explain",
		Long: `Read standbyd's configuration and the standby's files, show where
primary_conninfo came from and what standbyd does with each keyword (secrets
redacted). With --connect, connect, enter the channel and say hello, and
explain a failure in plain words. Exit 0 when everything is fine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, cmd.Flags())
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			out := cmd.OutOrStdout()
			t, err := upstream.Resolve(cfg)
			if err != nil {
				fmt.Fprintf(out, "connection settings: FAILED\n  %v\n", err)
				return &exitError{code: exitFailure, err: errors.New("the configuration does not resolve")}
			}
			printTarget(out, cfg, t)
			if !connect {
				return nil
			}
			opts, err := dialOptions(cfg, t)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			opts.ClientName = "standbyd check " + version
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.Channel.ConnectTimeout+5*time.Second)
			defer cancel()
			sess, err := conn.Dial(ctx, opts)
			if err != nil {
				fmt.Fprintf(out, "\nconnect: FAILED (%s)\n  %v\n  %s\n", conn.Classify(err), err, explain(err, cfg))
				return &exitError{code: exitUnavailable, err: errors.New("the channel does not work")}
			}
			h := sess.Hello()
			fmt.Fprintf(out, "\nconnect: ok\n  upstream system identifier %d, server_version_num %d, timeline %d, in recovery %t\n  protocol v%d, max frame %d bytes, %d operations\n",
				h.SystemIdentifier, h.ServerVersionNum, h.Timeline, h.InRecovery, h.Version, sess.MaxFrameSize(), len(h.Ops))
			cctx, ccancel := context.WithTimeout(context.Background(), cfg.Channel.CloseTimeout)
			defer ccancel()
			_ = sess.Close(cctx)
			return nil
		},
	}
	addConfigFlags(cmd.Flags(), &configPath)
	cmd.Flags().BoolVar(&connect, "connect", false, "also connect, enter the channel and say hello")
	return cmd
}

func printTarget(out io.Writer, cfg *config.Config, t *upstream.Target) {
	fmt.Fprintf(out, "primary_conninfo: %s\n  %s\n", t.Source, t.Redacted)
	fmt.Fprintf(out, "endpoint: %s, database %s, application_name %s\n", t.Endpoint, cfg.Channel.Database, cfg.Channel.ApplicationName)
	if t.SystemIdentifier != 0 {
		fmt.Fprintf(out, "identity: the upstream must report system identifier %d (the standby's)\n", t.SystemIdentifier)
	}
	if len(t.Files) > 0 {
		fmt.Fprintf(out, "files read: %s\n", strings.Join(t.Files, ", "))
	}
	for _, w := range t.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	fmt.Fprintln(out, "keywords:")
	for _, d := range t.Decisions {
		fmt.Fprintf(out, "  %-26s %-9s %-30s %s\n", d.Keyword, d.Action, clip(d.Value, 30), d.Reason)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// explain says in plain words what a connection failure usually means.
func explain(err error, cfg *config.Config) string {
	var ie *conn.IdentityError
	if errors.As(err, &ie) {
		return "primary_conninfo (or channel.conninfo) points at a server of another cluster than this standby."
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28000":
			return fmt.Sprintf("the primary's pg_hba.conf has no line for database %q (the channel is not a replication connection: it needs its own line).", cfg.Channel.Database)
		case "28P01":
			return "wrong password: check the passfile named in primary_conninfo (its line for the channel's database, or for \"replication\")."
		case "3D000":
			return fmt.Sprintf("database %q does not exist on the primary: set channel.database to the database where the extension is.", cfg.Channel.Database)
		case "3F000", "42883":
			return fmt.Sprintf("the standbyd extension is not created in database %q on the primary: CREATE EXTENSION standbyd.", cfg.Channel.Database)
		case "42501":
			return "the channel's role may not enter: GRANT USAGE ON SCHEMA standbyd and GRANT EXECUTE ON PROCEDURE standbyd.serve() to it."
		case "57P03":
			return "the primary is starting up or shutting down; try again."
		}
		return "the primary refused: " + pe.Message
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connection refused"):
		return "nothing listens at that address: is the primary running, and is this the right host and port?"
	case strings.Contains(msg, "certificate"):
		return "TLS verification failed: check sslrootcert and that the host name matches the server's certificate (sslmode verify-ca/verify-full)."
	case strings.Contains(msg, "timeout") || errors.Is(err, context.DeadlineExceeded):
		return "no answer in time: a firewall, a wrong address, or an overloaded primary."
	}
	return "see the error above."
}
