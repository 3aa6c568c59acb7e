package conninfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServiceFiles(t *testing.T) {
	o := opts(t)
	sys := t.TempDir()
	write(t, filepath.Join(o.HomeDir, ".pg_service.conf"), `
# user file
[other]
host=other.example
[primary]
  host=user.example
port=6543
port=1111
sslmode=require

[next]
host=next.example
`)
	write(t, filepath.Join(sys, "pg_service.conf"), "[primary]\nhost=sys.example\n[sysonly]\nhost=sysonly.example\nuser=sysuser\n")
	o.Getenv = envMap(map[string]string{"PGSYSCONFDIR": sys})

	r := mustParse(t, "service=primary", o)
	eq(t, r.Config.Host, "user.example") // the user file first, leading space trimmed
	eq(t, r.Config.Port, uint16(6543))   // the first occurrence wins
	eq(t, len(r.Config.Fallbacks), 0)    // sslmode=require from the service
	d := decision(t, r, "host")
	if !strings.HasPrefix(d.Source, "service primary (") || !strings.HasSuffix(d.Source, ".pg_service.conf:6)") {
		t.Fatalf("source %q", d.Source)
	}
	// Keywords in the string win over the service's.
	eq(t, mustParse(t, "service=primary host=mine.example", o).Config.Host, "mine.example")
	// Then the system file (PGSYSCONFDIR).
	r = mustParse(t, "service=sysonly", o)
	eq(t, r.Config.Host, "sysonly.example")
	eq(t, r.Config.User, "sysuser")
	// PGSERVICE, and PGSERVICEFILE instead of ~/.pg_service.conf.
	alt := write(t, filepath.Join(t.TempDir(), "alt.conf"), "[primary]\nhost=alt.example\n")
	o.Getenv = envMap(map[string]string{"PGSYSCONFDIR": sys, "PGSERVICE": "primary", "PGSERVICEFILE": alt})
	eq(t, mustParse(t, "", o).Config.Host, "alt.example")
	// servicefile (PostgreSQL 18) over PGSERVICEFILE.
	eq(t, mustParse(t, "servicefile="+filepath.Join(o.HomeDir, ".pg_service.conf"), o).Config.Host, "user.example")
	// Service keywords fill before the environment does.
	o.Getenv = envMap(map[string]string{"PGSYSCONFDIR": sys, "PGHOST": "env.example", "PGPORT": "2222"})
	r = mustParse(t, "service=sysonly", o)
	eq(t, r.Config.Host, "sysonly.example")
	eq(t, r.Config.Port, uint16(2222))
}

func TestServiceErrors(t *testing.T) {
	o := opts(t)
	o.Getenv = envMap(map[string]string{"PGSYSCONFDIR": t.TempDir()})
	f := filepath.Join(o.HomeDir, ".pg_service.conf")
	for content, msg := range map[string]string{
		"[s]\nhost\n":                      `line 2: syntax error (no "=")`,
		"[s]\nhost = x\n":                  `line 2: syntax error: not a connection option`, // libpq trims nothing around "="
		"[s]\nbogus=1\n":                   `line 2: syntax error: invalid connection option "bogus"`,
		"[s]\nservice=t\n":                 `nested "service"`,
		"[s]\nservicefile=/x\n":            `nested "servicefile"`,
		"[s]\nldap://ldap.example/dc=x\n":  "LDAP",
		"[s]\npassword secret-in-a-typo\n": "syntax error",
		"[other]\nhost=x\n":                "definition of service not found",
	} {
		write(t, f, content)
		_, err := Parse("service=s", o)
		var se *ServiceError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: got %v, want %q", content, err, msg)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows a value: %v", content, err)
		}
	}
	// Lines outside the service's group do not matter (libpq).
	write(t, f, "garbage before any group\n[t]\nbogus\n[s]\nhost=ok.example\n[u]\nbogus\n")
	eq(t, mustParse(t, "service=s", o).Config.Host, "ok.example")
	// The prefix of another group's name is not the group.
	write(t, f, "[sx]\nhost=wrong\n[s]\nhost=right\n")
	eq(t, mustParse(t, "service=s", o).Config.Host, "right")
}

// pgconn reads the service named by PGSERVICE in the process environment
// on its own; standbyd points it at the file its own lookup used, and
// every value it could take from there is already explicit.
func TestServiceInProcessEnvironment(t *testing.T) {
	home := t.TempDir()
	sys := t.TempDir()
	write(t, filepath.Join(sys, "pg_service.conf"), "[envsvc]\nhost=envsvc.example\nsslmode=disable\napplication_name=sneaky\n")
	t.Setenv("HOME", home)
	t.Setenv("PGSERVICE", "envsvc")
	t.Setenv("PGSYSCONFDIR", sys)
	t.Setenv("PGSERVICEFILE", "")
	o := opts(t)
	o.HomeDir = home
	o.Getenv = os.Getenv
	r := mustParse(t, "", o)
	eq(t, r.Config.Host, "envsvc.example")
	eq(t, r.Config.TLSConfig == nil, true)
	eq(t, r.Config.RuntimeParams["application_name"], "standbyd")
	// A service in the string wins over PGSERVICE, for pgconn too.
	write(t, filepath.Join(home, ".pg_service.conf"), "[mine]\nhost=mine.example\n")
	eq(t, mustParse(t, "service=mine", o).Config.Host, "mine.example")
	// An injected environment without it: pgconn would still read it.
	o.Getenv = envMap(nil)
	eq(t, mustParse(t, "host=h", o).Config.Host, "h")
	t.Setenv("PGSERVICE", "nowhere")
	if _, err := Parse("host=h", o); err == nil || !strings.Contains(err.Error(), "PGSERVICE") {
		t.Fatalf("want an error naming PGSERVICE, got %v", err)
	}
}
