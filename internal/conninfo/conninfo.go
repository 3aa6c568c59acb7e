package conninfo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"
)

// KeepaliveDefaults are the TCP keepalive settings used when the connection
// string gives none. Zero values leave the system default.
type KeepaliveDefaults struct {
	Idle, Interval time.Duration
	Count          int
}

// Options are the channel's own settings and the environment to read.
type Options struct {
	// Database is the database the channel connects to ("postgres" when
	// empty).
	Database string
	// ApplicationName for pg_stat_activity ("standbyd" when empty).
	ApplicationName string
	// ConnectTimeout per host when the string gives no connect_timeout.
	ConnectTimeout time.Duration
	// TCPUserTimeout and Keepalive apply unless the string says otherwise.
	TCPUserTimeout time.Duration
	Keepalive      KeepaliveDefaults
	// Getenv reads PG* variables (os.Getenv when nil).
	Getenv func(string) string
	// HomeDir is where ~/.pgpass and ~/.pg_service.conf are looked for (the
	// user's home directory when empty).
	HomeDir string
	// Warn receives warnings (a passfile with loose permissions); may be nil.
	Warn func(string)
}

// Decision records what was done with one keyword of the input.
type Decision struct {
	Keyword string
	Value   string // "********" for secrets
	Source  string // "conninfo", "service <name>", "environment PGX"
	Action  Action
	Reason  string
}

// Result is a parsed connection string.
type Result struct {
	// Config is ready for pgconn.ConnectConfig.
	Config *pgconn.Config
	// Decisions, one per keyword that was set, in keyword order.
	Decisions []Decision
	// Endpoint is "host:port[,host:port]" for logs (no secrets).
	Endpoint string
	// PasswordSource says where the password came from ("" when none).
	PasswordSource string
}

// KeywordError is a keyword standbyd refuses or cannot understand.
type KeywordError struct {
	Keyword string
	Msg     string
}

func (e *KeywordError) Error() string {
	return fmt.Sprintf("connection keyword %q: %s", e.Keyword, e.Msg)
}

type setting struct {
	value, source string
}

// Parse turns a libpq connection string into a pgconn configuration for the
// channel, deciding every keyword (see Keywords and docs/conninfo.md).
func Parse(conninfo string, opts Options) (*Result, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	home := opts.HomeDir
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}

	kvs, err := ParseString(conninfo)
	if err != nil {
		return nil, err
	}
	s := map[string]setting{}
	for _, kv := range kvs {
		if _, ok := keywordIndex[kv.Key]; !ok {
			return nil, &KeywordError{Keyword: kv.Key, Msg: "invalid connection option (not a libpq keyword)"}
		}
		s[kv.Key] = setting{kv.Value, "conninfo"}
	}

	// Service file keywords fill what the string does not set, then the
	// environment fills what neither sets (libpq's order).
	service, servicefile := s["service"].value, s["servicefile"].value
	if service == "" {
		service = getenv("PGSERVICE")
	}
	if servicefile == "" {
		servicefile = getenv("PGSERVICEFILE")
	}
	if service != "" {
		svc, err := readService(service, servicefile, getenv, home)
		if err != nil {
			return nil, err
		}
		for _, kv := range svc {
			if _, ok := keywordIndex[kv.Key]; !ok {
				return nil, &KeywordError{Keyword: kv.Key, Msg: fmt.Sprintf("invalid connection option in service %q", service)}
			}
			if _, set := s[kv.Key]; !set {
				s[kv.Key] = setting{kv.Value, "service " + service}
			}
		}
	}
	for _, k := range Keywords {
		if k.Env == "" {
			continue
		}
		if _, set := s[k.Name]; set {
			continue
		}
		if v := getenv(k.Env); v != "" {
			s[k.Name] = setting{v, "environment " + k.Env}
		}
	}

	res := &Result{}
	var refusals []error
	for _, k := range Keywords {
		st, ok := s[k.Name]
		if !ok {
			continue
		}
		d := Decision{Keyword: k.Name, Value: st.value, Source: st.source, Action: k.Action, Reason: k.How}
		if k.secret {
			d.Value = "********"
		}
		if k.refuseV != nil {
			if msg := k.refuseV(st.value); msg != "" {
				d.Action, d.Reason = Refused, msg
				refusals = append(refusals, &KeywordError{Keyword: k.Name, Msg: msg})
			} else if k.Action == Refused {
				d.Action, d.Reason = Ignored, "empty"
			}
		}
		res.Decisions = append(res.Decisions, d)
	}
	if len(refusals) > 0 {
		return res, errors.Join(refusals...)
	}

	cfg, err := buildConfig(s, opts, getenv, home, warn, res)
	if err != nil {
		return res, err
	}
	res.Config = cfg
	return res, nil
}

