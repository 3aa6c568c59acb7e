// Package config loads standbyd's own configuration: a YAML file, STANDBYD_*
// environment variables and command-line flags, in rising order of
// precedence. The result is an immutable, validated Config; a reload builds a
// new one and the caller swaps it in only when it is valid, so a broken file
// never replaces a working configuration.
//
// viper is not safe for concurrent use: every Load uses its own instance and
// nothing keeps it afterwards.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/standbyd/standbyd/internal/protocol"
)

// DefaultPath is read when no --config is given and the file exists.
const DefaultPath = "/etc/standbyd/standbyd.yaml"

// Config is standbyd's configuration. See configs/standbyd.yaml for every
// option with its default and meaning.
type Config struct {
	Standby StandbyConfig `mapstructure:"standby"`
	Channel ChannelConfig `mapstructure:"channel"`
	API     APIConfig     `mapstructure:"api"`
	Metrics MetricsConfig `mapstructure:"metrics"`
	Log     LogConfig     `mapstructure:"log"`

	// File is the config file that was read ("" when none).
	File string `mapstructure:"-"`
}

// StandbyConfig says where the standby's data directory and config are.
type StandbyConfig struct {
	DataDirectory string `mapstructure:"data_directory"`
	ConfigFile    string `mapstructure:"config_file"`
	// Conninfo, when set, is a local connection to the standby itself, used
	// to read its replay position (for the replay lag metric) and its role
	// and timeline (internal/localnode).
	Conninfo string `mapstructure:"conninfo"`
}

// ChannelConfig configures the channel to the primary.
type ChannelConfig struct {
	Mode              string        `mapstructure:"mode"`
	Conninfo          string        `mapstructure:"conninfo"`
	Database          string        `mapstructure:"database"`
	ApplicationName   string        `mapstructure:"application_name"`
	Procedure         string        `mapstructure:"procedure"`
	MaxFrameSize      int           `mapstructure:"max_frame_size"`
	ConnectTimeout    time.Duration `mapstructure:"connect_timeout"`
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	ReplyTimeout      time.Duration `mapstructure:"reply_timeout"`
	BackoffMin        time.Duration `mapstructure:"backoff_min"`
	BackoffMax        time.Duration `mapstructure:"backoff_max"`
	CloseTimeout      time.Duration `mapstructure:"close_timeout"`
	TCPUserTimeout    time.Duration `mapstructure:"tcp_user_timeout"`
	KeepalivesIdle    time.Duration `mapstructure:"keepalives_idle"`
	KeepalivesIntvl   time.Duration `mapstructure:"keepalives_interval"`
	KeepalivesCount   int           `mapstructure:"keepalives_count"`
	SlowThreshold     time.Duration `mapstructure:"slow_threshold"`
	FailFast          bool          `mapstructure:"fail_fast"`
	IdempotentOps     []string      `mapstructure:"idempotent_ops"`
	Sessions          int           `mapstructure:"sessions"`
	MaxInFlight       int           `mapstructure:"max_in_flight"`
	ProtocolVersion   int           `mapstructure:"protocol_version"`
	CheckIdentity     bool          `mapstructure:"check_identity"`
}

// APIConfig configures the local request API.
type APIConfig struct {
	Socket             string        `mapstructure:"socket"`
	SocketMode         string        `mapstructure:"socket_mode"`
	SocketGroup        string        `mapstructure:"socket_group"`
	QueueLimit         int           `mapstructure:"queue_limit"`
	DefaultCallTimeout time.Duration `mapstructure:"default_call_timeout"`
	MaxCallTimeout     time.Duration `mapstructure:"max_call_timeout"`
	MaxConnections     int           `mapstructure:"max_connections"`
	// Allow restricts ops to named users and groups (see AllowRule).
	Allow []AllowRule `mapstructure:"allow"`
}

// AllowRule lets Users and Groups call Ops. An op named by some rule may be
// called only by the callers its rules name; other ops by anyone who can
// open the socket. Names are resolved to ids when the configuration is
// loaded (UIDs, GIDs), so that a typo stops the load instead of locking
// everyone out later.
type AllowRule struct {
	Ops    []string `mapstructure:"ops"`
	Users  []string `mapstructure:"users"`
	Groups []string `mapstructure:"groups"`

	UIDs []uint32 `mapstructure:"-"`
	GIDs []uint32 `mapstructure:"-"`
}

