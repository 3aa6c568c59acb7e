package conninfo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// defaultSocketDir is libpq's DEFAULT_PGSOCKET_DIR on Debian: a connection
// through it matches "localhost" in the passfile.
const defaultSocketDir = "/var/run/postgresql"

// lookupPassword finds the password for the channel in a passfile as libpq's
// passwordFromFile does. The channel's database is matched first; when no
// line matches it, a line for database "replication" (what the walreceiver
// matches) is accepted: same role, and PostgreSQL passwords belong to roles,
// not databases. found says which ("" when nothing matched).
func lookupPassword(path, host, hostaddr, port, db, user string, warn func(string)) (pw, found string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", nil
		}
		warn(fmt.Sprintf("password file %q: %v", path, err))
		return "", "", nil
	}
	if !fi.Mode().IsRegular() {
		warn(fmt.Sprintf("password file %q is not a plain file", path))
		return "", "", nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		warn(fmt.Sprintf("password file %q has group or world access; permissions should be u=rw (0600) or less", path))
		return "", "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		warn(fmt.Sprintf("password file %q: %v", path, err))
		return "", "", nil
	}
	defer f.Close()

	// With hostaddr and no host, the address is what is matched; the
	// default socket directory matches "localhost", another socket
	// directory its own path, as in libpq.
	if host == "" && hostaddr != "" {
		host = hostaddr
	}
	if host == "" || host == defaultSocketDir {
		host = "localhost"
	}
	var replPW string
	replFound := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields, ok := splitPassLine(line)
		if !ok {
			continue // libpq ignores malformed lines
		}
		if !match(fields[0], host) || !match(fields[1], port) || !match(fields[3], user) {
			continue
		}
		if match(fields[2], db) {
			return fields[4], fmt.Sprintf("passfile %s:%d", path, lineNo), nil
		}
		if !replFound && match(fields[2], "replication") {
			replPW, replFound = fields[4], true
			found = fmt.Sprintf("passfile %s:%d (database replication)", path, lineNo)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("reading password file %q: %w", path, err)
	}
	if replFound {
		return replPW, found, nil
	}
	return "", "", nil
}

func match(field, value string) bool { return field == "*" || field == value }

// splitPassLine splits host:port:db:user:password with \: and \\ escapes.
func splitPassLine(line string) ([]string, bool) {
	var fields []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '\\' && i+1 < len(line) {
			i++
			cur.WriteByte(line[i])
			continue
		}
		if c == ':' && len(fields) < 4 {
			fields = append(fields, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	fields = append(fields, cur.String())
	return fields, len(fields) == 5
}
