package conninfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// defaultSysconfDir is where Debian's libpq looks for pg_service.conf when
// PGSYSCONFDIR is not set.
const defaultSysconfDir = "/etc/postgresql-common"

// ServiceError is a service that cannot be found or read.
type ServiceError struct {
	Service string
	File    string // "" when not found anywhere
	Line    int
	Msg     string
}

func (e *ServiceError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("service %q: %s", e.Service, e.Msg)
	}
	if e.Line == 0 {
		return fmt.Sprintf("service %q: %s: %s", e.Service, e.File, e.Msg)
	}
	return fmt.Sprintf("service %q: %s, line %d: %s", e.Service, e.File, e.Line, e.Msg)
}

// findService returns the keywords of service name as libpq's
// parseServiceInfo: the user file (servicefile, else PGSERVICEFILE, else
// ~/.pg_service.conf) first, then sysconfdir/pg_service.conf; the first
// file that defines the service wins. KV.Pos is the line number.
func findService(name, userFile, sysconfDir, home string) ([]KV, string, error) {
	var tried []string
	if userFile == "" && home != "" {
		userFile = filepath.Join(home, ".pg_service.conf")
	}
	if sysconfDir == "" {
		sysconfDir = defaultSysconfDir
	}
	for _, f := range []string{userFile, filepath.Join(sysconfDir, "pg_service.conf")} {
		if f == "" {
			continue
		}
		tried = append(tried, f)
		if _, err := os.Stat(f); err != nil {
			continue // libpq: a file that cannot be stat'ed is skipped
		}
		kvs, found, err := serviceFromFile(f, name)
		if err != nil {
			return nil, "", err
		}
		if found {
			return kvs, f, nil
		}
	}
	return nil, "", &ServiceError{Service: name, Msg: fmt.Sprintf("definition of service not found (looked in %s)", strings.Join(tried, ", "))}
}

// serviceFromFile reads one service file as libpq's parseServiceFile: lines
// are trimmed of white space at both ends; "#" starts a comment line; the
// first "[name]" group is the service, up to the next group; its lines are
// keyword=value with nothing trimmed around "=", the first occurrence of a
// keyword wins. Values are never put in errors.
func serviceFromFile(path, name string) ([]KV, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, &ServiceError{Service: name, File: path, Msg: errors.Unwrap(err).Error()}
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []KV
	seen := map[string]bool{}
	found := false
	for lineNo := 1; ; lineNo++ {
		line, rerr := r.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, false, &ServiceError{Service: name, File: path, Msg: rerr.Error()}
		}
		if line == "" && rerr == io.EOF {
			break
		}
		line = strings.TrimRight(line, " \t\n\r\f\v")
		line = strings.TrimLeft(line, " \t\n\r\f\v")
		bad := func(msg string) error {
			return &ServiceError{Service: name, File: path, Line: lineNo, Msg: msg}
		}
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '[':
			if found {
				return out, true, nil // end of the service's group
			}
			found = strings.HasPrefix(line[1:], name) && len(line) > len(name)+1 && line[len(name)+1] == ']'
		case found:
			if strings.HasPrefix(line, "ldap") {
				return nil, false, bad("LDAP lookup of connection parameters is not supported by standbyd")
			}
			if strings.IndexByte(line, 0) >= 0 {
				return nil, false, bad("NUL byte")
			}
			key, val, ok := strings.Cut(line, "=")
			if !ok {
				return nil, false, bad("syntax error (no \"=\")")
			}
			switch key {
			case "service", "servicefile":
				return nil, false, bad(fmt.Sprintf("nested %q specifications not supported in service file", key))
			}
			if _, known := keywordIndex[key]; !known {
				if plainKey(key) {
					return nil, false, bad(fmt.Sprintf("syntax error: invalid connection option %q", key))
				}
				return nil, false, bad("syntax error: not a connection option")
			}
			if !seen[key] {
				seen[key] = true
				out = append(out, KV{Key: key, Value: val, Pos: lineNo})
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	return out, found, nil
}
