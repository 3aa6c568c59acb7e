package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/standbyd/standbyd/internal/callcli"
	"github.com/standbyd/standbyd/internal/config"
)

// standbyd-call defines the configuration flags without this package:
// they must stay those of every other standbyd command, and its default
// config path the loader's.
func TestCallFlagsMatchTheConfigFlags(t *testing.T) {
	if callcli.DefaultConfigPath != config.DefaultPath {
		t.Errorf("callcli.DefaultConfigPath %q, config.DefaultPath %q", callcli.DefaultConfigPath, config.DefaultPath)
	}
	var a, b string
	ours := pflag.NewFlagSet("run", pflag.ContinueOnError)
	addConfigFlags(ours, &a)
	theirs := pflag.NewFlagSet("call", pflag.ContinueOnError)
	callcli.AddConfigFlags(theirs, &b)
	describe := func(fs *pflag.FlagSet) map[string]string {
		m := map[string]string{}
		fs.VisitAll(func(f *pflag.Flag) { m[f.Name] = f.Shorthand + "|" + f.DefValue + "|" + f.Usage })
		return m
	}
	o, th := describe(ours), describe(theirs)
	for name, d := range o {
		if th[name] != d {
			t.Errorf("flag --%s: standbyd %q, callcli %q", name, d, th[name])
		}
	}
	if len(o) != len(th) {
		t.Errorf("standbyd defines %d config flags, callcli %d", len(o), len(th))
	}
	for name := range config.FlagKeys {
		if o[name] == "" {
			t.Errorf("config key flag --%s is not defined", name)
		}
	}
}
