package pgconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// AutoConfFile is the file ALTER SYSTEM writes, always in the data directory.
const AutoConfFile = "postgresql.auto.conf"

// DefaultEtcDir is where Debian keeps cluster configuration.
const DefaultEtcDir = "/etc/postgresql"

// Options say where to look.
type Options struct {
	// ConfigFile is the main configuration file; found by Locate when empty.
	ConfigFile string
	// EtcDir replaces /etc/postgresql in the Debian search (tests).
	EtcDir string
}

// Config is the result of reading a data directory's configuration.
type Config struct {
	mainFile string
	files    []string
	skipped  []string
	all      []Setting
	last     map[string]int // name -> index in all of its last occurrence
}

// Get returns the setting in force for name (case-insensitive).
func (c *Config) Get(name string) (Setting, bool) {
	i, ok := c.last[strings.ToLower(name)]
	if !ok {
		return Setting{}, false
	}
	return c.all[i], true
}

// History returns every occurrence of name, in the order read; the last one
// is in force.
func (c *Config) History(name string) []Setting {
	name = strings.ToLower(name)
	var out []Setting
	for _, s := range c.all {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Files lists every file read, in order (to watch them for changes).
func (c *Config) Files() []string { return append([]string(nil), c.files...) }

// Skipped lists include_if_exists files that did not exist.
func (c *Config) Skipped() []string { return append([]string(nil), c.skipped...) }

// MainFile is the main configuration file that was read.
func (c *Config) MainFile() string { return c.mainFile }

// LoadDataDir reads the configuration of the cluster in dataDir: the main
// file (see Locate) with its includes, then dataDir/postgresql.auto.conf.
func LoadDataDir(dataDir string, opts Options) (*Config, error) {
	if dataDir == "" {
		return nil, errors.New("no data directory given")
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	main, err := Locate(dataDir, opts)
	if err != nil {
		return nil, err
	}
	p := &parser{}
	if err := p.file(main, "", 0, 0, false); err != nil {
		return nil, err
	}
	// postgresql.auto.conf is read last and may be missing.
	auto := filepath.Join(dataDir, AutoConfFile)
	if _, err := os.Stat(auto); err == nil {
		if err := p.file(auto, "", 0, 0, false); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checking %s: %w", auto, err)
	}
	c := &Config{mainFile: main, files: p.files, skipped: p.skipped, all: p.settings, last: map[string]int{}}
	for i, s := range p.settings {
		c.last[s.Name] = i
	}
	return c, nil
}

// Locate finds the main configuration file of the cluster in dataDir:
// opts.ConfigFile when set, else dataDir/postgresql.conf, else the Debian
// file /etc/postgresql/<PG_VERSION>/<cluster>/postgresql.conf whose
// data_directory is dataDir.
func Locate(dataDir string, opts Options) (string, error) {
	if opts.ConfigFile != "" {
		p, err := filepath.Abs(opts.ConfigFile)
		if err != nil {
			return "", err
		}
		return p, nil
	}
	inData := filepath.Join(dataDir, "postgresql.conf")
	if _, err := os.Stat(inData); err == nil {
		return inData, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checking %s: %w", inData, err)
	}
	etc := opts.EtcDir
	if etc == "" {
		etc = DefaultEtcDir
	}
	verBytes, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return "", fmt.Errorf("no postgresql.conf in %s and no PG_VERSION to look for a Debian layout (%w); set standby.config_file", dataDir, err)
	}
	ver := strings.TrimSpace(string(verBytes))
	pattern := filepath.Join(etc, ver, "*", "postgresql.conf")
	candidates, _ := filepath.Glob(pattern)
	want := canonical(dataDir)
	for _, cand := range candidates {
		settings, err := ParseFile(cand)
		if err != nil {
			continue
		}
		var dd string
		for _, s := range settings {
			if s.Name == "data_directory" {
				dd = s.Value
			}
		}
		if dd != "" && canonical(dd) == want {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no configuration file for %s: not %s, and no %s sets data_directory to it; set standby.config_file",
		dataDir, inData, pattern)
}

func canonical(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return filepath.Clean(p)
}
