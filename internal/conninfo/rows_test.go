package conninfo

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEveryKeywordRow shows that each row of docs/conninfo.md is true: one
// check per keyword, and the test fails for a keyword with no check.
func TestEveryKeywordRow(t *testing.T) {
	ca, cert, key := writeCerts(t)
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".pg_service.conf"), []byte("[svc]\nhost=svc.example\nport=7777\n"), 0o600)
	pf := filepath.Join(t.TempDir(), "pgpass")
	os.WriteFile(pf, []byte("h:5432:postgres:u:frompassfile\n"), 0o600)

	parse := func(t *testing.T, s string) (*Result, error) {
		o := opts(t)
		o.HomeDir = home
		return Parse(s, o)
	}
	must := func(t *testing.T, s string) *Result {
		t.Helper()
		r, err := parse(t, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return r
	}
	refused := func(t *testing.T, s, kw string) {
		t.Helper()
		_, err := parse(t, s)
		var ke *KeywordError
		if !errors.As(err, &ke) || ke.Keyword != kw {
			t.Fatalf("%s: want a refusal of %s, got %v", s, kw, err)
		}
	}
	noStartupParam := func(t *testing.T, s, kw string) {
		t.Helper()
		r := must(t, s)
		if _, ok := r.Config.RuntimeParams[kw]; ok {
			t.Fatalf("%s reaches the server as a startup parameter", kw)
		}
	}
	decision := func(t *testing.T, r *Result, kw string) Decision {
		t.Helper()
		for _, d := range r.Decisions {
			if d.Keyword == kw {
				return d
			}
		}
		t.Fatalf("no decision for %s", kw)
		return Decision{}
	}

	checks := map[string]func(t *testing.T){
		"service": func(t *testing.T) {
			r := must(t, "service=svc")
			eq(t, r.Config.Host, "svc.example")
			eq(t, r.Config.Port, uint16(7777))
		},
		"servicefile": func(t *testing.T) {
			p := filepath.Join(home, ".pg_service.conf")
			r := must(t, "service=svc servicefile="+p)
			eq(t, r.Config.Host, "svc.example")
		},
		"user": func(t *testing.T) { eq(t, must(t, "host=h user=alice").Config.User, "alice") },
		"password": func(t *testing.T) {
			r := must(t, "host=h password=s3cret")
			eq(t, r.Config.Password, "s3cret")
			eq(t, decision(t, r, "password").Value, "********")
		},
		"passfile": func(t *testing.T) { eq(t, must(t, "host=h user=u passfile="+pf).Config.Password, "frompassfile") },
		"require_auth": func(t *testing.T) {
			eq(t, must(t, "host=h require_auth=scram-sha-256").Config.RequireAuth, "scram-sha-256")
		},
		"channel_binding": func(t *testing.T) { eq(t, must(t, "host=h channel_binding=require").Config.ChannelBinding, "require") },
		"connect_timeout": func(t *testing.T) { eq(t, must(t, "host=h connect_timeout=7").Config.ConnectTimeout, 7*time.Second) },
		"dbname":          func(t *testing.T) { eq(t, must(t, "host=h dbname=other").Config.Database, "postgres") },
		"host": func(t *testing.T) {
			r := must(t, "host=a,b port=1,2")
			eq(t, r.Config.Host, "a")
			eq(t, r.Config.Fallbacks[len(r.Config.Fallbacks)-1].Host, "b")
		},
		"hostaddr": func(t *testing.T) {
			a, _ := must(t, "host=db.invalid hostaddr=127.0.0.1").Config.LookupFunc(context.Background(), "db.invalid")
			eq(t, strings.Join(a, ","), "127.0.0.1")
		},
		"port": func(t *testing.T) { eq(t, must(t, "host=h port=6543").Config.Port, uint16(6543)) },
		"client_encoding": func(t *testing.T) {
			eq(t, must(t, "host=h client_encoding=LATIN1").Config.RuntimeParams["client_encoding"], "UTF8")
		},
		"options": func(t *testing.T) {
			eq(t, must(t, "host=h options='-c work_mem=1MB'").Config.RuntimeParams["options"], "-c work_mem=1MB")
		},
		"application_name": func(t *testing.T) {
			eq(t, must(t, "host=h application_name=walrcv").Config.RuntimeParams["application_name"], "standbyd")
		},
		"fallback_application_name": func(t *testing.T) {
			eq(t, must(t, "host=h fallback_application_name=x").Config.RuntimeParams["application_name"], "standbyd")
		},
		"keepalives":          func(t *testing.T) { eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives=0"))["keepalive"], 0) },
		"keepalives_idle":     func(t *testing.T) { eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_idle=11"))["idle"], 11) },
		"keepalives_interval": func(t *testing.T) { eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_interval=4"))["interval"], 4) },
		"keepalives_count":    func(t *testing.T) { eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_count=6"))["count"], 6) },
		"tcp_user_timeout": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 tcp_user_timeout=1234"))["user_timeout"], 1234)
		},
		"replication": func(t *testing.T) { noStartupParam(t, "host=h replication=true", "replication") },
		"gssencmode": func(t *testing.T) {
			noStartupParam(t, "host=h gssencmode=prefer", "gssencmode")
			refused(t, "host=h gssencmode=require", "gssencmode")
		},
		"sslmode": func(t *testing.T) {
			r := must(t, "host=h sslmode=verify-full sslrootcert="+ca)
			eq(t, r.Config.TLSConfig.InsecureSkipVerify, false)
			eq(t, len(r.Config.Fallbacks), 0)
		},
		"sslnegotiation": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=require sslnegotiation=direct").Config.SSLNegotiation, "direct")
		},
		"sslcompression": func(t *testing.T) { noStartupParam(t, "host=h sslcompression=1", "sslcompression") },
		"sslcert": func(t *testing.T) {
			eq(t, len(must(t, "host=h sslmode=require sslcert="+cert+" sslkey="+key).Config.TLSConfig.Certificates), 1)
		},
		"sslkey": func(t *testing.T) {
			_, err := parse(t, "host=h sslmode=require sslcert="+cert+" sslkey=/nonexistent")
			eq(t, err != nil, true)
		},
		"sslpassword": func(t *testing.T) {
			r := must(t, "host=h sslpassword=topsecret")
			eq(t, decision(t, r, "sslpassword").Value, "********")
		},
		"sslcertmode": func(t *testing.T) { noStartupParam(t, "host=h sslmode=require sslcertmode=disable", "sslcertmode") },
		"sslrootcert": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=verify-ca sslrootcert="+ca).Config.TLSConfig.RootCAs != nil, true)
		},
		"sslcrl":    func(t *testing.T) { refused(t, "host=h sslcrl=/crl.pem", "sslcrl") },
		"sslcrldir": func(t *testing.T) { refused(t, "host=h sslcrldir=/crls", "sslcrldir") },
		"sslsni": func(t *testing.T) {
			eq(t, must(t, "host=db.example sslmode=require sslsni=0").Config.TLSConfig.ServerName, "")
		},
		"requirepeer": func(t *testing.T) {
			r := must(t, "host=/tmp requirepeer=nosuchuser_xyz")
			dir := t.TempDir()
			sock := filepath.Join(dir, "s")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, _ := ln.Accept()
				if c != nil {
					c.Close()
				}
			}()
			_, err = r.Config.DialFunc(context.Background(), "unix", sock)
			if err == nil || !strings.Contains(err.Error(), "requirepeer") {
				t.Fatalf("peer check: %v", err)
			}
		},
		"ssl_min_protocol_version": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=require ssl_min_protocol_version=TLSv1.3").Config.TLSConfig.MinVersion, uint16(0x0304))
		},
		"ssl_max_protocol_version": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=require ssl_max_protocol_version=TLSv1.2").Config.TLSConfig.MaxVersion, uint16(0x0303))
		},
		"krbsrvname":    func(t *testing.T) { eq(t, must(t, "host=h krbsrvname=pgsrv").Config.KerberosSrvName, "pgsrv") },
		"gsslib":        func(t *testing.T) { noStartupParam(t, "host=h gsslib=gssapi", "gsslib") },
		"gssdelegation": func(t *testing.T) { noStartupParam(t, "host=h gssdelegation=1", "gssdelegation") },
		"target_session_attrs": func(t *testing.T) {
			eq(t, must(t, "host=h target_session_attrs=read-write").Config.ValidateConnect != nil, true)
		},
		"load_balance_hosts": func(t *testing.T) {
			r := must(t, "host=a,b port=1,2 load_balance_hosts=random")
			eq(t, r.Config.Host, "a") // in order
		},
		"min_protocol_version": func(t *testing.T) { eq(t, must(t, "host=h min_protocol_version=3.0").Config.MinProtocolVersion, "3.0") },
		"max_protocol_version": func(t *testing.T) { eq(t, must(t, "host=h max_protocol_version=3.0").Config.MaxProtocolVersion, "3.0") },
		"sslkeylogfile":        func(t *testing.T) { noStartupParam(t, "host=h sslkeylogfile=/tmp/keys", "sslkeylogfile") },
		"scram_client_key":     func(t *testing.T) { refused(t, "host=h scram_client_key=abc", "scram_client_key") },
		"scram_server_key":     func(t *testing.T) { refused(t, "host=h scram_server_key=abc", "scram_server_key") },
		"oauth_issuer":         func(t *testing.T) { refused(t, "host=h oauth_issuer=https://x", "oauth_issuer") },
		"oauth_client_id":      func(t *testing.T) { refused(t, "host=h oauth_client_id=x", "oauth_client_id") },
		"oauth_client_secret":  func(t *testing.T) { refused(t, "host=h oauth_client_secret=x", "oauth_client_secret") },
		"oauth_scope":          func(t *testing.T) { refused(t, "host=h oauth_scope=x", "oauth_scope") },
	}
	for _, k := range Keywords {
		check, ok := checks[k.Name]
		if !ok {
			t.Errorf("keyword %s has no check", k.Name)
			continue
		}
		t.Run(k.Name, check)
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// dialOpts dials a local listener with the config's dialer and reads the
// socket options.
func dialOpts(t *testing.T, r *Result) map[string]int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	c, err := r.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return sockopts(t, c)
}
