package conninfo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// defaultSysconfDir is where Debian's libpq looks for pg_service.conf.
const defaultSysconfDir = "/etc/postgresql-common"

// readService returns the keywords of service name, from the user's service
// file (servicefile, else ~/.pg_service.conf) and then the system one
// (PGSYSCONFDIR/pg_service.conf), like libpq: the first file that has the
// service wins.
func readService(name, servicefile string, getenv func(string) string, home string) ([]KV, error) {
	var files []string
	if servicefile != "" {
		files = append(files, servicefile)
	} else if home != "" {
		files = append(files, filepath.Join(home, ".pg_service.conf"))
	}
	sysconf := getenv("PGSYSCONFDIR")
	if sysconf == "" {
		sysconf = defaultSysconfDir
	}
	files = append(files, filepath.Join(sysconf, "pg_service.conf"))
	for _, f := range files {
		kvs, found, err := serviceFromFile(f, name)
		if err != nil {
			return nil, err
		}
		if found {
			return kvs, nil
		}
	}
	return nil, &KeywordError{Keyword: "service", Msg: fmt.Sprintf("definition of service %q not found (looked in %s)", name, strings.Join(files, ", "))}
}

func serviceFromFile(path, name string) ([]KV, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("service file %s: %w", path, err)
	}
	defer f.Close()
	var out []KV
	in := false
	found := false
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasPrefix(t, "[") {
			if found {
				break
			}
			end := strings.IndexByte(t, ']')
			if end < 0 {
				return nil, false, fmt.Errorf("service file %s:%d: syntax error", path, line)
			}
			in = t[1:end] == name
			found = in
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return nil, false, fmt.Errorf("service file %s:%d: syntax error", path, line)
		}
		k = strings.TrimSpace(k)
		if k == "service" {
			return nil, false, fmt.Errorf("service file %s:%d: nested service specifications not supported", path, line)
		}
		out = append(out, KV{k, strings.TrimSpace(v)})
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("service file %s: %w", path, err)
	}
	return out, found, nil
}
