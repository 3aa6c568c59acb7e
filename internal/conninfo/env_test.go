package conninfo

import (
	"strings"
	"testing"
	"time"
)

func TestEnvironment(t *testing.T) {
	o := opts(t)
	o.Getenv = envMap(map[string]string{
		"PGHOST": "env.example", "PGPORT": "6000", "PGUSER": "envuser", "PGDATABASE": "envdb", "PGAPPNAME": "envapp",
		"PGCONNECT_TIMEOUT": "9", "PGOPTIONS": "-c x=1", "PGCLIENTENCODING": "LATIN9", "PGSSLMODE": "require",
		"PGTARGETSESSIONATTRS": "read-write", "PGSSLMINPROTOCOLVERSION": "TLSv1.3", "PGCHANNELBINDING": "require",
	})
	r := mustParse(t, "", o)
	c := r.Config
	eq(t, c.Host, "env.example")
	eq(t, c.Port, uint16(6000))
	eq(t, c.User, "envuser")
	eq(t, c.Database, "postgres") // PGDATABASE never moves the channel
	eq(t, c.RuntimeParams["application_name"], "standbyd")
	eq(t, c.ConnectTimeout, 9*time.Second)
	eq(t, c.RuntimeParams["options"], "-c x=1")
	eq(t, c.RuntimeParams["client_encoding"], "LATIN9")
	eq(t, len(c.Fallbacks), 0) // require
	eq(t, c.ValidateConnect != nil, true)
	eq(t, c.TLSConfig.MinVersion, uint16(0x0304))
	eq(t, c.ChannelBinding, "require")
	d := decision(t, r, "dbname")
	eq(t, d.Source, "environment PGDATABASE")
	eq(t, d.Action, Ignored)
	eq(t, decision(t, r, "host").Source, "environment PGHOST")

	// The string wins over the environment.
	r = mustParse(t, "host=mine port=1 sslmode=disable", o)
	eq(t, r.Config.Host, "mine")
	eq(t, r.Config.Port, uint16(1))
	eq(t, r.Config.TLSConfig == nil, true)

	// %a takes PGAPPNAME like any application_name.
	o.ApplicationName = "standbyd/%a/%%"
	eq(t, mustParse(t, "", o).Config.RuntimeParams["application_name"], "standbyd/envapp/%")
}

func TestEnvironmentOnlyVariables(t *testing.T) {
	o := opts(t)
	o.Getenv = envMap(map[string]string{"PGREQUIRESSL": "1", "PGTZ": "Europe/Paris", "PGDATESTYLE": "default", "PGGEQO": "off"})
	r := mustParse(t, "host=h", o)
	eq(t, len(r.Config.Fallbacks), 0) // PGREQUIRESSL=1: sslmode=require
	eq(t, decision(t, r, "sslmode").Source, "environment PGREQUIRESSL")
	eq(t, r.Config.RuntimeParams["timezone"], "Europe/Paris")
	eq(t, r.Config.RuntimeParams["geqo"], "off")
	_, ok := r.Config.RuntimeParams["datestyle"] // "default" sends nothing, as libpq
	eq(t, ok, false)
	eq(t, decision(t, r, "PGTZ").Action, Honoured)
	// PGSSLMODE wins over PGREQUIRESSL.
	o.Getenv = envMap(map[string]string{"PGREQUIRESSL": "1", "PGSSLMODE": "disable"})
	eq(t, mustParse(t, "host=h", o).Config.TLSConfig == nil, true)
}

func TestEnvironmentRefusals(t *testing.T) {
	o := opts(t)
	o.Getenv = envMap(map[string]string{"PGGSSENCMODE": "require"})
	r, err := Parse("host=h", o)
	keywordErr(t, err, "gssencmode")
	eq(t, decision(t, r, "gssencmode").Source, "environment PGGSSENCMODE")
}

// Without Options.Getenv, the process environment is read.
func TestProcessEnvironmentByDefault(t *testing.T) {
	t.Setenv("PGHOST", "procenv.example")
	o := opts(t)
	o.Getenv = nil
	eq(t, mustParse(t, "", o).Config.Host, "procenv.example")
}

func TestClientEncodingAuto(t *testing.T) {
	for env, want := range map[string]string{"": "SQL_ASCII", "C": "SQL_ASCII", "en_US.UTF-8": "UTF8", "de_DE.utf8@euro": "UTF8",
		"fr_FR.ISO-8859-15": "LATIN9", "ja_JP.eucJP": ""} {
		o := opts(t)
		o.Getenv = envMap(map[string]string{"LC_CTYPE": env})
		r := mustParse(t, "host=h client_encoding=auto", o)
		got, ok := r.Config.RuntimeParams["client_encoding"]
		if want == "" {
			if ok || decision(t, r, "client_encoding").Action != Ignored {
				t.Errorf("%q: sent %q", env, got)
			}
			continue
		}
		if got != want || !strings.Contains(decision(t, r, "client_encoding").Reason, want) {
			t.Errorf("%q: %q, want %q", env, got, want)
		}
	}
}
