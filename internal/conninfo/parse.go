package conninfo

import (
	"fmt"
	"strings"
)

// KV is one keyword and its value, in the order given.
type KV struct {
	Key, Value string
	// Pos is the 1-based byte offset in the connection string where the
	// keyword (or, in a URI, the component it came from) starts.
	Pos int
	// Quoted says the value was single-quoted (keyword=value form).
	Quoted bool
}

// SyntaxError is a connection string libpq would refuse to parse. It names
// the position (1-based byte offset) and, when it is safe to show, the
// keyword at fault; it never contains a value.
type SyntaxError struct {
	Pos     int
	Keyword string
	Msg     string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("connection string: %s (at position %d)", e.Msg, e.Pos)
}

const (
	uriPrefix      = "postgresql://"
	shortURIPrefix = "postgres://"
)

// isURI reports whether s is in the URI form, as libpq's uri_prefix_length.
func isURI(s string) bool {
	return strings.HasPrefix(s, uriPrefix) || strings.HasPrefix(s, shortURIPrefix)
}

// ParseString splits a connection string into keywords and values, in the
// keyword=value form or the URI form (postgresql://, postgres://), with
// libpq's rules (fe-connect.c: conninfo_parse, conninfo_uri_parse). It does
// not check keyword names: Parse does. Errors never quote values: they may
// be passwords.
func ParseString(s string) ([]KV, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		// libpq reads a C string and cannot see one; pgconn would send it.
		return nil, &SyntaxError{Pos: i + 1, Msg: "NUL byte in connection string"}
	}
	if isURI(s) {
		return parseURI(s)
	}
	return parseKeywordValue(s)
}

// isSpace is C's isspace in the C locale, what libpq uses.
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
			k := knownKey(key)
			msg := `missing "=" after a word`
			if k != "" {
				msg = fmt.Sprintf("missing \"=\" after %q", k)
			}
			return nil, &SyntaxError{Pos: start + 1, Keyword: k, Msg: msg}
		}
		i++ // '='
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		quoted := false
		if i < len(s) && s[i] == '\'' {
			quoted = true
			open := i
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
				k := knownKey(key)
				msg := "unterminated quoted string"
				if k != "" {
					msg = fmt.Sprintf("unterminated quoted string in the value of %q", k)
				}
				return nil, &SyntaxError{Pos: open + 1, Keyword: k, Msg: msg}
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
		out = append(out, KV{Key: key, Value: val.String(), Pos: start + 1, Quoted: quoted})
	}
}

// parseURI follows conninfo_uri_parse_options:
// scheme://[user[:password]@][netloc][:port][,...][/dbname][?param=value&...]
func parseURI(s string) ([]KV, error) {
	start := len(uriPrefix)
	if !strings.HasPrefix(s, uriPrefix) {
		start = len(shortURIPrefix)
	}
	p := start
	var out []KV
	add := func(key, raw string, pos int) error {
		v, err := percentDecode(raw, key, pos)
		if err != nil {
			return err
		}
		out = append(out, KV{Key: key, Value: v, Pos: pos})
		return nil
	}

	// user[:password]@, looked for before the first '/' as libpq does.
	at := p
	for at < len(s) && s[at] != '@' && s[at] != '/' {
		at++
	}
	if at < len(s) && s[at] == '@' {
		userinfo := s[p:at]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user != "" {
			if err := add("user", user, p+1); err != nil {
				return nil, err
			}
		}
		if hasPass && pass != "" {
			if err := add("password", pass, p+len(user)+2); err != nil {
				return nil, err
			}
		}
		p = at + 1
	}

	// netloc[:port][,netloc[:port]]... up to '/' or '?'. The lists keep one
	// entry per host, as libpq's hostbuf and portbuf, and are decoded whole.
	hostPos := p + 1
	var hosts, ports strings.Builder
	term := byte(0)
	for {
		if p < len(s) && s[p] == '[' {
			open := p
			p++
			end := strings.IndexByte(s[p:], ']')
			if end < 0 {
				return nil, &SyntaxError{Pos: open + 1, Keyword: "host", Msg: `end of string reached when looking for matching "]" in IPv6 host address in URI`}
			}
			if end == 0 {
				return nil, &SyntaxError{Pos: open + 1, Keyword: "host", Msg: "IPv6 host address may not be empty in URI"}
			}
			hosts.WriteString(s[p : p+end])
			p += end + 1
			if p < len(s) && strings.IndexByte(":/?,", s[p]) < 0 {
				return nil, &SyntaxError{Pos: p + 1, Keyword: "host", Msg: fmt.Sprintf(`unexpected character %q in URI (expected ":", "/", "?" or ",")`, s[p])}
			}
		} else {
			h := p
			for p < len(s) && strings.IndexByte(":/?,", s[p]) < 0 {
				p++
			}
			hosts.WriteString(s[h:p])
		}
		term = 0
		if p < len(s) {
			term = s[p]
		}
		if term == ':' {
			p++
			pstart := p
			for p < len(s) && strings.IndexByte("/?,", s[p]) < 0 {
				p++
			}
			ports.WriteString(s[pstart:p])
			term = 0
			if p < len(s) {
				term = s[p]
			}
		}
		if term != ',' {
			break
		}
		p++
		hosts.WriteByte(',')
		ports.WriteByte(',')
	}
	// An '@' here is a user name or password that needed percent-encoding
	// ("u:p@ss@h", "u:pa/ss@h"): refuse it without showing any of it.
	if strings.Contains(hosts.String(), "@") || strings.Contains(ports.String(), "@") {
		return nil, &SyntaxError{Pos: hostPos, Msg: strayAt}
	}
	if hosts.Len() > 0 {
		if err := add("host", hosts.String(), hostPos); err != nil {
			return nil, err
		}
	}
	if ports.Len() > 0 {
		if err := add("port", ports.String(), hostPos); err != nil {
			return nil, err
		}
	}

	if term == '/' {
		p++
		dbPos := p + 1
		end := strings.IndexByte(s[p:], '?')
		if end < 0 {
			end = len(s) - p
		}
		if strings.Contains(s[p:p+end], "@") {
			return nil, &SyntaxError{Pos: dbPos, Msg: strayAt}
		}
		if end > 0 { // an empty dbname is not set, as in libpq
			if err := add("dbname", s[p:p+end], dbPos); err != nil {
				return nil, err
			}
		}
		p += end
		term = 0
		if p < len(s) {
			term = s[p]
		}
	}
	if term == '?' {
		p++
		kvs, err := parseURIParams(s, p)
		if err != nil {
			return nil, err
		}
		out = append(out, kvs...)
	}
	return out, nil
}

