// Command standbyd-call is `standbyd call` as a binary of its own: the same
// flags, output and exit codes (both use internal/callcli), but it links
// none of the daemon's packages, so that it starts in a fraction of the
// time: a shell loop of calls pays for the call, not for initialising a
// configuration loader, metrics and a channel it does not use.
//
//	standbyd-call [flags] OP [ARGS...]
//
// The socket comes from --socket, else STANDBYD_API_SOCKET, else api.socket
// of the config file (--config, or /etc/standbyd/standbyd.yaml if it
// exists), else /run/standbyd/standbyd.sock. With --direct it runs
// `standbyd call` (found beside it, or on PATH) with the same arguments.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/standbyd/standbyd/internal/callcli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the command; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := pflag.NewFlagSet("standbyd-call", pflag.ContinueOnError)
	var f callcli.Flags
	callcli.AddFlags(flags, &f)
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: standbyd-call [flags] OP [ARGS...]\n\n`standbyd call` with a fast start; see `standbyd call --help`.\n\nFlags:\n%s", flags.FlagUsages())
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return callcli.ExitOK
		}
		fmt.Fprintln(stderr, "standbyd-call:", err)
		return callcli.ExitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, "standbyd-call version", version)
		return callcli.ExitOK
	}
	if f.Direct {
		return direct(args, stderr)
	}
	req, err := callcli.Parse(&f, flags.Args(), stdin)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
		defer cancel()
		var reply []byte
		if reply, err = callcli.ViaDaemon(ctx, f.Socket(func() (string, error) { return configSocket(f.ConfigPath) }), req); err == nil {
			err = callcli.Print(stdout, &f, req, reply)
		}
	}
	if err == nil {
		return callcli.ExitOK
	}
	ee := callcli.Exit(err, nil)
	fmt.Fprintln(stderr, "standbyd-call:", ee)
	return ee.Code
}

// configSocket reads api.socket as standbyd's configuration would give it,
// without its loader: the environment first, then the file.
func configSocket(path string) (string, error) {
	if s := os.Getenv("STANDBYD_API_SOCKET"); s != "" {
		return s, nil
	}
	if path == "" {
		path = callcli.DefaultConfigPath
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config file %s: %w", path, err)
	}
	var doc struct {
		API struct {
			Socket string `yaml:"socket"`
		} `yaml:"api"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("config file %s: %w", path, err)
	}
	return doc.API.Socket, nil
}

// direct hands the call to `standbyd call`, which has the channel session
// that --direct needs.
func direct(args []string, stderr io.Writer) int {
	bin := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "standbyd"); isExecutable(p) {
			bin = p
		}
	}
	if bin == "" {
		p, err := exec.LookPath("standbyd")
		if err != nil {
			fmt.Fprintln(stderr, "standbyd-call: --direct needs standbyd beside standbyd-call or on PATH:", err)
			return callcli.ExitFailure
		}
		bin = p
	}
	err := syscall.Exec(bin, append([]string{"standbyd", "call"}, args...), os.Environ())
	fmt.Fprintln(stderr, "standbyd-call: running standbyd call --direct:", err)
	return callcli.ExitFailure
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
