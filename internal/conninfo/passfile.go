package conninfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// passMatch is the passfile line that gives the password.
type passMatch struct {
	password    string
	line        int
	replication bool // matched database "replication", not the channel's
}

// lookupPassword finds the password for one host in a passfile, as libpq's
// passwordFromFile: the file is skipped (with a warning) when it is not a
// plain file or has any group or world permission; lines are
// host:port:database:user:password, "*" alone matches anything, "\" escapes
// the next character, the first matching line wins.
//
// The channel's database is matched first. When no line matches it, the
// first line for database "replication" is accepted: that is the line the
// walreceiver uses (same role, and PostgreSQL passwords belong to roles,
// not databases).
func lookupPassword(path, host, port, db, user string) (*passMatch, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "" // libpq: a passfile that cannot be stat'ed is ignored
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Sprintf("password file %q is not a plain file: ignored, as libpq does", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Sprintf("password file %q has group or world access; permissions should be u=rw (0600) or less: ignored, as libpq does", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Sprintf("password file %q cannot be opened (%v): ignored", path, err)
	}
	defer f.Close()

	var repl *passMatch
	r := bufio.NewReader(f)
	for lineNo := 1; ; lineNo++ {
		line, rerr := r.ReadString('\n')
		if line == "" && rerr != nil {
			if rerr != io.EOF {
				return nil, fmt.Sprintf("password file %q: %v", path, rerr)
			}
			break
		}
		if line[0] == '#' {
			continue
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		rest, ok := matchFields(line, host, port)
		if !ok {
			continue
		}
		if pw, ok := matchDBUser(rest, db, user); ok {
			return &passMatch{password: pw, line: lineNo}, ""
		}
		if repl == nil {
			if pw, ok := matchDBUser(rest, "replication", user); ok {
				repl = &passMatch{password: pw, line: lineNo, replication: true}
			}
		}
		if rerr != nil {
			break
		}
	}
	return repl, ""
}

func matchFields(line, host, port string) (string, bool) {
	t, ok := pwdfMatch(line, host)
	if !ok {
		return "", false
	}
	return pwdfMatch(t, port)
}

func matchDBUser(rest, db, user string) (string, bool) {
	t, ok := pwdfMatch(rest, db)
	if !ok {
		return "", false
	}
	if t, ok = pwdfMatch(t, user); !ok {
		return "", false
	}
	return passwordField(t), true
}

// pwdfMatch is libpq's pwdfMatchesString: does the field at the start of
// buf match token ("*" alone, or the token with "\" escapes)? It returns
// what follows the field's ':'.
func pwdfMatch(buf, token string) (string, bool) {
	if strings.HasPrefix(buf, "*:") {
		return buf[2:], true
	}
	i, j := 0, 0
	for i < len(buf) {
		bslash := false
		if buf[i] == '\\' {
			i++
			bslash = true
			if i >= len(buf) {
				return "", false
			}
		}
		if buf[i] == ':' && j == len(token) && !bslash {
			return buf[i+1:], true
		}
		if j == len(token) || buf[i] != token[j] {
			return "", false
		}
		i++
		j++
	}
	return "", false
}

// passwordField de-escapes the password, which ends at the first unescaped
// ':' (libpq).
func passwordField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && s[i] != ':'; i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
