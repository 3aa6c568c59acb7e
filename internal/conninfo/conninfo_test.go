package conninfo

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// noEnv keeps the test process's environment out of the tests.
func noEnv(string) string { return "" }

func opts(t *testing.T) Options {
	return Options{Database: "postgres", ApplicationName: "standbyd", Getenv: noEnv, HomeDir: t.TempDir(),
		TCPUserTimeout: 10 * time.Second, Keepalive: KeepaliveDefaults{Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}}
}

const basebackup15 = `user=repl passfile='/nonexistent/.pgpass' channel_binding=prefer host=127.0.0.1 port=5432 sslmode=prefer sslcompression=0 sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres target_session_attrs=any`

// The strings that PostgreSQL's tools write must give a config whose startup
// parameters are only legitimate ones: anything else makes the server refuse
// the session.
func TestToolStringsGiveOnlyLegitimateStartupParams(t *testing.T) {
	ca, cert, key := writeCerts(t)
	for name, s := range map[string]string{
		"pg_basebackup 15": basebackup15,
		"pg_basebackup 16": basebackup15 + " sslcertmode=allow gssdelegation=0 load_balance_hosts=disable",
		"cloudnativepg":    `host=cluster-rw user=streaming_replica port=5432 sslkey=` + key + ` sslcert=` + cert + ` sslrootcert=` + ca + ` application_name=pod-2 sslmode=verify-ca dbname=app tcp_user_timeout='5000'`,
		"patroni":          `dbname=postgres user=replicator host=10.0.0.1 port=5432 sslmode=prefer application_name=node2 gssencmode=prefer channel_binding=prefer`,
		"uri":              `postgresql://repl@127.0.0.1:5432/?sslmode=prefer&gssencmode=prefer&sslcompression=0&application_name=x`,
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Parse(s, opts(t))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for k := range res.Config.RuntimeParams {
				if k != "application_name" && k != "options" && k != "client_encoding" {
					t.Errorf("startup parameter %q would reach the server", k)
				}
			}
			if res.Config.RuntimeParams["application_name"] != "standbyd" {
				t.Errorf("application_name = %q", res.Config.RuntimeParams["application_name"])
			}
			if res.Config.Database != "postgres" {
				t.Errorf("database = %q, want the channel's", res.Config.Database)
			}
		})
	}
}

func TestParseStringForms(t *testing.T) {
	cases := []struct {
		in   string
		want []KV
	}{
		{`host=a port = 5 user='it\'s' password='a b'`, []KV{{"host", "a"}, {"port", "5"}, {"user", "it's"}, {"password", "a b"}}},
		{`dbname=x\ y`, []KV{{"dbname", "x y"}}},
		{`postgresql://u:p%40ss@h1:5433,h2/db?sslmode=require&ssl=true`, []KV{{"user", "u"}, {"password", "p@ss"}, {"host", "h1,h2"}, {"port", "5433,"}, {"dbname", "db"}, {"sslmode", "require"}, {"sslmode", "require"}}},
		{`postgres://[::1]:5432/`, []KV{{"host", "::1"}, {"port", "5432"}}},
		{`postgresql:///db?host=/var/run/postgresql`, []KV{{"dbname", "db"}, {"host", "/var/run/postgresql"}}},
	}
	for _, c := range cases {
		got, err := ParseString(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: got %v, want %v", c.in, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%s: got %v, want %v", c.in, got, c.want)
			}
		}
	}
	for _, bad := range []string{"host", "host=a 'x", "password='unterminated", "postgresql://[::1", "postgresql://h/?a", "postgresql://h/%zz", "postgresql://h/d%00"} {
		if _, err := ParseString(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		} else if strings.Contains(err.Error(), "unterminated") && strings.Contains(err.Error(), "'x") {
			t.Errorf("error quotes a value: %v", err)
		}
	}
}

