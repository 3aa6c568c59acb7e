package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/config"
)

func newStatusCommand() *cobra.Command {
	var (
		configPath string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's channel state",
		Long: `Ask the running daemon, through its API socket, how its channel is.
Exit codes: 0 the channel is ready, 4 it is not (or the daemon does not answer),
7 the node is not a standby (promoted): the daemon refuses to serve.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			socket := cmd.Flags().Lookup("socket").Value.String()
			if socket == "" {
				socket = "/run/standbyd/standbyd.sock"
				if cfg, err := config.Load(configPath, cmd.Flags()); err == nil {
					socket = cfg.API.Socket
				}
			}
			c := client.New(socket)
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return &exitError{code: exitUnavailable, err: err}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(st)
			} else {
				printStatus(os.Stdout, st, time.Now())
			}
			if st.Local != nil && st.Local.Role != "standby" {
				return &exitError{code: exitNotStandby, err: fmt.Errorf("this node is not a standby (timeline %d)", st.Local.Timeline)}
			}
			if st.State != "ready" {
				return &exitError{code: exitUnavailable, err: fmt.Errorf("channel %s", st.State)}
			}
			return nil
		},
	}
	addConfigFlags(cmd.Flags(), &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(w io.Writer, st client.StatusResponse, now time.Time) {
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" }
	fmt.Fprintf(w, "channel:      %s (since %s)\n", st.State, ago(st.StateSince))
	if st.LastError != "" {
		fmt.Fprintf(w, "last error:   %s\n", st.LastError)
	}
	if l := st.Local; l != nil {
		fmt.Fprintf(w, "this node:    %s, timeline %d\n", l.Role, l.Timeline)
	}
	if p := st.Primary; p != nil {
		role := "primary"
		if p.InRecovery {
			role = "hot standby (cascading upstream)"
		}
		fmt.Fprintf(w, "upstream:     %s, system identifier %s, server_version_num %d, timeline %d\n",
			role, p.SystemIdentifier, p.ServerVersionNum, p.Timeline)
		fmt.Fprintf(w, "protocol:     v%d, max frame %d bytes\n", p.ProtocolVersion, p.MaxFrameSize)
	}
	if st.SessionStart != nil {
		fmt.Fprintf(w, "session:      up %s (backend pid %d)\n", now.Sub(*st.SessionStart).Round(time.Second), st.ChannelBackendID)
	}
	if st.LastReply != nil {
		fmt.Fprintf(w, "last reply:   %s\n", ago(*st.LastReply))
	}
	if len(st.Sessions) > 1 || st.Waiting > 0 {
		fmt.Fprintf(w, "sessions:     %d of %d ready, %d calls waiting\n", st.ReadySessions, len(st.Sessions), st.Waiting)
	}
}