func buildConfig(s map[string]setting, opts Options, getenv func(string) string, home string, warn func(string), res *Result) (*pgconn.Config, error) {
	db := opts.Database
	if db == "" {
		db = "postgres"
	}
	app := opts.ApplicationName
	if app == "" {
		app = "standbyd"
	}

	// hostaddr: dial these addresses; host stays the name.
	hosts := splitList(s["host"].value)
	addrs := splitList(s["hostaddr"].value)
	if len(addrs) > 0 {
		if len(hosts) == 0 {
			hosts = addrs
		} else if len(hosts) != len(addrs) {
			return nil, &KeywordError{Keyword: "hostaddr", Msg: fmt.Sprintf("%d addresses for %d hosts", len(addrs), len(hosts))}
		}
	}
	if len(hosts) == 0 {
		hosts = []string{"/var/run/postgresql"} // libpq's default socket directory on Debian
	}
	hostaddr := map[string]string{}
	for i, a := range addrs {
		if net.ParseIP(a) == nil {
			return nil, &KeywordError{Keyword: "hostaddr", Msg: "not a numeric IP address"}
		}
		hostaddr[hosts[i]] = a
	}

	// The string handed to pgconn: only keys it understands, every one
	// explicit so that pgconn's own environment reading changes nothing.
	var b strings.Builder
	add := func(k, v string) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quote(v))
		b.WriteByte(' ')
	}
	add("host", strings.Join(hosts, ","))
	if p := s["port"].value; p != "" {
		add("port", p)
	}
	if u := s["user"].value; u != "" {
		add("user", u)
	} else if u, err := user.Current(); err == nil {
		add("user", u.Username)
	}
	add("dbname", db)
	for _, k := range Keywords {
		if k.pgconn {
			if st, ok := s[k.Name]; ok && st.value != "" {
				add(k.Name, st.value)
			}
		}
	}
	if _, ok := s["connect_timeout"]; !ok && opts.ConnectTimeout > 0 {
		add("connect_timeout", strconv.Itoa(int((opts.ConnectTimeout+time.Second-1)/time.Second)))
	}
	// No passfile for pgconn: ours below checks permissions as libpq does.
	add("passfile", os.DevNull)
	cfg, err := pgconn.ParseConfig(b.String())
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", redactErr(err, s))
	}

	// Password: the string (or PGPASSWORD), else the passfile.
	cfg.Password = ""
	if st, ok := s["password"]; ok && st.value != "" {
		cfg.Password = st.value
		res.PasswordSource = st.source
	} else {
		pf := s["passfile"].value
		if pf == "" {
			pf = filepath.Join(home, ".pgpass")
		}
		port := firstNonEmpty(splitList(s["port"].value), "5432")
		pw, found, err := lookupPassword(pf, hosts[0], hostaddr[hosts[0]], port, db, cfg.User, warn)
		if err != nil {
			return nil, err
		}
		if found != "" {
			cfg.Password = pw
			res.PasswordSource = found
		}
	}

	// Startup parameters: exactly these, whatever pgconn or the environment
	// would have added.
	cfg.RuntimeParams = map[string]string{"application_name": app, "client_encoding": "UTF8"}
	if o := s["options"].value; o != "" {
		cfg.RuntimeParams["options"] = o
	}

	if err := applyTLSVersions(cfg, s); err != nil {
		return nil, err
	}
	dialer, err := newDialer(s, opts)
	if err != nil {
		return nil, err
	}
	peer := s["requirepeer"].value
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if peer != "" && network == "unix" {
			if err := checkPeer(c, peer); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	if len(hostaddr) > 0 {
		lookup := cfg.LookupFunc
		cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
			if a, ok := hostaddr[host]; ok {
				return []string{a}, nil
			}
			return lookup(ctx, host)
		}
	}

	var eps []string
	eps = append(eps, endpoint(cfg.Host, cfg.Port))
	for _, f := range cfg.Fallbacks {
		ep := endpoint(f.Host, f.Port)
		if len(eps) == 0 || eps[len(eps)-1] != ep {
			eps = append(eps, ep)
		}
	}
	res.Endpoint = strings.Join(dedupe(eps), ",")
	return cfg, nil
}