func TestUnknownAndRefusedKeywords(t *testing.T) {
	_, err := Parse("host=a bogus=1", opts(t))
	var ke *KeywordError
	if !errors.As(err, &ke) || ke.Keyword != "bogus" {
		t.Fatalf("unknown keyword: %v", err)
	}
	for kw, val := range map[string]string{"gssencmode": "require", "sslcrl": "/crl.pem", "sslcrldir": "/crls", "oauth_issuer": "https://x", "scram_client_key": "abc"} {
		_, err := Parse("host=a "+kw+"="+val, opts(t))
		if !errors.As(err, &ke) || ke.Keyword != kw {
			t.Errorf("%s=%s: want a refusal naming it, got %v", kw, val, err)
		}
		if kw == "scram_client_key" && strings.Contains(err.Error(), val) {
			t.Errorf("secret value in error: %v", err)
		}
	}
	// Every keyword in the table is accepted by the parser (refused ones
	// with an empty value pass).
	for _, k := range Keywords {
		if _, err := Parse("host=a "+k.Name+"=''", opts(t)); err != nil && k.Name != "service" && k.Name != "servicefile" {
			var ke *KeywordError
			if errors.As(err, &ke) && ke.Keyword == k.Name && strings.Contains(ke.Msg, "invalid connection option") {
				t.Errorf("%s: %v", k.Name, err)
			}
		}
	}
}