// parseURIParams follows conninfo_uri_parse_params: key=value pairs joined
// by '&', both percent-decoded; "ssl=true" means sslmode=require.
func parseURIParams(s string, p int) ([]KV, error) {
	var out []KV
	for p < len(s) {
		kstart := p
		eq := -1
		for p < len(s) && s[p] != '&' {
			if s[p] == '=' {
				if eq >= 0 {
					return nil, &SyntaxError{Pos: p + 1, Keyword: safeRawKey(s[kstart:eq]), Msg: `extra key/value separator "=" in URI query parameter`}
				}
				eq = p
			}
			p++
		}
		if eq < 0 {
			return nil, &SyntaxError{Pos: kstart + 1, Keyword: safeRawKey(s[kstart:p]), Msg: `missing key/value separator "=" in URI query parameter`}
		}
		key, err := percentDecode(s[kstart:eq], "parameter name", kstart+1)
		if err != nil {
			return nil, err
		}
		val, err := percentDecode(s[eq+1:p], key, eq+2)
		if err != nil {
			return nil, err
		}
		if key == "ssl" && val == "true" {
			key, val = "sslmode", "require"
		}
		out = append(out, KV{Key: key, Value: val, Pos: kstart + 1})
		if p < len(s) {
			p++ // '&'
		}
	}
	return out, nil
}

const strayAt = `"@" outside the user information of the URI: percent-encode "@", "/" and ":" in a user name or password (%40, %2F, %3A)`

// safeRawKey is a raw query key as it may appear in an error.
func safeRawKey(k string) string { return knownKey(k) }

// knownKey returns k if it is a libpq keyword, else "": an error may name
// a keyword, but a word that is none may be the rest of a password that
// needed quotes ("password=a b") or percent-encoding ("?password=a&b").
func knownKey(k string) string {
	if _, ok := keywordIndex[k]; ok {
		return k
	}
	return ""
}

// percentDecode decodes %XX sequences as conninfo_uri_decode; what names
// the component for errors, pos is where the component starts.
func percentDecode(s, what string, pos int) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	if what != "parameter name" && knownKey(what) == "" {
		what = "query parameter"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
			return "", &SyntaxError{Pos: pos + i, Msg: fmt.Sprintf("invalid percent-encoded token in URI %s", what)}
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if v == 0 {
			return "", &SyntaxError{Pos: pos + i, Msg: fmt.Sprintf("forbidden value %%00 in percent-encoded URI %s", what)}
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

// plainKey reports whether k looks like a keyword (and so may be shown):
// ASCII letters, digits and underscores, at most 64 bytes.
func plainKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// quote renders a value for a keyword=value string, as libpq reads it back.
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\=") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}
