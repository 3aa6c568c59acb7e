package pgconf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxDepth is PostgreSQL's CONF_FILE_MAX_DEPTH: how deep includes nest.
const MaxDepth = 10

// maxFileSize guards against reading something that is not a config file.
const maxFileSize = 16 << 20

// Setting is one "name = value" line.
type Setting struct {
	Name  string // lower-case
	Value string // unquoted
	File  string
	Line  int
}

// Where is "file:line".
func (s Setting) Where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// SyntaxError is a line PostgreSQL would refuse.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// parser reads one tree of files; it tracks the include chain for cycles.
type parser struct {
	settings []Setting
	files    []string
	skipped  []string
	chain    []string
}

// ParseFile reads path and the files it includes, in order.
func ParseFile(path string) ([]Setting, error) {
	p := &parser{}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := p.file(abs, "", 0, 0, false); err != nil {
		return nil, err
	}
	return p.settings, nil
}

// Parse reads configuration text from r; name is used in errors. Include
// directives are resolved against dir (relative paths) and read from disk.
func Parse(name, dir string, r io.Reader) ([]Setting, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileSize)
	}
	p := &parser{}
	if err := p.text(name, dir, string(b), 0); err != nil {
		return nil, err
	}
	return p.settings, nil
}

// file reads one file. from and fromLine name the include directive (for
// errors); ifExists makes a missing file a skip.
func (p *parser) file(path, from string, fromLine, depth int, ifExists bool) error {
	where := func() string {
		if from == "" {
			return ""
		}
		return fmt.Sprintf(" (included from %s:%d)", from, fromLine)
	}
	if depth > MaxDepth {
		return &SyntaxError{File: from, Line: fromLine, Msg: fmt.Sprintf(
			"could not open configuration file %q: maximum nesting depth (%d) exceeded", path, MaxDepth)}
	}
	for _, f := range p.chain {
		if f == path {
			return &SyntaxError{File: from, Line: fromLine, Msg: fmt.Sprintf(
				"configuration files include each other: %s -> %s", strings.Join(p.chain, " -> "), path)}
		}
	}
	b, err := readLimited(path)
	if err != nil {
		if ifExists && errors.Is(err, fs.ErrNotExist) {
			p.skipped = append(p.skipped, path)
			return nil
		}
		return fmt.Errorf("could not open configuration file %q%s: %w", path, where(), err)
	}
	p.files = append(p.files, path)
	p.chain = append(p.chain, path)
	defer func() { p.chain = p.chain[:len(p.chain)-1] }()
	return p.text(path, filepath.Dir(path), string(b), depth)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return b, nil
}

// text parses the contents of one file, as ParseConfigFp does.
func (p *parser) text(name, dir, src string, depth int) error {
	lx := newLexer(src)
	for {
		tok := lx.next()
		switch tok.kind {
		case tokEOF:
			return nil
		case tokEOL:
			continue
		case tokID, tokQualifiedID:
		default:
			return syntaxErr(name, tok)
		}
		optName := tok.text
		line := tok.line
		tok = lx.next()
		if tok.kind == tokEquals {
			tok = lx.next()
		}
		var value string
		switch tok.kind {
		case tokString:
			value = unquote(tok.text)
		case tokID, tokInteger, tokReal, tokUnquoted:
			value = tok.text
		default:
			return syntaxErr(name, tok)
		}
		if end := lx.next(); end.kind != tokEOL && end.kind != tokEOF {
			return syntaxErr(name, end)
		}
		lname := strings.ToLower(optName)
		switch lname {
		case "include", "include_if_exists":
			if err := p.file(absolute(dir, value), name, line, depth+1, lname == "include_if_exists"); err != nil {
				return err
			}
		case "include_dir":
			if err := p.directory(absolute(dir, value), name, line, depth+1); err != nil {
				return err
			}
		default:
			p.settings = append(p.settings, Setting{Name: lname, Value: value, File: name, Line: line})
		}
	}
}

// directory reads the *.conf files of an include_dir, as ParseConfigDirectory.
func (p *parser) directory(dir, from string, fromLine, depth int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("could not open configuration directory %q (included from %s:%d): %w", dir, from, fromLine, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".conf") || len(n) <= len(".conf") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("could not stat file %q: %w", filepath.Join(dir, n), err)
		}
		if fi.Mode().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Strings(names) // byte order, as PostgreSQL's strcmp
	for _, n := range names {
		if err := p.file(filepath.Join(dir, n), from, fromLine, depth, false); err != nil {
			return err
		}
	}
	return nil
}

func absolute(dir, path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(dir, path)
}

func syntaxErr(file string, tok token) error {
	return &SyntaxError{File: file, Line: tok.line, Msg: "syntax error near " + tok.describe()}
}
