// Command standbyd is a sidecar daemon for a PostgreSQL standby: it holds one
// channel session to the primary named by the standby's primary_conninfo and
// carries request frames over it. See README.md and docs/.
//
// This file and its siblings only wire packages together.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/standbyd/standbyd/internal/callcli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, documented in docs/api.md; `standbyd call` shares them with
// standbyd-call.
const (
	exitOK          = callcli.ExitOK
	exitFailure     = callcli.ExitFailure
	exitUsage       = callcli.ExitUsage
	exitPrimaryErr  = callcli.ExitPrimaryErr
	exitUnavailable = callcli.ExitUnavailable
	exitUnknown     = callcli.ExitUnknown
	exitDenied      = callcli.ExitDenied
	exitNotStandby  = callcli.ExitNotStandby
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "standbyd",
		Short:         "Request/reply channel from a PostgreSQL standby to its primary",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newRunCommand(), newCallCommand(), newStatusCommand(), newCheckCommand(), newManCommand())
	err := root.Execute()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "standbyd:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(exitUsage)
}
