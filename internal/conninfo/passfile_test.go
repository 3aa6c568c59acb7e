package conninfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePassfile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	pf := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pf, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pf, mode)
	return pf
}

// claim: readme.passfile-replication-fallback
func TestPassfileMatching(t *testing.T) {
	const conn = "host=db.example port=5433 user=repl"
	for _, c := range []struct {
		name, file, want, source string
	}{
		{"exact line for the channel's database", "db.example:5433:postgres:repl:chanpw\n", "chanpw", ":1"},
		{"channel database before replication", "db.example:5433:replication:repl:replpw\ndb.example:5433:postgres:repl:chanpw\n", "chanpw", ":2"},
		{"replication fallback", "# comment\ndb.example:5433:replication:repl:replpw\n", "replpw", ":2 (database replication)"},
		{"first match wins", "*:*:*:repl:first\n*:*:*:repl:second\n", "first", ":1"},
		{"wildcards", "*:*:*:repl:wild\n", "wild", ":1"},
		{"escapes in fields and password", `db.example:5433:postgres:repl:a\:b\\c` + "\n", `a:b\c`, ":1"},
		{"password ends at an unescaped colon", "db.example:5433:postgres:repl:ab:cd\n", "ab", ":1"},
		{"escaped star is a literal star", `db.example:5433:\*:repl:lit` + "\n*:*:*:repl:wild\n", "wild", ":2"},
		{"star must be the whole field", "db*:5433:postgres:repl:x\n*:*:*:repl:wild\n", "wild", ":2"},
		{"CRLF line ends", "db.example:5433:postgres:repl:crlf\r\n", "crlf", ":1"},
		{"last line without newline", "x:1:2:3:4\ndb.example:5433:postgres:repl:nonl", "nonl", ":2"},
		{"empty password", "db.example:5433:postgres:repl:\n", "", ":1"},
		{"too few fields never match", "db.example:5433:postgres:repl\n", "", ""},
		{"other user", "*:*:*:other:x\n", "", ""},
		{"other port", "db.example:5432:*:repl:x\n", "", ""},
		{"comment only when # is first", " #db.example:5433:postgres:repl:x\n", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			pf := writePassfile(t, c.file, 0o600)
			r := mustParse(t, conn+" passfile="+pf, opts(t))
			eq(t, r.Config.Password, c.want)
			if c.source == "" {
				eq(t, r.PasswordSource, "")
			} else {
				eq(t, r.PasswordSource, "passfile "+pf+c.source)
			}
		})
	}
}

// Like libpq, a passfile readable by others, or not a plain file, is
// skipped with a warning.
func TestPassfilePermissions(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o601} {
		pf := writePassfile(t, "*:*:*:*:loose\n", mode)
		var warned []string
		o := opts(t)
		o.Warn = func(s string) { warned = append(warned, s) }
		r := mustParse(t, "host=h passfile="+pf, o)
		eq(t, r.Config.Password, "")
		if len(warned) != 1 || !strings.Contains(warned[0], "group or world access") || len(r.Warnings) != 1 {
			t.Fatalf("%o: warnings %v / %v", mode, warned, r.Warnings)
		}
		eq(t, decision(t, r, "passfile").Action, Ignored)
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		pf := writePassfile(t, "*:*:*:*:tight\n", mode)
		eq(t, mustParse(t, "host=h passfile="+pf, opts(t)).Config.Password, "tight")
	}
	r := mustParse(t, "host=h passfile="+t.TempDir(), opts(t))
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "not a plain file") {
		t.Fatalf("directory: %v", r.Warnings)
	}
	// Missing: no password, as libpq; a warning when it was named (libpq
	// says nothing), none for the default ~/.pgpass.
	r = mustParse(t, "host=h passfile=/nonexistent/pgpass", opts(t))
	eq(t, len(r.Warnings), 1)
	eq(t, r.Config.Password, "")
	if !strings.Contains(decision(t, r, "passfile").Reason, "cannot be read") {
		t.Fatalf("reason %q", decision(t, r, "passfile").Reason)
	}
	r = mustParse(t, "host=h", opts(t))
	eq(t, len(r.Warnings), 0)
}

func TestPassfileSources(t *testing.T) {
	pf := writePassfile(t, "*:*:*:*:fromfile\n", 0o600)
	o := opts(t)
	// Default ~/.pgpass.
	os.WriteFile(filepath.Join(o.HomeDir, ".pgpass"), []byte("*:*:*:*:fromhome\n"), 0o600)
	eq(t, mustParse(t, "host=h", o).Config.Password, "fromhome")
	// PGPASSFILE over ~/.pgpass; passfile over PGPASSFILE.
	o.Getenv = envMap(map[string]string{"PGPASSFILE": pf})
	eq(t, mustParse(t, "host=h", o).Config.Password, "fromfile")
	eq(t, mustParse(t, "host=h passfile="+filepath.Join(o.HomeDir, ".pgpass"), o).Config.Password, "fromhome")
	// A password (string, then PGPASSWORD) wins over any passfile.
	o.Getenv = envMap(map[string]string{"PGPASSFILE": pf, "PGPASSWORD": "fromenv"})
	r := mustParse(t, "host=h", o)
	eq(t, r.Config.Password, "fromenv")
	eq(t, r.PasswordSource, "environment PGPASSWORD")
	r = mustParse(t, "host=h password=fromstring passfile="+pf, o)
	eq(t, r.Config.Password, "fromstring")
	eq(t, decision(t, r, "passfile").Action, Ignored)
	// An empty password means: look in the passfile.
	eq(t, mustParse(t, "host=h password='' passfile="+pf, opts(t)).Config.Password, "fromfile")
}

func TestPassfileHosts(t *testing.T) {
	pf := writePassfile(t, "localhost:5432:*:*:local\n/tmp:5432:*:*:tmpsock\n10.0.0.9:5432:*:*:byaddr\nname.example:5432:*:*:byname\n", 0o600)
	for conn, want := range map[string]string{
		"":                                    "local", // default socket directory
		"host=/var/run/postgresql":            "local",
		"host=/tmp":                           "tmpsock",
		"hostaddr=10.0.0.9":                   "byaddr",
		"host=name.example hostaddr=10.0.0.9": "byname",
		"host=other,name.example port=5432":   "byname", // first host with a line
		"postgresql://name.example?sslmode=disable": "byname",
	} {
		sep := " "
		if strings.HasPrefix(conn, "postgresql://") {
			sep = "&"
		}
		r := mustParse(t, conn+sep+"passfile="+pf, opts(t))
		if r.Config.Password != want {
			t.Errorf("%q: %q, want %q", conn, r.Config.Password, want)
		}
	}
	// Several hosts with different lines: pgconn has one password; say so.
	pf = writePassfile(t, "a:5432:*:*:pa\nb:5432:*:*:pb\n", 0o600)
	r := mustParse(t, "host=a,b passfile="+pf, opts(t))
	eq(t, r.Config.Password, "pa")
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "one password for all hosts") || strings.Contains(r.Warnings[0], "pb") {
		t.Fatalf("warnings %v", r.Warnings)
	}
}

// pgconn never reads a passfile behind our back: with no password found,
// the config has none, whatever ~/.pgpass of the process holds.
func TestPgconnReadsNoPassfile(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".pgpass"), []byte("*:*:*:*:pgconn-would-use-this\n"), 0o600)
	t.Setenv("HOME", home)
	t.Setenv("PGPASSFILE", filepath.Join(home, ".pgpass"))
	r := mustParse(t, "host=h user=u", opts(t))
	eq(t, r.Config.Password, "")
	eq(t, r.PasswordSource, "")
}
