package conninfo

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// defaultSocketDir is libpq's DEFAULT_PGSOCKET_DIR on Debian: the host of
// an empty host entry, and "localhost" for the passfile.
const defaultSocketDir = "/var/run/postgresql"

// target is one entry of the host list.
type target struct {
	host string // as given; "" when only hostaddr (or nothing) is given
	addr string // hostaddr, "" if none
	port uint16
}

// isUnixPath is libpq's is_unixsock_path (abstract sockets start with @).
func isUnixPath(h string) bool { return strings.HasPrefix(h, "/") || strings.HasPrefix(h, "@") }

// dialHost is the host handed to pgconn for this entry.
func (t target) dialHost() string {
	switch {
	case t.addr != "" && (t.host == "" || isUnixPath(t.host)):
		return t.addr
	case t.host == "":
		return defaultSocketDir
	}
	return t.host
}

// passHost is the host matched in the passfile: host, else hostaddr, and
// "localhost" for the default socket directory, as libpq.
func (t target) passHost() string {
	h := t.host
	if h == "" {
		h = t.addr
	}
	if h == "" || h == defaultSocketDir {
		return "localhost"
	}
	return h
}

// tcp reports whether pgconn reaches this entry over TCP (and so TLS).
func (t target) tcp() bool { return !strings.HasPrefix(t.dialHost(), "/") }

func endpoint(ts []target) string {
	var eps []string
	seen := map[string]bool{}
	for _, t := range ts {
		name := t.host
		if name == "" {
			name = t.dialHost()
		}
		ep := net.JoinHostPort(name, strconv.Itoa(int(t.port)))
		if !seen[ep] {
			seen[ep] = true
			eps = append(eps, ep)
		}
	}
	return strings.Join(eps, ",")
}

// parseInt is libpq's parse_int_param: strtol in base 10 with leading and
// trailing white space, the whole value, within int32.
func parseInt(v string) (int, bool) {
	t := strings.TrimLeft(v, " \t\n\r\f\v")
	t = strings.TrimRight(t, " \t\n\r\f\v")
	if t == "" || strings.ContainsAny(t, " \t\n\r\f\v") {
		return 0, false
	}
	n, err := strconv.ParseInt(t, 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

var enumValues = map[string][]string{
	"sslmode":              {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
	"sslnegotiation":       {"postgres", "direct"},
	"sslcertmode":          {"disable", "allow", "require"},
	"channel_binding":      {"disable", "prefer", "require"},
	"gssencmode":           {"disable", "prefer", "require"},
	"target_session_attrs": {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"},
	"load_balance_hosts":   {"disable", "random"},
	"min_protocol_version": {"", "3.0", "3.2", "latest"},
	"max_protocol_version": {"", "3.0", "3.2", "latest"},
}

var tlsVersionNames = []string{"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

// validate checks every value as libpq would (an invalid one is an error,
// not a decision) and derives the host list.
func (p *parser) validate() error {
	for kw, st := range p.s {
		if strings.IndexByte(st.value, 0) >= 0 {
			return &KeywordError{Keyword: kw, Msg: "NUL byte in value"}
		}
	}
	for kw, allowed := range enumValues {
		st, ok := p.s[kw]
		if !ok {
			continue
		}
		found := false
		for _, a := range allowed {
			if st.value == a {
				found = true
			}
		}
		if !found {
			return &KeywordError{Keyword: kw, Msg: fmt.Sprintf("invalid value %q (%s)", st.value, strings.Join(nonEmpty(allowed), ", "))}
		}
	}
	for _, kw := range []string{"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"} {
		if st, ok := p.s[kw]; ok {
			if _, ok := parseInt(st.value); !ok {
				return &KeywordError{Keyword: kw, Msg: fmt.Sprintf("invalid integer value %q", st.value)}
			}
		}
	}
	// libpq hands these to setsockopt, which Linux refuses outside these
	// ranges, and the connection fails: fail here instead.
	for kw, max := range map[string]int{"keepalives_idle": 32767, "keepalives_interval": 32767, "keepalives_count": 127} {
		if st, ok := p.s[kw]; ok {
			if n, _ := parseInt(st.value); n < 1 || n > max {
				return &KeywordError{Keyword: kw, Msg: fmt.Sprintf("%d is out of range 1 to %d (Linux refuses it, and libpq's connection fails)", n, max)}
			}
		}
	}
	for _, kw := range []string{"ssl_min_protocol_version", "ssl_max_protocol_version"} {
		if v := p.get(kw); v != "" && tlsVersion(v) == 0 {
			return &KeywordError{Keyword: kw, Msg: fmt.Sprintf("invalid value %q (%s)", v, strings.Join(tlsVersionNames, ", "))}
		}
	}
	lo, hi := tlsVersion(p.get("ssl_min_protocol_version")), tlsVersion(p.get("ssl_max_protocol_version"))
	if lo == 0 {
		lo = tls.VersionTLS12 // libpq's default minimum
	}
	if hi != 0 && lo > hi {
		return &KeywordError{Keyword: "ssl_max_protocol_version", Msg: "invalid SSL protocol version range: below ssl_min_protocol_version"}
	}
	return p.validateHosts()
}

func nonEmpty(list []string) []string {
	var out []string
	for _, s := range list {
		if s != "" {
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

// validateHosts builds the host list as libpq's connectOptions2 does.
// Values of host and port are not quoted in errors: in a malformed URI a
// misplaced password can land there.
func (p *parser) validateHosts() error {
	hosts := splitList(p.get("host"))
	addrs := splitList(p.get("hostaddr"))
	for _, h := range hosts {
		if strings.HasPrefix(h, "@") {
			return &KeywordError{Keyword: "host", Msg: "abstract Unix sockets (@name) are not supported by pgconn"}
		}
		if strings.Contains(h, "@") {
			return &KeywordError{Keyword: "host", Msg: `a host name cannot contain "@" (a password with "@" in a URI must be written %40)`}
		}
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		if _, err := netip.ParseAddr(a); err != nil {
			return &KeywordError{Keyword: "hostaddr", Msg: fmt.Sprintf("could not parse network address %q: not a numeric IP address", a)}
		}
	}
	n := len(hosts)
	switch {
	case n == 0 && len(addrs) == 0:
		n = 1
	case n == 0:
		n = len(addrs)
	case len(addrs) > 0 && len(addrs) != n:
		return &KeywordError{Keyword: "hostaddr", Msg: fmt.Sprintf("could not match %d host names to %d hostaddr values", n, len(addrs))}
	}
	ports := splitList(p.get("port"))
	if len(ports) > 1 && len(ports) != n {
		return &KeywordError{Keyword: "port", Msg: fmt.Sprintf("could not match %d port numbers to %d hosts", len(ports), n)}
	}
	p.targets = make([]target, n)
	for i := range p.targets {
		t := &p.targets[i]
		if i < len(hosts) {
			t.host = hosts[i]
		}
		if i < len(addrs) {
			t.addr = addrs[i]
		}
		ps := ""
		if len(ports) == 1 {
			ps = ports[0]
		} else if len(ports) > 1 {
			ps = ports[i]
		}
		t.port = 5432
		if ps != "" {
			v, ok := parseInt(ps)
			if !ok || v < 1 || v > 65535 {
				return &KeywordError{Keyword: "port", Msg: fmt.Sprintf("invalid port number in entry %d (1 to 65535)", i+1)}
			}
			t.port = uint16(v)
		}
	}
	return nil
}
