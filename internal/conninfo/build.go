package conninfo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// placeholderPassword is handed to pgconn so that it never reads a passfile
// itself (it does only when the password is empty); the real password, or
// none, replaces it on the returned config.
const placeholderPassword = "standbyd-placeholder"

// pgconnString builds the string handed to pgconn.ParseConfigWithOptions:
// only keywords pgconn understands, every one explicit, so that nothing
// pgconn reads from the process environment (PGHOST ... PGSSLPASSWORD,
// PGTZ) or the home directory (~/.pgpass, ~/.postgresql/*) can change the
// result. It holds no secret. keys lists its keywords, for
// ConnStringAllowedKeys (pgconn then fails closed on anything else).
func (p *parser) pgconnString() (s string, keys []string, err error) {
	var b strings.Builder
	add := func(k, v string) {
		keys = append(keys, k)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quote(v))
		b.WriteByte(' ')
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	var hosts, ports []string
	for _, t := range p.targets {
		hosts = append(hosts, t.dialHost())
		ports = append(ports, strconv.Itoa(int(t.port)))
	}
	pol := p.sslPolicy
	mode := pol.mode
	root, cert, key := pol.root, pol.cert, pol.key
	if !pol.used {
		root, cert, key = "", "", "" // pgconn reads sslrootcert even for disable
	}
	add("host", strings.Join(hosts, ","))
	add("port", strings.Join(ports, ","))
	add("dbname", p.database())
	add("user", p.user)
	add("password", placeholderPassword)
	add("passfile", "")
	add("connect_timeout", "0") // Config.ConnectTimeout is set afterwards
	add("sslmode", mode)
	add("sslnegotiation", or(p.get("sslnegotiation"), "postgres"))
	add("sslcertmode", or(p.get("sslcertmode"), "allow"))
	add("sslrootcert", root)
	add("sslcert", cert)
	add("sslkey", key)
	add("sslpassword", "") // given through GetSSLPassword
	add("sslsni", map[bool]string{true: "0", false: "1"}[pol.noSNI])
	add("krbsrvname", p.get("krbsrvname"))
	add("krbspn", "") // not a libpq keyword: pgconn's own, kept empty
	add("target_session_attrs", or(p.get("target_session_attrs"), "any"))
	add("min_protocol_version", p.get("min_protocol_version"))
	add("max_protocol_version", p.get("max_protocol_version"))
	add("channel_binding", or(p.get("channel_binding"), "prefer"))
	add("require_auth", p.get("require_auth"))

	// pgconn reads a service file whenever PGSERVICE is set in the process
	// environment, whatever the string says, and fails when it cannot find
	// it. Point it at the file our own lookup used; everything it could take
	// from there is explicit above.
	if realSvc := os.Getenv("PGSERVICE"); realSvc != "" {
		name, file := p.svcName, p.svcFile
		if name == "" {
			name = realSvc
			home, _ := os.UserHomeDir()
			_, file, err = findService(realSvc, os.Getenv("PGSERVICEFILE"), os.Getenv("PGSYSCONFDIR"), home)
			if err != nil {
				return "", nil, fmt.Errorf("PGSERVICE=%q is set in standbyd's environment and pgconn would read it: %w", realSvc, err)
			}
		}
		add("service", name)
		add("servicefile", file)
	}
	return b.String(), keys, nil
}

// build makes the pgconn config and applies standbyd's decisions to it.
func (p *parser) build() (*pgconn.Config, error) {
	s, keys, err := p.pgconnString()
	if err != nil {
		return nil, err
	}
	sslpassword := p.get("sslpassword")
	cfg, err := pgconn.ParseConfigWithOptions(s, pgconn.ParseConfigOptions{
		ConnStringAllowedKeys: keys,
		GetSSLPassword:        func(context.Context) string { return sslpassword },
	})
	if err != nil {
		return nil, p.pgconnError(err)
	}

	cfg.Password = p.password
	cfg.ConnectTimeout = p.connectTimeout()
	cfg.DialFunc = p.dialFunc()
	cfg.LookupFunc = p.lookupFunc(cfg.LookupFunc)

	// Startup parameters: exactly these, whatever pgconn or its environment
	// would have added (PGAPPNAME, PGOPTIONS, PGTZ ... in the process's).
	app, _ := p.applicationName()
	rp := map[string]string{"application_name": app}
	if enc, ok := p.clientEncoding(); ok {
		rp["client_encoding"] = enc
	}
	if o := p.get("options"); o != "" {
		rp["options"] = o
	}
	for _, g := range envGUCs {
		if v := p.getenv(g.env); v != "" && !strings.EqualFold(v, "default") {
			rp[g.param] = v
		}
	}
	cfg.RuntimeParams = rp

	pol := &p.sslPolicy
	cfg.TLSConfig = pol.adjustTLS(cfg.TLSConfig)
	for _, f := range cfg.Fallbacks {
		f.TLSConfig = pol.adjustTLS(f.TLSConfig)
	}
	return cfg, nil
}

// pgconnError turns a pgconn parse error into a keyword error where the
// cause is known. pgconn's own message quotes the string it was given,
// which holds no secret (see pgconnString); the inner error is used alone.
func (p *parser) pgconnError(err error) error {
	inner := errors.Unwrap(err)
	if inner == nil {
		return fmt.Errorf("pgconn refused the derived settings: %w", err)
	}
	msg := inner.Error()
	kw := ""
	switch {
	case strings.Contains(msg, "require_auth"):
		kw = "require_auth"
	case strings.Contains(msg, "CA file"), strings.Contains(msg, "CA to cert pool"), strings.Contains(msg, "system certificate pool"):
		kw = "sslrootcert"
	case strings.Contains(msg, "sslpassword"), strings.Contains(msg, "decrypt key"):
		kw = "sslpassword"
	case strings.Contains(msg, "private key") && p.keyIsEncrypted():
		// pgconn says only that it could not parse the key when the
		// password is wrong or missing; the key's PEM header says why.
		kw = "sslpassword"
		msg = "the key in sslkey is encrypted and sslpassword does not decrypt it"
	case strings.Contains(msg, "sslkey"):
		kw = "sslkey"
	case strings.Contains(msg, "cert"):
		kw = "sslcert"
	case strings.Contains(msg, "service"):
		return fmt.Errorf("pgconn re-reads the service named by PGSERVICE in standbyd's environment and failed (%v); unset PGSERVICE for standbyd and put service= in the connection string", inner)
	}
	if kw == "" {
		return fmt.Errorf("pgconn refused the derived settings: %v", inner)
	}
	return &KeywordError{Keyword: kw, Msg: msg}
}

// keyIsEncrypted tells whether sslkey names a PEM file whose key is
// encrypted (legacy "Proc-Type: 4,ENCRYPTED" or PKCS#8 "ENCRYPTED PRIVATE KEY").
func (p *parser) keyIsEncrypted() bool {
	path := p.get("sslkey")
	if path == "" {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("ENCRYPTED"))
}
