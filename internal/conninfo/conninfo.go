package conninfo

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// KeepaliveDefaults are the TCP keepalive settings used when the connection
// string gives none. A zero field leaves the kernel's default.
type KeepaliveDefaults struct {
	Idle, Interval time.Duration
	Count          int
}

// Options are the channel's own settings and the environment to read.
type Options struct {
	// Database is the database the channel connects to ("postgres" when
	// empty); a dbname in the connection string never replaces it.
	Database string
	// ApplicationName names the channel in pg_stat_activity ("standbyd"
	// when empty). "%a" in it is replaced by the connection string's
	// application_name (else fallback_application_name, else nothing), "%%"
	// by "%".
	ApplicationName string
	// ConnectTimeout bounds each host address's connection attempt when the
	// string gives no connect_timeout (0: no bound but the caller's context).
	ConnectTimeout time.Duration
	// Keepalive and TCPUserTimeout apply unless the string says otherwise.
	Keepalive      KeepaliveDefaults
	TCPUserTimeout time.Duration
	// Getenv reads PG* and locale variables (os.Getenv when nil). An empty
	// value counts as unset.
	Getenv func(string) string
	// HomeDir is where ~/.pgpass, ~/.pg_service.conf and ~/.postgresql/ are
	// looked for (when empty: $HOME as Getenv gives it, else the OS user's).
	HomeDir string
	// Warn receives each warning as it happens (they are also in
	// Result.Warnings); may be nil.
	Warn func(string)
}

// Decision records what was done with one keyword that was set.
type Decision struct {
	Keyword string
	// Value as given, "********" for secrets (password, sslpassword, ...).
	Value string
	// Source is where the value came from: "conninfo", "service NAME
	// (FILE:LINE)" or "environment PGXXX".
	Source string
	Action Action
	Reason string
}

// Result is a connection string turned into a channel configuration.
type Result struct {
	// Config is ready for pgconn.ConnectConfig (Copy it before changing it).
	// Nil when Parse returns an error.
	Config *pgconn.Config
	// Decisions, one per keyword that was set (string, service or
	// environment), in the order of Keywords, then environment-only
	// settings (PGTZ, PGDATESTYLE, PGGEQO, PGREQUIRESSL).
	Decisions []Decision
	// Endpoint is "host:port[,host:port...]" for logs; no secrets.
	Endpoint string
	// PasswordSource says where the password came from: "conninfo",
	// "environment PGPASSWORD", "service NAME (FILE:LINE)", or "passfile
	// PATH:LINE" (with " (database replication)" for the fallback line);
	// "" when there is no password.
	PasswordSource string
	// Warnings: things libpq only warns about or does silently, said out
	// loud (a passfile with loose permissions, a CRL file that cannot be
	// loaded, ...). Never a secret.
	Warnings []string
}

// KeywordError is a keyword refused, or a value libpq would not accept.
// Callers branch on it with errors.As; several may be joined.
type KeywordError struct {
	Keyword string
	Msg     string
}

func (e *KeywordError) Error() string {
	if e.Keyword == "" {
		return "connection option: " + e.Msg
	}
	return fmt.Sprintf("connection option %q: %s", e.Keyword, e.Msg)
}

// Parse turns a libpq connection string into a pgconn configuration for the
// channel, deciding every keyword (see Keywords and docs/conninfo.md):
// nothing reaches the server as a startup parameter but application_name,
// client_encoding, options and libpq's PGTZ/PGDATESTYLE/PGGEQO.
//
// On a refusal the Result is returned too, with its Decisions and no
// Config; on a syntax or value error the Result is nil. No error, Decision,
// Endpoint or warning ever holds a secret value.
func Parse(conninfo string, opts Options) (*Result, error) {
	p := newParser(opts)
	kvs, err := ParseString(conninfo)
	if err != nil {
		return nil, err
	}
	if err := p.fromString(kvs); err != nil {
		return nil, err
	}
	if err := p.fromService(); err != nil {
		return nil, err
	}
	p.fromEnv()
	if err := p.validate(); err != nil {
		return nil, err
	}
	p.decideAll()
	res := p.result()
	if len(p.refusals) > 0 {
		return res, errors.Join(p.refusals...)
	}
	cfg, err := p.build()
	if err != nil {
		return nil, err
	}
	res = p.result()
	res.Config = cfg
	return res, nil
}

// setting is one keyword's value and where it came from.
type setting struct {
	value  string
	source string
}

type parser struct {
	opts   Options
	getenv func(string) string
	home   string

	s map[string]setting

	svcName, svcFile string

	decisions map[string]*Decision
	extra     []Decision // environment-only settings
	refusals  []error
	refused   map[string]bool
	warnings  []string

	// derived by validate
	targets   []target
	sslPolicy tlsPolicy

	password, passwordSource string
	user                     string
}

