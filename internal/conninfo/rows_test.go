package conninfo

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEveryKeywordRow shows that each row of docs/conninfo.md is true: one
// check per keyword, and the test fails for a keyword with no check.
// claim: readme.tool-conninfo
func TestEveryKeywordRow(t *testing.T) {
	p := newPKI(t)
	cert, key := p.client(t, 0o600)
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".pg_service.conf"), []byte("[svc]\nhost=svc.example\nport=7777\n"), 0o600)
	pf := filepath.Join(t.TempDir(), "pgpass")
	os.WriteFile(pf, []byte("h:5432:postgres:u:frompassfile\n"), 0o600)

	o := func(t *testing.T) Options {
		x := opts(t)
		x.HomeDir = home
		return x
	}
	parse := func(t *testing.T, s string) (*Result, error) { return Parse(s, o(t)) }
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
		r, err := parse(t, s)
		keywordErr(t, err, kw)
		if r == nil || r.Config != nil {
			t.Fatalf("a refusal returns the decisions and no config: %+v", r)
		}
		eq(t, decision(t, r, kw).Action, Refused)
	}
	// notSent parses s, checks the decision, and that kw is no startup
	// parameter, on the config and on the wire.
	srv := newFakeServer(t)
	notSent := func(t *testing.T, s, kw string, a Action) {
		t.Helper()
		r := must(t, s+" host=127.0.0.1 port="+srv.port()+" sslmode=disable")
		eq(t, decision(t, r, kw).Action, a)
		onlyLegitimateParams(t, r.Config)
		if _, ok := connectOnce(t, r.Config, srv)[kw]; ok {
			t.Fatalf("%s reached the server", kw)
		}
	}

	checks := map[string]func(t *testing.T){
		"service": func(t *testing.T) {
			r := must(t, "service=svc")
			eq(t, r.Config.Host, "svc.example")
			eq(t, r.Config.Port, uint16(7777))
		},
		"servicefile": func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "services")
			os.WriteFile(f, []byte("[svc]\nhost=other.example\n"), 0o600)
			eq(t, must(t, "service=svc servicefile="+f).Config.Host, "other.example")
		},
		"user": func(t *testing.T) {
			eq(t, must(t, "host=h user=alice").Config.User, "alice")
			u, _ := user.Current()
			eq(t, must(t, "host=h").Config.User, u.Username)
		},
		"password": func(t *testing.T) {
			r := must(t, "host=h password=s3cret")
			eq(t, r.Config.Password, "s3cret")
			eq(t, decision(t, r, "password").Value, mask)
			eq(t, r.PasswordSource, "conninfo")
		},
		"passfile": func(t *testing.T) {
			r := must(t, "host=h user=u passfile="+pf)
			eq(t, r.Config.Password, "frompassfile")
			eq(t, r.PasswordSource, "passfile "+pf+":1")
		},
		"channel_binding": func(t *testing.T) { eq(t, must(t, "host=h channel_binding=require").Config.ChannelBinding, "require") },
		"connect_timeout": func(t *testing.T) {
			eq(t, must(t, "host=h connect_timeout=7").Config.ConnectTimeout, 7*time.Second)
			eq(t, must(t, "host=h connect_timeout=1").Config.ConnectTimeout, 2*time.Second)
			eq(t, must(t, "host=h connect_timeout=-3").Config.ConnectTimeout, time.Duration(0))
			eq(t, must(t, "host=h").Config.ConnectTimeout, 10*time.Second)
		},
		"dbname": func(t *testing.T) {
			r := must(t, "host=h dbname=other")
			eq(t, r.Config.Database, "postgres")
			eq(t, decision(t, r, "dbname").Action, Ignored)
			notSent(t, "dbname=other", "dbname", Ignored)
		},
		"host": func(t *testing.T) {
			r := must(t, "host=a,b,,/tmp port=1,2,3,4 sslmode=disable")
			eq(t, r.Config.Host, "a")
			var got []string
			for _, f := range r.Config.Fallbacks {
				got = append(got, f.Host)
			}
			eq(t, strings.Join(got, ","), "b,/var/run/postgresql,/tmp")
			eq(t, r.Endpoint, "a:1,b:2,/var/run/postgresql:3,/tmp:4")
			_, err := parse(t, "host=@abstract")
			keywordErr(t, err, "host")
		},
		"hostaddr": func(t *testing.T) {
			r := must(t, "host=db.invalid hostaddr=127.0.0.1 sslmode=verify-full sslrootcert="+p.caFile)
			a, err := r.Config.LookupFunc(context.Background(), "db.invalid")
			eq(t, err, nil)
			eq(t, strings.Join(a, ","), "127.0.0.1")
			eq(t, r.Config.Host, "db.invalid")
			eq(t, r.Config.TLSConfig.ServerName, "db.invalid") // the name, not the address, is verified
			// Dialled for real: the fake server is reached by its address.
			r = must(t, "host=db.invalid hostaddr=127.0.0.1 sslmode=disable port="+srv.port())
			connectOnce(t, r.Config, srv)
		},
		"port": func(t *testing.T) {
			eq(t, must(t, "host=h port=6543").Config.Port, uint16(6543))
			_, err := parse(t, "host=h port=70000")
			keywordErr(t, err, "port")
		},
		"client_encoding": func(t *testing.T) {
			eq(t, must(t, "host=h client_encoding=LATIN1").Config.RuntimeParams["client_encoding"], "LATIN1")
			eq(t, must(t, "host=h").Config.RuntimeParams["client_encoding"], "UTF8")
			x := o(t)
			x.Getenv = envMap(map[string]string{"LANG": "de_DE.UTF-8"})
			eq(t, mustParse(t, "host=h client_encoding=auto", x).Config.RuntimeParams["client_encoding"], "UTF8")
		},
		"options": func(t *testing.T) {
			eq(t, must(t, "host=h options='-c work_mem=1MB'").Config.RuntimeParams["options"], "-c work_mem=1MB")
		},
		"application_name": func(t *testing.T) {
			eq(t, must(t, "host=h application_name=walrcv").Config.RuntimeParams["application_name"], "standbyd")
			x := o(t)
			x.ApplicationName = "standbyd@%a"
			eq(t, mustParse(t, "host=h application_name=pod-2", x).Config.RuntimeParams["application_name"], "standbyd@pod-2")
		},
		"fallback_application_name": func(t *testing.T) {
			eq(t, must(t, "host=h fallback_application_name=x").Config.RuntimeParams["application_name"], "standbyd")
			notSent(t, "fallback_application_name=x", "fallback_application_name", Ignored)
		},
		"keepalives": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives=0"))["keepalive"], 0)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives=1"))["keepalive"], 1)
		},
		"keepalives_idle": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_idle=11"))["idle"], 11)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1"))["idle"], 5)
		},
		"keepalives_interval": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_interval=4"))["interval"], 4)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1"))["interval"], 2)
		},
		"keepalives_count": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 keepalives_count=6"))["count"], 6)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1"))["count"], 3)
		},
		"tcp_user_timeout": func(t *testing.T) {
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 tcp_user_timeout=1234"))["user_timeout"], 1234)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1 tcp_user_timeout=0"))["user_timeout"], 0)
			eq(t, dialOpts(t, must(t, "host=127.0.0.1"))["user_timeout"], 10000)
		},
		"sslmode": func(t *testing.T) {
			r := must(t, "host=h sslmode=verify-full sslrootcert="+p.caFile)
			eq(t, r.Config.TLSConfig.InsecureSkipVerify, false)
			eq(t, len(r.Config.Fallbacks), 0) // no plaintext fallback
			refused(t, "host=h sslmode=verify-ca", "sslmode")
			eq(t, len(must(t, "host=h sslmode=prefer").Config.Fallbacks), 1)
		},
		"sslnegotiation": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=require sslnegotiation=direct").Config.SSLNegotiation, "direct")
			refused(t, "host=h sslmode=prefer sslnegotiation=direct", "sslnegotiation")
		},
		"sslcompression": func(t *testing.T) { notSent(t, "sslcompression=1", "sslcompression", Ignored) },
		"sslcert": func(t *testing.T) {
			eq(t, len(must(t, "host=h sslmode=require sslcert="+cert+" sslkey="+key).Config.TLSConfig.Certificates), 1)
			eq(t, len(must(t, "host=h sslmode=require sslcert=/nonexistent sslkey="+key).Config.TLSConfig.Certificates), 0)
		},
		"sslkey": func(t *testing.T) {
			refused(t, "host=h sslmode=require sslcert="+cert+" sslkey=/nonexistent", "sslkey")
			os.Chmod(key, 0o644)
			defer os.Chmod(key, 0o600)
			refused(t, "host=h sslmode=require sslcert="+cert+" sslkey="+key, "sslkey")
		},
		"sslcertmode": func(t *testing.T) {
			r := must(t, "host=h sslmode=require sslcertmode=disable sslcert="+cert+" sslkey="+key)
			eq(t, r.Config.SSLCertMode, "disable")
			eq(t, len(r.Config.TLSConfig.Certificates), 0)
		},
		"sslpassword": func(t *testing.T) {
			r := must(t, "host=h sslpassword=topsecret")
			eq(t, decision(t, r, "sslpassword").Value, mask)
			// An encrypted key is decrypted with it (tls_test.go).
		},
		"sslrootcert": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=verify-ca sslrootcert="+p.caFile).Config.TLSConfig.RootCAs != nil, true)
			r := must(t, "host=h sslmode=require sslrootcert=/nonexistent")
			eq(t, len(r.Warnings), 1)
			eq(t, decision(t, r, "sslrootcert").Action, Ignored)
		},
		"sslcrl": func(t *testing.T) {
			crl := p.crl(t, "revoked.crl", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), p.server.SerialNumber)
			r := must(t, "host=db.example sslmode=verify-full sslrootcert="+p.caFile+" sslcrl="+crl)
			eq(t, decision(t, r, "sslcrl").Action, Honoured)
			err := p.handshake(t, r.Config.TLSConfig)
			if err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("revoked server certificate accepted: %v", err)
			}
		},
		"sslcrldir": func(t *testing.T) {
			dir := t.TempDir()
			crl := p.crl(t, "x.crl", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), p.server.SerialNumber)
			data, _ := os.ReadFile(crl)
			os.WriteFile(filepath.Join(dir, "0a1b2c3d.r0"), data, 0o644)
			r := must(t, "host=db.example sslmode=verify-ca sslrootcert="+p.caFile+" sslcrldir="+dir)
			err := p.handshake(t, r.Config.TLSConfig)
			if err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("revoked server certificate accepted: %v", err)
			}
		},
		"sslsni": func(t *testing.T) {
			eq(t, must(t, "host=db.example sslmode=require sslsni=0").Config.TLSConfig.ServerName, "")
			eq(t, must(t, "host=db.example sslmode=require").Config.TLSConfig.ServerName, "db.example")
			r := must(t, "host=db.example sslmode=verify-full sslsni=0 sslrootcert="+p.caFile)
			eq(t, r.Config.TLSConfig.ServerName, "")
			eq(t, p.handshake(t, r.Config.TLSConfig), nil)
		},
		"requirepeer": func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), ".s.PGSQL.5432")
			ln, err := net.Listen("unix", sock)
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
			r := must(t, "host=/tmp requirepeer=nosuchuser_xyz")
			_, err = r.Config.DialFunc(context.Background(), "unix", sock)
			keywordErr(t, err, "requirepeer")
			me, _ := user.Current()
			c, err := must(t, "host=/tmp requirepeer="+me.Username).Config.DialFunc(context.Background(), "unix", sock)
			eq(t, err, nil)
			c.Close()
		},
		"require_auth": func(t *testing.T) {
			eq(t, must(t, "host=h require_auth=scram-sha-256").Config.RequireAuth, "scram-sha-256")
			_, err := parse(t, "host=h require_auth=bogus")
			keywordErr(t, err, "require_auth")
		},
		"ssl_min_protocol_version": func(t *testing.T) {
			r := must(t, "host=h sslmode=prefer ssl_min_protocol_version=TLSv1.3")
			eq(t, r.Config.TLSConfig.MinVersion, uint16(tls.VersionTLS13))
			eq(t, must(t, "host=h").Config.TLSConfig.MinVersion, uint16(tls.VersionTLS12))
		},
		"ssl_max_protocol_version": func(t *testing.T) {
			eq(t, must(t, "host=h sslmode=require ssl_max_protocol_version=TLSv1.2").Config.TLSConfig.MaxVersion, uint16(tls.VersionTLS12))
			_, err := parse(t, "host=h ssl_max_protocol_version=TLSv1.1")
			keywordErr(t, err, "ssl_max_protocol_version")
		},
		"gssencmode": func(t *testing.T) {
			notSent(t, "gssencmode=prefer", "gssencmode", Ignored)
			refused(t, "host=h gssencmode=require", "gssencmode")
		},
		"krbsrvname":    func(t *testing.T) { eq(t, must(t, "host=h krbsrvname=pgsrv").Config.KerberosSrvName, "pgsrv") },
		"gsslib":        func(t *testing.T) { notSent(t, "gsslib=gssapi", "gsslib", Ignored) },
		"gssdelegation": func(t *testing.T) { notSent(t, "gssdelegation=1", "gssdelegation", Ignored) },
		"replication":   func(t *testing.T) { notSent(t, "replication=true", "replication", Ignored) },
		"target_session_attrs": func(t *testing.T) {
			eq(t, must(t, "host=h target_session_attrs=read-write").Config.ValidateConnect != nil, true)
			eq(t, must(t, "host=h target_session_attrs=any").Config.ValidateConnect == nil, true)
		},
		"load_balance_hosts": func(t *testing.T) {
			r := must(t, "host=a,b port=1,2 load_balance_hosts=random")
			eq(t, r.Config.Host, "a") // in order
			notSent(t, "load_balance_hosts=random", "load_balance_hosts", Ignored)
		},
		"scram_client_key": func(t *testing.T) {
			refused(t, "host=h scram_client_key=abc", "scram_client_key")
			eq(t, decision(t, must(t, "host=h scram_client_key=abc password=pw"), "scram_client_key").Action, Ignored)
		},
		"scram_server_key": func(t *testing.T) {
			refused(t, "host=h scram_server_key=abc", "scram_server_key")
			notSent(t, "scram_server_key=abc password=pw", "scram_server_key", Ignored)
		},
		"sslkeylogfile":        func(t *testing.T) { notSent(t, "sslkeylogfile=/tmp/keys", "sslkeylogfile", Ignored) },
		"min_protocol_version": func(t *testing.T) { eq(t, must(t, "host=h min_protocol_version=3.2").Config.MinProtocolVersion, "3.2") },
		"max_protocol_version": func(t *testing.T) { eq(t, must(t, "host=h max_protocol_version=3.2").Config.MaxProtocolVersion, "3.2") },
		"oauth_issuer":         func(t *testing.T) { notSent(t, "oauth_issuer=https://issuer.example", "oauth_issuer", Ignored) },
		"oauth_client_id":      func(t *testing.T) { notSent(t, "oauth_client_id=x", "oauth_client_id", Ignored) },
		"oauth_client_secret": func(t *testing.T) {
			notSent(t, "oauth_client_secret=hush", "oauth_client_secret", Ignored)
			eq(t, decision(t, must(t, "host=h oauth_client_secret=hush"), "oauth_client_secret").Value, mask)
		},
		"oauth_scope": func(t *testing.T) { notSent(t, "oauth_scope=x", "oauth_scope", Ignored) },
		"authtype":    func(t *testing.T) { notSent(t, "authtype=x", "authtype", Ignored) },
		"tty":         func(t *testing.T) { notSent(t, "tty=/dev/null", "tty", Ignored) },
	}
	for _, k := range Keywords {
		check, ok := checks[k.Name]
		if !ok {
			t.Errorf("keyword %s has no check", k.Name)
			continue
		}
		t.Run(k.Name, check)
	}
	if len(checks) != len(Keywords) {
		t.Errorf("%d checks for %d keywords", len(checks), len(Keywords))
	}
	// Every keyword is accepted by the parser, and a usual decision that is
	// not Refused is what an ordinary value gets.
	for _, k := range Keywords {
		if _, err := Parse("host=h "+k.Name+"=''", o(t)); err != nil {
			var se *ServiceError
			var ke *KeywordError
			if errors.As(err, &ke) && strings.Contains(ke.Msg, "invalid connection option") {
				t.Errorf("%s: %v", k.Name, err)
			}
			_ = errors.As(err, &se)
		}
	}
}
