package conninfo

import (
	"fmt"
	"strings"
)

// KV is one keyword and its value, in the order given.
type KV struct {
	Key, Value string
}

// SyntaxError is a connection string libpq would refuse to parse.
type SyntaxError struct {
	Msg string
}

func (e *SyntaxError) Error() string { return "connection string: " + e.Msg }

// ParseString splits a connection string into keywords and values, in the
// keyword=value form or the URI form (postgresql://, postgres://), following
// libpq's conninfo_parse and conninfo_uri_parse. It does not check keyword
// names (Parse does). Values are never put into error messages: they may be
// passwords.
func ParseString(s string) ([]KV, error) {
	if strings.HasPrefix(s, "postgresql://") || strings.HasPrefix(s, "postgres://") {
		return parseURI(s)
	}
	return parseKeywordValue(s)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func parseKeywordValue(s string) ([]KV, error) {
	var out []KV
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, &SyntaxError{Msg: fmt.Sprintf("missing \"=\" after %q", key)}
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' {
					i++
					if i < len(s) {
						val.WriteByte(s[i])
						i++
					}
					continue
				}
				if c == '\'' {
					i++
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, &SyntaxError{Msg: fmt.Sprintf("unterminated quoted string for %q", key)}
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
					if i < len(s) {
						val.WriteByte(s[i])
						i++
					}
					continue
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, KV{Key: key, Value: val.String()})
	}
}

func parseURI(s string) ([]KV, error) {
	rest := s[strings.Index(s, "://")+3:]
	var out []KV

	// user[:password]@, looked for before the first '/' as libpq does.
	if at := strings.IndexAny(rest, "@/"); at >= 0 && rest[at] == '@' {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user != "" {
			v, err := percentDecode(user, "user")
			if err != nil {
				return nil, err
			}
			out = append(out, KV{"user", v})
		}
		if hasPass {
			v, err := percentDecode(pass, "password")
			if err != nil {
				return nil, err
			}
			out = append(out, KV{"password", v})
		}
	}

	// host[:port][,host[:port]]... up to '/' or '?'
	var hosts, ports []string
	anyPort := false
	for {
		var host string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, &SyntaxError{Msg: "end of IPv6 host address (\"]\") missing in URI"}
			}
			host = rest[1:end]
			if host == "" {
				return nil, &SyntaxError{Msg: "IPv6 host address may not be empty in URI"}
			}
			rest = rest[end+1:]
			if rest != "" && strings.IndexByte(":/?,", rest[0]) < 0 {
				return nil, &SyntaxError{Msg: "unexpected character after IPv6 host address in URI"}
			}
		} else {
			end := strings.IndexAny(rest, ":/?,")
			if end < 0 {
				end = len(rest)
			}
			h, err := percentDecode(rest[:end], "host")
			if err != nil {
				return nil, err
			}
			host = h
			rest = rest[end:]
		}
		port := ""
		if strings.HasPrefix(rest, ":") {
			end := strings.IndexAny(rest[1:], "/?,")
			if end < 0 {
				end = len(rest) - 1
			}
			port = rest[1 : 1+end]
			rest = rest[1+end:]
			anyPort = true
		}
		hosts = append(hosts, host)
		ports = append(ports, port)
		if !strings.HasPrefix(rest, ",") {
			break
		}
		rest = rest[1:]
	}
	if len(hosts) > 1 || hosts[0] != "" {
		out = append(out, KV{"host", strings.Join(hosts, ",")})
	}
	if anyPort {
		out = append(out, KV{"port", strings.Join(ports, ",")})
	}

	if strings.HasPrefix(rest, "/") {
		rest = rest[1:]
		end := strings.IndexByte(rest, '?')
		if end < 0 {
			end = len(rest)
		}
		if end > 0 {
			db, err := percentDecode(rest[:end], "dbname")
			if err != nil {
				return nil, err
			}
			out = append(out, KV{"dbname", db})
		}
		rest = rest[end:]
	}
	if strings.HasPrefix(rest, "?") {
		rest = rest[1:]
		for _, param := range strings.Split(rest, "&") {
			if param == "" {
				continue
			}
			k, v, ok := strings.Cut(param, "=")
			if !ok {
				return nil, &SyntaxError{Msg: fmt.Sprintf("missing key/value separator \"=\" in URI query parameter %q", cutForError(param))}
			}
			if strings.Contains(v, "=") {
				return nil, &SyntaxError{Msg: fmt.Sprintf("extra key/value separator \"=\" in URI query parameter %q", k)}
			}
			key, err := percentDecode(k, "parameter name")
			if err != nil {
				return nil, err
			}
			val, err := percentDecode(v, key)
			if err != nil {
				return nil, err
			}
			if key == "ssl" && val == "true" {
				key, val = "sslmode", "require"
			}
			out = append(out, KV{key, val})
		}
	} else if rest != "" {
		return nil, &SyntaxError{Msg: "unexpected text after the host list in URI"}
	}
	return out, nil
}

func cutForError(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// percentDecode decodes %XX sequences; what names the field for errors.
func percentDecode(s, what string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
			return "", &SyntaxError{Msg: fmt.Sprintf("invalid percent-encoded token in URI %s", what)}
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if v == 0 {
			return "", &SyntaxError{Msg: fmt.Sprintf("forbidden value %%00 in percent-encoded URI %s", what)}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// quote renders a value for a keyword=value string.
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\=") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}