func newParser(opts Options) *parser {
	p := &parser{opts: opts, getenv: opts.Getenv, s: map[string]setting{}, decisions: map[string]*Decision{}, refused: map[string]bool{}}
	if p.getenv == nil {
		p.getenv = os.Getenv
	}
	p.home = opts.HomeDir
	if p.home == "" {
		p.home = p.getenv("HOME")
	}
	if p.home == "" {
		if u, err := user.Current(); err == nil {
			p.home = u.HomeDir
		}
	}
	return p
}

func (p *parser) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.warnings = append(p.warnings, msg)
	if p.opts.Warn != nil {
		p.opts.Warn(msg)
	}
}

func (p *parser) refuse(kw, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.refusals = append(p.refusals, &KeywordError{Keyword: kw, Msg: msg})
	p.refused[kw] = true
	if d, ok := p.decisions[kw]; ok {
		d.Action, d.Reason = Refused, msg
	}
}

// get returns a keyword's value ("" when unset).
func (p *parser) get(kw string) string { return p.s[kw].value }

func (p *parser) isSet(kw string) bool { _, ok := p.s[kw]; return ok }

// fromString records the string's keywords; a later one wins, as in libpq.
func (p *parser) fromString(kvs []KV) error {
	for i, kv := range kvs {
		if _, ok := keywordIndex[kv.Key]; !ok {
			// Name it unless it may be the rest of a password that needed
			// quotes ("password=a b=c") or is no keyword-looking word.
			prevSecret := i > 0 && IsSecret(kvs[i-1].Key) && !kvs[i-1].Quoted
			if plainKey(kv.Key) && !prevSecret {
				return &KeywordError{Keyword: kv.Key, Msg: fmt.Sprintf("invalid connection option %q (at position %d)", kv.Key, kv.Pos)}
			}
			return &KeywordError{Msg: fmt.Sprintf("invalid connection option at position %d (if it belongs to the value before it, quote that value)", kv.Pos)}
		}
		p.s[kv.Key] = setting{kv.Value, "conninfo"}
	}
	return nil
}

// fromService expands service (or PGSERVICE) as libpq's parseServiceInfo:
// its keywords fill what the string does not set.
func (p *parser) fromService() error {
	name, ok := p.s["service"]
	svc := name.value
	if !ok {
		svc = p.getenv("PGSERVICE")
	}
	if !ok && svc == "" {
		return nil
	}
	userFile := p.get("servicefile")
	if userFile == "" {
		userFile = p.getenv("PGSERVICEFILE")
	}
	kvs, file, err := findService(svc, userFile, p.getenv("PGSYSCONFDIR"), p.home)
	if err != nil {
		return err
	}
	p.svcName, p.svcFile = svc, file
	for _, kv := range kvs {
		if _, set := p.s[kv.Key]; !set {
			p.s[kv.Key] = setting{kv.Value, fmt.Sprintf("service %s (%s:%d)", svc, file, kv.Pos)}
		}
	}
	return nil
}

// envGUCs are the variables libpq sends as startup parameters
// (EnvironmentOptions), unless their value is "default".
var envGUCs = []struct{ env, param string }{
	{"PGDATESTYLE", "datestyle"},
	{"PGTZ", "timezone"},
	{"PGGEQO", "geqo"},
}

// fromEnv fills keywords set neither by the string nor by the service from
// libpq's environment variables.
func (p *parser) fromEnv() {
	for _, k := range Keywords {
		if k.Env == "" || p.isSet(k.Name) {
			continue
		}
		if v := p.getenv(k.Env); v != "" {
			p.s[k.Name] = setting{v, "environment " + k.Env}
		}
	}
	// libpq: PGREQUIRESSL=1 means sslmode=require when nothing sets sslmode.
	if !p.isSet("sslmode") {
		if v := p.getenv("PGREQUIRESSL"); v != "" && v[0] == '1' {
			p.s["sslmode"] = setting{"require", "environment PGREQUIRESSL"}
		}
	}
}

// result assembles the Result (decisions in table order).
func (p *parser) result() *Result {
	res := &Result{PasswordSource: p.passwordSource, Warnings: p.warnings, Endpoint: endpoint(p.targets)}
	for _, k := range Keywords {
		if d, ok := p.decisions[k.Name]; ok {
			res.Decisions = append(res.Decisions, *d)
		}
	}
	res.Decisions = append(res.Decisions, p.extra...)
	return res
}

// SortedKeywords returns the keyword names, sorted, for docs and tests.
func SortedKeywords() []string {
	out := make([]string, 0, len(Keywords))
	for _, k := range Keywords {
		out = append(out, k.Name)
	}
	sort.Strings(out)
	return out
}