func TestTLSVersionsAndSSLMode(t *testing.T) {
	res, err := Parse("host=db.example sslmode=verify-full sslrootcert=system ssl_min_protocol_version=TLSv1.3", opts(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := res.Config.TLSConfig
	if tc == nil || tc.MinVersion != tls.VersionTLS13 || tc.InsecureSkipVerify || tc.ServerName != "db.example" {
		t.Fatalf("TLS config: %+v", tc)
	}
	if len(res.Config.Fallbacks) != 0 {
		t.Fatalf("verify-full must not fall back to plaintext: %d fallbacks", len(res.Config.Fallbacks))
	}
	res, err = Parse("host=a sslmode=prefer", opts(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.TLSConfig == nil || res.Config.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("libpq's default minimum TLSv1.2 not applied: %+v", res.Config.TLSConfig)
	}
	if _, err := Parse("host=a ssl_min_protocol_version=TLSv9", opts(t)); err == nil {
		t.Fatal("bad TLS version accepted")
	}
}

func TestPassfile(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "pgpass")
	write := func(content string, mode os.FileMode) {
		if err := os.WriteFile(pf, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(pf, mode)
	}
	conn := "host=127.0.0.1 port=5433 user=repl passfile=" + pf
	write("127.0.0.1:5433:postgres:repl:chanpw\n127.0.0.1:5433:replication:repl:replpw\n", 0o600)
	res, err := Parse(conn, opts(t))
	if err != nil || res.Config.Password != "chanpw" {
		t.Fatalf("channel database line: %q %v", res.Config.Password, err)
	}
	write("# comment\n127.0.0.1:5433:replication:repl:replpw\n", 0o600)
	res, _ = Parse(conn, opts(t))
	if res.Config.Password != "replpw" || !strings.Contains(res.PasswordSource, "replication") {
		t.Fatalf("replication fallback: %q from %q", res.Config.Password, res.PasswordSource)
	}
	write("*:*:*:repl:wild\\:card\\\\\n", 0o600)
	res, _ = Parse(conn, opts(t))
	if res.Config.Password != `wild:card\` {
		t.Fatalf("wildcards and escapes: %q", res.Config.Password)
	}
	var warned string
	o := opts(t)
	o.Warn = func(s string) { warned = s }
	write("*:*:*:repl:loose\n", 0o644)
	res, _ = Parse(conn, o)
	if res.Config.Password != "" || !strings.Contains(warned, "group or world access") {
		t.Fatalf("0644 passfile must be ignored with a warning: pw=%q warn=%q", res.Config.Password, warned)
	}
	write("*:*:*:other:x\n", 0o600)
	res, _ = Parse(conn, opts(t))
	if res.Config.Password != "" {
		t.Fatalf("wrong user matched")
	}
	// password= in the string wins and is never shown.
	res, _ = Parse(conn+" password=s3cret", opts(t))
	if res.Config.Password != "s3cret" {
		t.Fatal("password keyword not used")
	}
	for _, d := range res.Decisions {
		if strings.Contains(d.Value, "s3cret") || strings.Contains(d.Reason, "s3cret") {
			t.Fatalf("password in decision %+v", d)
		}
	}
}

func TestServiceAndEnvironment(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".pg_service.conf"), []byte("[primary]\nhost=svc.example\nport=6543\ngssencmode=prefer\n"), 0o600)
	o := opts(t)
	o.HomeDir = home
	o.Getenv = func(k string) string {
		return map[string]string{"PGUSER": "envuser", "PGPORT": "1111", "PGDATABASE": "envdb", "PGAPPNAME": "envapp"}[k]
	}
	res, err := Parse("service=primary", o)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Config
	if c.Host != "svc.example" || c.Port != 6543 || c.User != "envuser" || c.Database != "postgres" || c.RuntimeParams["application_name"] != "standbyd" {
		t.Fatalf("service/env merge: host=%s port=%d user=%s db=%s app=%s", c.Host, c.Port, c.User, c.Database, c.RuntimeParams["application_name"])
	}
	if _, err := Parse("service=nosuch", o); err == nil {
		t.Fatal("missing service accepted")
	}
}

func TestSocketOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	res, err := Parse("host=127.0.0.1 tcp_user_timeout=4321 keepalives_idle=7 keepalives_interval=3 keepalives_count=4", opts(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := res.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := sockopts(t, c)
	want := map[string]int{"keepalive": 1, "user_timeout": 4321, "idle": 7, "interval": 3, "count": 4}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	// Defaults from Options when the string says nothing; keepalives=0 turns them off.
	res, _ = Parse("host=127.0.0.1", opts(t))
	c2, err := res.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := sockopts(t, c2); got["user_timeout"] != 10000 || got["idle"] != 5 || got["count"] != 3 {
		t.Errorf("defaults: %v", got)
	}
	res, _ = Parse("host=127.0.0.1 keepalives=0", opts(t))
	c3, err := res.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := sockopts(t, c3); got["keepalive"] != 0 {
		t.Errorf("keepalives=0: %v", got)
	}
}

func TestHostaddr(t *testing.T) {
	res, err := Parse("host=db.invalid hostaddr=127.0.0.1 port=5432", opts(t))
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := res.Config.LookupFunc(context.Background(), "db.invalid")
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Fatalf("lookup: %v %v", addrs, err)
	}
	if _, err := Parse("host=a,b hostaddr=127.0.0.1", opts(t)); err == nil {
		t.Fatal("mismatched hostaddr count accepted")
	}
}

func TestRedact(t *testing.T) {
	for _, s := range []string{"host=a password=hunter2 sslpassword='x y'", "postgresql://u:hunter2@h/db", "password='hunter2"} {
		r := Redact(s)
		if strings.Contains(r, "hunter2") || strings.Contains(r, "x y") {
			t.Fatalf("Redact(%q) = %q", s, r)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(basebackup15)
	f.Add("postgresql://u:pw@h1:1,[::1]:2/db?sslmode=verify-full&password=pw")
	f.Add("host='a\\'b' password=pw")
	f.Fuzz(func(t *testing.T, s string) {
		r := Redact(s)
		kvs, err := ParseString(s)
		if err != nil || r == unparsable {
			if r != unparsable {
				t.Fatalf("unparsable input shown: %q", r)
			}
			return
		}
		// Redact(s), parsed again, is s with every secret masked.
		back, err := ParseString(r)
		if err != nil {
			t.Fatalf("Redact(%q) = %q does not parse: %v", s, r, err)
		}
		if len(back) != len(kvs) {
			t.Fatalf("Redact changed the keywords: %v -> %v", kvs, back)
		}
		for i := range kvs {
			want := kvs[i].Value
			if IsSecret(kvs[i].Key) {
				want = "********"
			}
			if back[i].Key != kvs[i].Key || back[i].Value != want {
				t.Fatalf("keyword %d: %v -> %v", i, kvs[i], back[i])
			}
		}
		// Parse never panics and never puts a secret in an error.
		if _, err := Parse(s, Options{Getenv: noEnv, HomeDir: t.TempDir()}); err != nil {
			for _, kv := range kvs {
				if IsSecret(kv.Key) && len(kv.Value) >= 6 && strings.Contains(err.Error(), kv.Value) {
					t.Fatalf("secret in error: %v", err)
				}
			}
		}
	})
}

// docs/conninfo.md has a row for every keyword, with the action in the code.
func TestDocHasEveryKeyword(t *testing.T) {
	b, err := os.ReadFile("../../docs/conninfo.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range Keywords {
		row := "| `" + k.Name + "` |"
		i := strings.Index(doc, row)
		if i < 0 {
			t.Errorf("docs/conninfo.md has no row for %s", k.Name)
			continue
		}
		line := doc[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if !strings.Contains(line, "| "+string(k.Action)+" |") {
			t.Errorf("docs/conninfo.md row for %s does not say %s: %s", k.Name, k.Action, line)
		}
	}
}