func endpoint(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func firstNonEmpty(list []string, def string) string {
	if len(list) > 0 && list[0] != "" {
		return list[0]
	}
	return def
}

// redactErr keeps secrets out of pgconn's errors, which quote the string.
func redactErr(err error, s map[string]setting) error {
	msg := err.Error()
	for name, st := range s {
		if IsSecret(name) && st.value != "" {
			msg = strings.ReplaceAll(msg, st.value, "********")
		}
	}
	return errors.New(msg)
}

var tlsVersions = map[string]uint16{
	"TLSv1":   tls.VersionTLS10,
	"TLSv1.1": tls.VersionTLS11,
	"TLSv1.2": tls.VersionTLS12,
	"TLSv1.3": tls.VersionTLS13,
}

func applyTLSVersions(cfg *pgconn.Config, s map[string]setting) error {
	min, max := uint16(tls.VersionTLS12), uint16(0)
	if v, ok := s["ssl_min_protocol_version"]; ok && v.value != "" {
		x, ok := tlsVersions[v.value]
		if !ok {
			return &KeywordError{Keyword: "ssl_min_protocol_version", Msg: fmt.Sprintf("invalid value %q (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)", v.value)}
		}
		min = x
	}
	if v, ok := s["ssl_max_protocol_version"]; ok && v.value != "" {
		x, ok := tlsVersions[v.value]
		if !ok {
			return &KeywordError{Keyword: "ssl_max_protocol_version", Msg: fmt.Sprintf("invalid value %q (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)", v.value)}
		}
		max = x
	}
	if max != 0 && max < min {
		return &KeywordError{Keyword: "ssl_max_protocol_version", Msg: "lower than ssl_min_protocol_version"}
	}
	set := func(t *tls.Config) {
		if t != nil {
			t.MinVersion, t.MaxVersion = min, max
		}
	}
	set(cfg.TLSConfig)
	for _, f := range cfg.Fallbacks {
		set(f.TLSConfig)
	}
	return nil
}

// newDialer builds the dialer with the keepalive and TCP_USER_TIMEOUT
// settings: the string's values, else the channel's defaults.
func newDialer(s map[string]setting, opts Options) (*net.Dialer, error) {
	seconds := func(name string, def time.Duration) (time.Duration, error) {
		v, ok := s[name]
		if !ok || v.value == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v.value)
		if err != nil || n < 0 {
			return 0, &KeywordError{Keyword: name, Msg: fmt.Sprintf("invalid integer value %q", v.value)}
		}
		return time.Duration(n) * time.Second, nil
	}
	idle, err := seconds("keepalives_idle", opts.Keepalive.Idle)
	if err != nil {
		return nil, err
	}
	intvl, err := seconds("keepalives_interval", opts.Keepalive.Interval)
	if err != nil {
		return nil, err
	}
	count := opts.Keepalive.Count
	if v, ok := s["keepalives_count"]; ok && v.value != "" {
		if count, err = strconv.Atoi(v.value); err != nil || count < 0 {
			return nil, &KeywordError{Keyword: "keepalives_count", Msg: fmt.Sprintf("invalid integer value %q", v.value)}
		}
	}
	utoMs := int(opts.TCPUserTimeout / time.Millisecond)
	if v, ok := s["tcp_user_timeout"]; ok && v.value != "" {
		if utoMs, err = strconv.Atoi(v.value); err != nil || utoMs < 0 {
			return nil, &KeywordError{Keyword: "tcp_user_timeout", Msg: fmt.Sprintf("invalid integer value %q", v.value)}
		}
	}
	enable := true
	if v, ok := s["keepalives"]; ok && v.value != "" {
		n, err := strconv.Atoi(v.value)
		if err != nil {
			return nil, &KeywordError{Keyword: "keepalives", Msg: fmt.Sprintf("invalid integer value %q", v.value)}
		}
		enable = n != 0
	}
	d := &net.Dialer{}
	if enable {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: idle, Interval: intvl, Count: count}
		if idle == 0 {
			d.KeepAliveConfig.Idle = -1 // system default
		}
		if intvl == 0 {
			d.KeepAliveConfig.Interval = -1
		}
		if count == 0 {
			d.KeepAliveConfig.Count = -1
		}
	} else {
		d.KeepAlive = -1
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: false}
	}
	if utoMs > 0 {
		d.Control = func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, utoMs)
			})
			if err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("setting TCP_USER_TIMEOUT: %w", serr)
			}
			return nil
		}
	}
	return d, nil
}

// checkPeer verifies the OS user of the server process at the other end of
// a Unix socket, as libpq's requirepeer.
func checkPeer(c net.Conn, want string) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("requirepeer: could not get peer credentials: %w", cerr)
	}
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil {
		return fmt.Errorf("requirepeer: could not look up local user ID %d: %w", cred.Uid, err)
	}
	if u.Username != want {
		return &KeywordError{Keyword: "requirepeer", Msg: fmt.Sprintf("requirepeer specifies %q, but actual peer user name is %q", want, u.Username)}
	}
	return nil
}

// SortedKeywords returns the keyword names, for docs and tests.
func SortedKeywords() []string {
	var out []string
	for _, k := range Keywords {
		out = append(out, k.Name)
	}
	sort.Strings(out)
	return out
}
