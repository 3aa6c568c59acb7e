// Package upstream works out where the channel connects: it reads the
// standby's primary_conninfo from its configuration files (internal/pgconf)
// and turns it into a pgconn.Config with the channel's own settings
// (internal/conninfo). channel.conninfo in standbyd's config, when set,
// replaces primary_conninfo.
package upstream

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conninfo"
	"github.com/standbyd/standbyd/internal/pgconf"
	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// ErrNoPrimaryConninfo means the standby's files set no primary_conninfo.
var ErrNoPrimaryConninfo = errors.New("primary_conninfo is not set")

// Target is a resolved primary.
type Target struct {
	// Config is the connection, ready for pgconn.ConnectConfig (copy it
	// before each use).
	Config *pgconn.Config
	// Source says where the conninfo came from ("file:line" or the key of
	// standbyd's own config).
	Source string
	// Conninfo is the raw string, for change detection only: it may hold a
	// password, never log it (use Redacted).
	Conninfo string
	// Redacted is the conninfo with secrets masked, safe to log.
	Redacted string
	// Endpoint is host:port (redacted), for logs and metrics.
	Endpoint string
	// Decisions lists what was done with each conninfo keyword.
	Decisions []conninfo.Decision
	// Warnings are what libpq would only warn about or do silently (a
	// passfile with loose permissions, an unloadable CRL ...), to be logged.
	Warnings []string
	// Files are the configuration files read (to watch for changes).
	Files []string
	// SystemIdentifier is the standby's own (from its pg_control), which the
	// upstream must report; 0 when not checked.
	SystemIdentifier uint64
}

// Resolve reads the standby's configuration and builds the target.
func Resolve(c *config.Config) (*Target, error) {
	t := &Target{}
	raw := c.Channel.Conninfo
	if raw != "" {
		t.Source = "channel.conninfo"
	} else {
		pc, err := pgconf.LoadDataDir(c.Standby.DataDirectory, pgconf.Options{ConfigFile: c.Standby.ConfigFile})
		if err != nil {
			return nil, fmt.Errorf("reading the standby's configuration: %w", err)
		}
		t.Files = pc.Files()
		s, ok := pc.Get("primary_conninfo")
		if !ok || s.Value == "" {
			return nil, fmt.Errorf("%w in the standby's configuration (%s and postgresql.auto.conf under %s); is this a standby? set channel.conninfo otherwise",
				ErrNoPrimaryConninfo, pc.MainFile(), c.Standby.DataDirectory)
		}
		raw = s.Value
		t.Source = fmt.Sprintf("%s:%d", s.File, s.Line)
	}
	res, err := conninfo.Parse(raw, conninfo.Options{
		Database:        c.Channel.Database,
		ApplicationName: c.Channel.ApplicationName,
		ConnectTimeout:  c.Channel.ConnectTimeout,
		TCPUserTimeout:  c.Channel.TCPUserTimeout,
		Keepalive: conninfo.KeepaliveDefaults{
			Idle:     c.Channel.KeepalivesIdle,
			Interval: c.Channel.KeepalivesIntvl,
			Count:    c.Channel.KeepalivesCount,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("primary_conninfo from %s: %w", t.Source, err)
	}
	if c.Channel.CheckIdentity && c.Channel.Mode != "raw" && c.Standby.DataDirectory != "" {
		id, err := pgcontrol.SystemIdentifier(c.Standby.DataDirectory)
		if err != nil {
			return nil, fmt.Errorf("identity check (channel.check_identity): %w", err)
		}
		t.SystemIdentifier = id
	}
	t.Config = res.Config
	t.Conninfo = raw
	t.Redacted = conninfo.Redact(raw)
	t.Endpoint = res.Endpoint
	t.Decisions = res.Decisions
	t.Warnings = res.Warnings
	return t, nil
}
