package pgconf

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLoadDataDirLayouts(t *testing.T) {
	cases := []struct {
		dir       string
		name      string
		wantValue string
		wantWhere string // file base name and line
	}{
		{"basebackup", "primary_conninfo",
			"user=rep passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=127.0.0.1 port=5432 sslmode=prefer sslcompression=0 sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres target_session_attrs=any",
			"postgresql.auto.conf:3"},
		{"basebackup", "port", "5433", "postgresql.conf:2"},
		{"patroni", "primary_conninfo", "dbname=postgres user=replicator host=10.0.0.1 port=5432 sslmode=prefer application_name=node2", "postgresql.conf:6"},
		{"patroni", "shared_buffers", "128MB", "postgresql.base.conf:2"},
		{"cnpg", "primary_conninfo", "host=cluster-example-rw user=streaming_replica port=5432 sslkey=/controller/certificates/streaming_replica.key sslcert=/controller/certificates/streaming_replica.crt sslrootcert=/controller/certificates/server-ca.crt application_name=cluster-example-2 sslmode=verify-ca dbname=postgres tcp_user_timeout='5000'", "override.conf:1"},
		{"cnpg", "max_connections", "100", "custom.conf:1"},
		{"includedir", "work_mem", "3MB", "20-b.conf:1"}, // B-upper.conf sorts before 10-a? no: '1' < '2' < 'B'
		{"includedir", "primary_conninfo", "host=dir", "20-b.conf:2"},
	}
	for _, c := range cases {
		t.Run(c.dir+"/"+c.name, func(t *testing.T) {
			cfg, err := LoadDataDir(filepath.Join("testdata", c.dir), Options{})
			if err != nil {
				t.Fatal(err)
			}
			s, ok := cfg.Get(c.name)
			if c.dir == "includedir" && c.name == "work_mem" {
				// 10-a, 20-b, B-upper in byte order: B-upper (4MB) is last.
				c.wantValue, c.wantWhere = "4MB", "B-upper.conf:1"
			}
			if !ok || s.Value != c.wantValue {
				t.Fatalf("%s = %q (found %v), want %q", c.name, s.Value, ok, c.wantValue)
			}
			if got := filepath.Base(s.File) + ":" + itoa(s.Line); got != c.wantWhere {
				t.Fatalf("%s set at %s, want %s", c.name, got, c.wantWhere)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestHistoryAndFiles(t *testing.T) {
	cfg, err := LoadDataDir("testdata/basebackup", Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.History("PRIMARY_CONNINFO")
	if len(h) != 2 || filepath.Base(h[0].File) != "postgresql.conf" || filepath.Base(h[1].File) != "postgresql.auto.conf" {
		t.Fatalf("history: %+v", h)
	}
	if len(cfg.Files()) != 2 {
		t.Fatalf("files: %v", cfg.Files())
	}
	inc, err := LoadDataDir("testdata/includedir", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range inc.Files() {
		if strings.Contains(f, "hidden") || strings.HasSuffix(f, ".bak") {
			t.Fatalf("read a file include_dir must skip: %s", f)
		}
	}
	if len(inc.Skipped()) != 1 || !strings.HasSuffix(inc.Skipped()[0], "missing.conf") {
		t.Fatalf("skipped: %v", inc.Skipped())
	}
}

func TestEscapesAndTokens(t *testing.T) {
	got, err := ParseFile("testdata/escapes/postgresql.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a":   "it's",
		"b":   "tab\there\nnew\\back'qAx",
		"c":   "-5.5e3kB",
		"d":   "0x1Fkb",
		"e":   "on",
		"f.g": "qualified",
		"h":   "var/run/x:y",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d settings: %+v", len(got), got)
	}
	for _, s := range got {
		if want[s.Name] != s.Value {
			t.Errorf("%s = %q, want %q", s.Name, s.Value, want[s.Name])
		}
	}
}

func TestSyntaxErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		file string
		line int
		msg  string
	}{
		{"unterminated.conf", 2, "syntax error"},
		{"trailing.conf", 3, `near "3"`},
		{"noname.conf", 1, `near "="`},
		{"badname.conf", 1, "syntax error"},
		{"novalue.conf", 2, "near end of line"},
		{"badchar.conf", 1, `near "@"`},
		{"unquotedpath.conf", 2, `near "/"`}, // paths need quotes, as in PostgreSQL
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", c.file)
			_, err := ParseFile(path)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("want a SyntaxError, got %v", err)
			}
			if filepath.Base(se.File) != c.file || se.Line != c.line || !strings.Contains(se.Msg, c.msg) {
				t.Fatalf("got %v, want %s:%d with %q", err, c.file, c.line, c.msg)
			}
			if !strings.HasPrefix(err.Error(), se.File+":"+itoa(c.line)+":") {
				t.Fatalf("message does not start with file:line: %v", err)
			}
		})
	}
}

func TestIncludeErrors(t *testing.T) {
	_, err := ParseFile("testdata/bad/missinginclude.conf")
	if err == nil || !strings.Contains(err.Error(), "nothere.conf") || !strings.Contains(err.Error(), "missinginclude.conf:2") {
		t.Fatalf("missing include: %v", err)
	}
	_, err = ParseFile("testdata/cycle/postgresql.conf")
	var se *SyntaxError
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "include each other") || filepath.Base(se.File) != "b.conf" || se.Line != 2 {
		t.Fatalf("cycle: %v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	dir := t.TempDir()
	// f0 includes f1 ... f11: deeper than PostgreSQL allows.
	for i := 0; i <= MaxDepth+1; i++ {
		content := "x = 1\n"
		if i <= MaxDepth {
			content += "include 'f" + itoa(i+1) + ".conf'\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "f"+itoa(i)+".conf"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ParseFile(filepath.Join(dir, "f0.conf"))
	if err == nil || !strings.Contains(err.Error(), "maximum nesting depth") {
		t.Fatalf("depth: %v", err)
	}
	// Exactly at the limit is fine.
	os.WriteFile(filepath.Join(dir, "f"+itoa(MaxDepth)+".conf"), []byte("x = 2\n"), 0o644)
	if _, err := ParseFile(filepath.Join(dir, "f0.conf")); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

func TestDebianLayout(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "var", "lib", "postgresql", "15", "main")
	etc := filepath.Join(root, "etc")
	for _, d := range []string{data, filepath.Join(etc, "15", "main"), filepath.Join(etc, "15", "other")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(data, "PG_VERSION"), "15\n")
	write(filepath.Join(data, "postgresql.auto.conf"), "primary_conninfo = 'host=auto'\n")
	write(filepath.Join(etc, "15", "other", "postgresql.conf"), "data_directory = '/elsewhere'\nprimary_conninfo = 'host=wrong'\n")
	write(filepath.Join(etc, "15", "main", "postgresql.conf"), "data_directory = '"+data+"'\nport = 5433\n")

	cfg, err := LoadDataDir(data, Options{EtcDir: etc})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(filepath.Dir(cfg.MainFile())) != "main" {
		t.Fatalf("main file %s", cfg.MainFile())
	}
	if s, _ := cfg.Get("primary_conninfo"); s.Value != "host=auto" {
		t.Fatalf("primary_conninfo = %q", s.Value)
	}
	if s, _ := cfg.Get("port"); s.Value != "5433" {
		t.Fatalf("port = %q", s.Value)
	}
	// Nothing matches: a clear error naming what was searched.
	_, err = LoadDataDir(data, Options{EtcDir: filepath.Join(root, "nothing")})
	if err == nil || !strings.Contains(err.Error(), "standby.config_file") {
		t.Fatalf("want an error pointing at standby.config_file, got %v", err)
	}
	// An explicit file wins.
	cfg, err = LoadDataDir(data, Options{ConfigFile: filepath.Join(etc, "15", "other", "postgresql.conf"), EtcDir: etc})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := cfg.Get("primary_conninfo"); s.Value != "host=auto" { // auto.conf still last
		t.Fatalf("primary_conninfo = %q", s.Value)
	}
	if h := cfg.History("primary_conninfo"); len(h) != 2 || h[0].Value != "host=wrong" {
		t.Fatalf("history %+v", h)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/escapes/postgresql.conf", "testdata/basebackup/postgresql.auto.conf", "testdata/cnpg/override.conf"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("a = 'x''y\\n\\101'\n# c\nb=1 # t\n")
	f.Add("a.b.c = 1")
	f.Fuzz(func(t *testing.T, src string) {
		// include directives would read the disk: strip them.
		if strings.Contains(strings.ToLower(src), "include") {
			return
		}
		settings, err := Parse("fuzz.conf", t.TempDir(), strings.NewReader(src))
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 || se.File != "fuzz.conf" {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		lines := strings.Count(src, "\n") + 1
		for _, s := range settings {
			if s.Name == "" || s.Name != strings.ToLower(s.Name) || s.Line < 1 || s.Line > lines {
				t.Fatalf("bad setting %+v", s)
			}
		}
	})
}