// MetricsConfig configures the HTTP listener for /metrics, /healthz, /readyz.
type MetricsConfig struct {
	Listen string `mapstructure:"listen"`
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth) for the listener; "" serves plain HTTP.
	WebConfigFile string `mapstructure:"web_config_file"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// defaults, also the list of every known key.
var defaults = map[string]any{
	"standby.data_directory":      "",
	"standby.config_file":         "",
	"standby.conninfo":            "",
	"channel.mode":                "extension",
	"channel.conninfo":            "",
	"channel.database":            "postgres",
	"channel.application_name":    "standbyd",
	"channel.procedure":           "standbyd.serve",
	"channel.max_frame_size":      1 << 20,
	"channel.connect_timeout":     "10s",
	"channel.heartbeat_interval":  "2s",
	"channel.reply_timeout":       "5s",
	"channel.backoff_min":         "200ms",
	"channel.backoff_max":         "30s",
	"channel.close_timeout":       "2s",
	"channel.tcp_user_timeout":    "10s",
	"channel.keepalives_idle":     "5s",
	"channel.keepalives_interval": "2s",
	"channel.keepalives_count":    3,
	"channel.slow_threshold":      "0s",
	"channel.fail_fast":           false,
	"channel.idempotent_ops":      []string{},
	"channel.sessions":            1,
	"channel.max_in_flight":       16,
	"channel.protocol_version":    3,
	"channel.check_identity":      true,
	"api.socket":                  "/run/standbyd/standbyd.sock",
	"api.socket_mode":             "0660",
	"api.socket_group":            "",
	"api.queue_limit":             1000,
	"api.default_call_timeout":    "10s",
	"api.max_call_timeout":        "5m",
	"api.max_connections":         1024,
	"api.allow":                   []any{},
	"metrics.listen":              "127.0.0.1:9561",
	"metrics.web_config_file":     "",
	"log.level":                   "info",
	"log.format":                  "auto",
}

// FlagKeys maps command-line flag names to config keys.
var FlagKeys = map[string]string{
	"data-directory": "standby.data_directory",
	"pg-config-file": "standby.config_file",
	"conninfo":       "channel.conninfo",
	"database":       "channel.database",
	"socket":         "api.socket",
	"metrics-listen": "metrics.listen",
	"log-level":      "log.level",
	"log-format":     "log.format",
}

// Load reads the configuration. path is the file to read: when it is empty,
// DefaultPath is read if it exists. flags may be nil; only flags that the user
// set override the file and the environment.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("STANDBYD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	file := path
	if file == "" {
		if _, err := os.Stat(DefaultPath); err == nil {
			file = DefaultPath
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("config file %s: %w", file, err)
			}
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	if flags != nil {
		for name, key := range FlagKeys {
			if f := flags.Lookup(name); f != nil && f.Changed {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, fmt.Errorf("flag --%s: %w", name, err)
				}
			}
		}
	}

	var c Config
	err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", describe(file), err)
	}
	c.File = file
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", describe(file), err)
	}
	return &c, nil
}

func describe(file string) string {
	if file == "" {
		return "(defaults, environment and flags)"
	}
	return file
}

// Validate checks every value and names the key at fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Standby.DataDirectory == "" && c.Channel.Conninfo == "" {
		bad("standby.data_directory", "required (the standby's data directory, where primary_conninfo is read), unless channel.conninfo is set")
	}
	if c.Standby.Conninfo != "" {
		if _, err := pgconn.ParseConfig(c.Standby.Conninfo); err != nil {
			// The inner message only: pgconn's own quotes the string.
			if inner := errors.Unwrap(err); inner != nil {
				err = inner
			}
			bad("standby.conninfo", "not a valid connection string: %v", err)
		}
	}
	switch c.Channel.Mode {
	case "extension", "raw":
	default:
		bad("channel.mode", "%q is not extension or raw", c.Channel.Mode)
	}
	if c.Channel.Database == "" {
		bad("channel.database", "must not be empty")
	}
	if !validProcedure(c.Channel.Procedure) {
		bad("channel.procedure", "%q is not a schema-qualified identifier like standbyd.serve", c.Channel.Procedure)
	}
	if c.Channel.MaxFrameSize < 1024 || c.Channel.MaxFrameSize > 256<<20 {
		bad("channel.max_frame_size", "%d is outside 1024 to 268435456 bytes", c.Channel.MaxFrameSize)
	}
	positive := map[string]time.Duration{
		"channel.connect_timeout":    c.Channel.ConnectTimeout,
		"channel.heartbeat_interval": c.Channel.HeartbeatInterval,
		"channel.reply_timeout":      c.Channel.ReplyTimeout,
		"channel.backoff_min":        c.Channel.BackoffMin,
		"channel.backoff_max":        c.Channel.BackoffMax,
		"channel.close_timeout":      c.Channel.CloseTimeout,
		"api.default_call_timeout":   c.API.DefaultCallTimeout,
		"api.max_call_timeout":       c.API.MaxCallTimeout,
	}
	for k, d := range positive {
		if d <= 0 {
			bad(k, "must be a positive duration, got %s", d)
		}
	}
	if c.Channel.BackoffMax < c.Channel.BackoffMin {
		bad("channel.backoff_max", "%s is below channel.backoff_min %s", c.Channel.BackoffMax, c.Channel.BackoffMin)
	}
	if c.API.MaxCallTimeout < c.API.DefaultCallTimeout {
		bad("api.max_call_timeout", "%s is below api.default_call_timeout %s", c.API.MaxCallTimeout, c.API.DefaultCallTimeout)
	}
	if c.Channel.SlowThreshold < 0 || c.Channel.SlowThreshold > c.Channel.ReplyTimeout {
		bad("channel.slow_threshold", "%s must be between 0 (half the reply timeout) and channel.reply_timeout", c.Channel.SlowThreshold)
	}
	for _, op := range c.Channel.IdempotentOps {
		if !validOpRef(op) {
			bad("channel.idempotent_ops", "%q is neither an op number (256 to 65535) nor a handler name", op)
		}
	}
	if c.Channel.TCPUserTimeout < 0 || c.Channel.KeepalivesIdle < 0 || c.Channel.KeepalivesIntvl < 0 || c.Channel.KeepalivesCount < 0 {
		bad("channel.keepalives_*", "must not be negative")
	}
	if c.Channel.Sessions < 1 || c.Channel.Sessions > 64 {
		bad("channel.sessions", "%d is outside 1 to 64", c.Channel.Sessions)
	}
	if c.Channel.MaxInFlight < 1 || c.Channel.MaxInFlight > 1024 {
		bad("channel.max_in_flight", "%d is outside 1 to 1024", c.Channel.MaxInFlight)
	}
	if c.Channel.ProtocolVersion < 1 || c.Channel.ProtocolVersion > int(protocol.MaxVersion) {
		bad("channel.protocol_version", "%d is outside 1 to %d", c.Channel.ProtocolVersion, protocol.MaxVersion)
	}
	if c.API.QueueLimit < 0 {
		bad("api.queue_limit", "must not be negative (0: no limit)")
	}
	if c.API.MaxConnections < 1 {
		bad("api.max_connections", "%d must be at least 1", c.API.MaxConnections)
	}
	for i := range c.API.Allow {
		errs = append(errs, c.API.Allow[i].resolve(fmt.Sprintf("api.allow[%d]", i))...)
	}
	if _, err := c.API.Mode(); err != nil {
		bad("api.socket_mode", "%v", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		bad("log.format", "%q is not auto, json or console", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Mode parses SocketMode, an octal file mode such as "0660".
func (a APIConfig) Mode() (fs.FileMode, error) {
	m, err := strconv.ParseUint(a.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode like 0660", a.SocketMode)
	}
	return fs.FileMode(m), nil
}

// resolve checks a rule and looks its users and groups up; errors name key.
func (r *AllowRule) resolve(key string) []error {
	var errs []error
	if len(r.Ops) == 0 {
		errs = append(errs, fmt.Errorf("%s.ops: names no op", key))
	}
	for _, op := range r.Ops {
		if _, err := protocol.ParseOp(op); err != nil && !validOpRef(op) {
			errs = append(errs, fmt.Errorf("%s.ops: %q is neither a built-in op, an op number nor a handler name", key, op))
		}
	}
	if len(r.Users) == 0 && len(r.Groups) == 0 {
		errs = append(errs, fmt.Errorf("%s: names no user and no group (the ops would be closed to everyone)", key))
	}
	r.UIDs, r.GIDs = nil, nil
	for _, name := range r.Users {
		id, err := lookupID(name, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.users: %w", key, err))
			continue
		}
		r.UIDs = append(r.UIDs, id)
	}
	for _, name := range r.Groups {
		id, err := lookupID(name, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.groups: %w", key, err))
			continue
		}
		r.GIDs = append(r.GIDs, id)
	}
	return errs
}

// lookupID resolves a user or group name; a number is taken as an id.
func lookupID(name string, lookup func(string) (string, error)) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	s, err := lookup(name)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", name, err)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q has id %q: %w", name, s, err)
	}
	return uint32(n), nil
}

// validOpRef accepts an op number from 256 to 65535 or a handler name.
func validOpRef(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(s, 0, 16)
		return err == nil && n >= 256
	}
	for i, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
			return false
		}
	}
	return len(s) <= 63
}

func validProcedure(s string) bool {
	schema, name, ok := strings.Cut(s, ".")
	return ok && isIdent(schema) && isIdent(name)
}

func isIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z'):
		case i > 0 && (r >= '0' && r <= '9' || r == '$'):
		default:
			return false
		}
	}
	return true
}
