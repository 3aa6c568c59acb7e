package conninfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What PostgreSQL's tools write into primary_conninfo.
const (
	basebackup15 = `user=repl passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=127.0.0.1 port=5432 sslmode=prefer sslcompression=0 sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres target_session_attrs=any`
	basebackup16 = `user=repl passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=127.0.0.1 port=5432 sslmode=prefer sslnegotiation=postgres sslcompression=0 sslcertmode=allow sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres gssdelegation=0 target_session_attrs=any load_balance_hosts=disable`
)

// The strings PostgreSQL's tools write must give a config whose startup
// parameters are only legitimate ones: anything else makes the server
// refuse the session.
// claim: readme.tool-conninfo
func TestToolStrings(t *testing.T) {
	p := newPKI(t)
	cert, key := p.client(t, 0o600)
	cnpg := `host=cluster-rw user=streaming_replica port=5432 sslkey=/k sslcert=/c sslrootcert=/ca application_name=pod-2 sslmode=verify-ca dbname=postgres tcp_user_timeout='5000'`
	cnpgReal := strings.NewReplacer("sslkey=/k", "sslkey="+key, "sslcert=/c", "sslcert="+cert, "sslrootcert=/ca", "sslrootcert="+p.caFile).Replace(cnpg)
	for name, s := range map[string]string{
		"pg_basebackup 15":  basebackup15,
		"pg_basebackup 16+": basebackup16,
		"cloudnativepg":     cnpgReal,
		"patroni":           `dbname=postgres user=replicator host=10.0.0.1 port=5432 sslmode=prefer application_name=node2 gssencmode=prefer channel_binding=prefer`,
		"repmgr":            `host=node1 user=repmgr dbname=repmgr connect_timeout=2 application_name=node2 options=-csearch_path=`,
		"uri":               `postgresql://repl@127.0.0.1:5432/?sslmode=prefer&gssencmode=prefer&sslcompression=0&application_name=x&ssl_min_protocol_version=TLSv1.2`,
		"uri multi-host":    `postgres://repl@[::1]:5433,db2.example/app?target_session_attrs=read-write&keepalives_idle=4`,
	} {
		t.Run(name, func(t *testing.T) {
			res := mustParse(t, s, opts(t))
			onlyLegitimateParams(t, res.Config)
			eq(t, res.Config.RuntimeParams["application_name"], "standbyd")
			eq(t, res.Config.Database, "postgres")
			for _, d := range res.Decisions {
				if d.Action == Refused {
					t.Errorf("refused: %+v", d)
				}
			}
		})
	}
	// The CloudNativePG string as written, with files that do not exist
	// here: verify-ca without its root certificate is refused, naming it,
	// as libpq refuses it (pgconn alone would fail reading the file, or
	// with no sslrootcert trust the system's roots).
	_, err := Parse(cnpg, opts(t))
	keywordErr(t, err, "sslrootcert")
}

// What the server actually receives at startup, through pgconn, for the
// pg_basebackup strings: only legitimate parameters, with sslmode=prefer
// falling back to plaintext at a server that refuses TLS.
func TestStartupPacketOnTheWire(t *testing.T) {
	srv := newFakeServer(t)
	for _, s := range []string{basebackup15, basebackup16} {
		s = strings.Replace(s, "port=5432", "port="+srv.port(), 1)
		o := opts(t)
		o.Getenv = envMap(map[string]string{"PGTZ": "UTC"})
		res := mustParse(t, s+" options='-c work_mem=4MB' client_encoding=LATIN1", o)
		got := connectOnce(t, res.Config, srv)
		want := map[string]string{"user": "repl", "database": "postgres", "application_name": "standbyd",
			"client_encoding": "LATIN1", "options": "-c work_mem=4MB", "timezone": "UTC"}
		for k, v := range got {
			if want[k] != v {
				t.Errorf("startup parameter %s=%q, want %q", k, v, want[k])
			}
		}
		if len(got) != len(want) {
			t.Errorf("startup parameters %v, want %v", got, want)
		}
	}
}

// pgconn reads the process environment and home directory itself; none of
// it may reach the config when the injected environment says otherwise.
func TestProcessEnvironmentDoesNotLeak(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".postgresql"), 0o700)
	os.WriteFile(filepath.Join(home, ".pgpass"), []byte("*:*:*:*:from-real-home\n"), 0o600)
	os.WriteFile(filepath.Join(home, ".postgresql", "root.crt"), []byte("not a certificate"), 0o600)
	for k, v := range map[string]string{"HOME": home, "PGHOST": "evil.example", "PGPORT": "1", "PGDATABASE": "evil",
		"PGUSER": "evil", "PGPASSWORD": "from-real-env", "PGPASSFILE": filepath.Join(home, ".pgpass"), "PGAPPNAME": "evil",
		"PGSSLMODE": "disable", "PGSSLROOTCERT": "/nonexistent", "PGSSLPASSWORD": "x", "PGTZ": "Mars/Base", "PGOPTIONS": "-c evil=1",
		"PGTARGETSESSIONATTRS": "standby", "PGCONNECT_TIMEOUT": "x", "PGSSLNEGOTIATION": "direct", "PGCHANNELBINDING": "disable",
		"PGREQUIREAUTH": "password", "PGMINPROTOCOLVERSION": "3.2", "PGSSLCERTMODE": "require", "PGSSLSNI": "0"} {
		t.Setenv(k, v)
	}
	o := opts(t)
	res := mustParse(t, "host=db.example user=repl", o)
	c := res.Config
	eq(t, c.Host, "db.example")
	eq(t, c.Port, uint16(5432))
	eq(t, c.User, "repl")
	eq(t, c.Database, "postgres")
	eq(t, c.Password, "")
	eq(t, c.TLSConfig != nil, true) // prefer, not PGSSLMODE=disable
	eq(t, c.TLSConfig.RootCAs == nil, true)
	eq(t, c.TLSConfig.ServerName, "db.example")
	eq(t, c.ValidateConnect == nil, true)
	eq(t, c.SSLNegotiation, "postgres")
	eq(t, c.ChannelBinding, "prefer")
	eq(t, c.RequireAuth, "")
	eq(t, c.MinProtocolVersion, "3.0")
	eq(t, c.SSLCertMode, "allow")
	if len(c.RuntimeParams) != 2 || c.RuntimeParams["application_name"] != "standbyd" || c.RuntimeParams["client_encoding"] != "UTF8" {
		t.Fatalf("runtime params %v", c.RuntimeParams)
	}
}
