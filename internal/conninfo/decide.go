package conninfo

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// decideAll records a decision for every keyword that was set, then works
// out the effective settings (user, password, TLS) and refines decisions
// and refusals with them.
func (p *parser) decideAll() {
	for _, k := range Keywords {
		st, ok := p.s[k.Name]
		if !ok {
			continue
		}
		v := st.value
		if k.Secret && v != "" {
			v = mask
		}
		p.decisions[k.Name] = &Decision{Keyword: k.Name, Value: v, Source: st.source, Action: k.Action, Reason: k.How}
	}
	p.decideUser()
	p.decidePassword()
	p.decideTLS()
	p.decideOthers()
}

func (p *parser) note(kw string, a Action, format string, args ...any) {
	if d, ok := p.decisions[kw]; ok && !p.refused[kw] {
		d.Action, d.Reason = a, fmt.Sprintf(format, args...)
	}
}

func (p *parser) database() string {
	if p.opts.Database != "" {
		return p.opts.Database
	}
	return "postgres"
}

func (p *parser) decideUser() {
	p.user = p.get("user")
	if p.user != "" {
		return
	}
	// libpq: the OS user name (pg_fe_getauthname).
	u, err := user.Current()
	if err != nil || u.Username == "" {
		p.refuse("user", "no user given and the OS user name cannot be found: %v", err)
		return
	}
	p.user = u.Username
}

// decidePassword: the password keyword (string, service or PGPASSWORD),
// else the passfile, as libpq's connectOptions2.
func (p *parser) decidePassword() {
	if pw := p.get("password"); pw != "" {
		p.password, p.passwordSource = pw, p.s["password"].source
		p.note("passfile", Ignored, "not read: a password is given (libpq reads the passfile only without one)")
		return
	}
	p.note("password", Honoured, "empty: the password is looked up in the passfile, as libpq does")
	path := p.get("passfile")
	if path == "" {
		if p.home == "" {
			return
		}
		path = filepath.Join(p.home, ".pgpass")
	}
	if _, err := os.Stat(path); err != nil {
		// libpq skips it silently; a file named and missing is worth a word.
		if p.get("passfile") != "" {
			p.warn("passfile %q cannot be read (%v): no password from it", path, errors.Unwrap(err))
		}
		p.note("passfile", Honoured, "the file cannot be read (%v): no password from it, as libpq", errors.Unwrap(err))
		return
	}
	db := p.database()
	var first *passMatch
	firstIdx := 0
	results := make([]*passMatch, len(p.targets))
	for i, t := range p.targets {
		m, warn := lookupPassword(path, t.passHost(), fmt.Sprint(t.port), db, p.user)
		if warn != "" {
			p.warn("%s", warn)
			p.note("passfile", Ignored, "%s", warn)
			return
		}
		results[i] = m
		if m != nil && first == nil {
			first, firstIdx = m, i
		}
	}
	if first == nil {
		p.note("passfile", Honoured, "read by standbyd: no line matches user %q and database %q or \"replication\" for %s", p.user, db, p.targets[0].passHost())
		return
	}
	p.password = first.password
	p.passwordSource = fmt.Sprintf("passfile %s:%d", path, first.line)
	if first.replication {
		p.passwordSource += " (database replication)"
	}
	p.note("passfile", Honoured, "read by standbyd: the password is on line %d%s", first.line, map[bool]string{true: " (the walreceiver's line for database replication: no line for the channel's database)", false: ""}[first.replication])
	for i, m := range results {
		if i != firstIdx && (m == nil || m.password != first.password) {
			p.warn("passfile %s gives host %d (%s) no or another password than host %d: pgconn has one password for all hosts, the one of host %d is used", path, i+1, p.targets[i].passHost(), firstIdx+1, firstIdx+1)
			break
		}
	}
}

// tlsPolicy is what standbyd adds to, or decides for, pgconn's TLS.
type tlsPolicy struct {
	used      bool   // some host is reached over TCP and sslmode is not disable
	mode      string // effective sslmode
	root      string // effective sslrootcert ("" none, "system", a file)
	cert, key string // effective client certificate and key ("" none)
	verifying bool   // the server certificate is verified (chain)
	min, max  uint16
	noSNI     bool // sslsni=0: no SNI, also with verify-full
	crlFile   string
	crlDir    string
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (p *parser) decideTLS() {
	pol := &p.sslPolicy
	pol.mode = p.get("sslmode")
	explicitMode := pol.mode != ""
	if !explicitMode {
		pol.mode = "prefer"
	}
	root := p.get("sslrootcert")
	if root == "system" {
		// libpq 16+: sslrootcert=system implies verify-full and refuses less.
		if !explicitMode {
			pol.mode = "verify-full"
		} else if pol.mode != "verify-full" {
			p.refuse("sslmode", "weak sslmode %q may not be used with sslrootcert=system (use \"verify-full\"), as libpq refuses it", pol.mode)
		}
	}
	if p.get("sslnegotiation") == "direct" {
		switch pol.mode {
		case "disable", "allow", "prefer":
			p.refuse("sslnegotiation", "weak sslmode %q may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\"), as libpq refuses it", pol.mode)
		}
	}
	anyTCP := false
	for _, t := range p.targets {
		anyTCP = anyTCP || t.tcp()
	}
	pol.used = anyTCP && pol.mode != "disable"
	pol.min = tlsVersion(p.get("ssl_min_protocol_version"))
	if pol.min == 0 {
		pol.min = tls.VersionTLS12
	}
	pol.max = tlsVersion(p.get("ssl_max_protocol_version"))
	if v := p.get("sslsni"); p.isSet("sslsni") && (v == "" || v[0] != '1') {
		pol.noSNI = true
	}
	if !pol.used {
		why := "sslmode=disable"
		if !anyTCP {
			why = "every host is a Unix socket, where libpq and pgconn never use TLS"
		}
		for _, kw := range []string{"sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslcertmode", "sslsni", "sslnegotiation", "ssl_min_protocol_version", "ssl_max_protocol_version", "channel_binding"} {
			p.note(kw, Ignored, "no TLS: %s", why)
		}
		p.note("sslmode", Honoured, "no TLS: %s", why)
		return
	}
	verify := pol.mode == "verify-ca" || pol.mode == "verify-full"

	// Root certificate: explicit, else ~/.postgresql/root.crt if present.
	switch {
	case root == "system":
		pol.root = "system"
	case root != "":
		if fileExists(root) {
			pol.root = root
		} else if verify {
			p.refuse("sslrootcert", "root certificate file %q does not exist; either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification (libpq refuses it too; pgconn would fall back on the system's roots)", root)
		} else {
			p.warn("sslrootcert %q does not exist: with sslmode=%s the server certificate is not verified, as libpq does", root, pol.mode)
			p.note("sslrootcert", Ignored, "the file does not exist: with sslmode=%s the server certificate is not verified, as libpq does", pol.mode)
		}
	default:
		def := ""
		if p.home != "" {
			def = filepath.Join(p.home, ".postgresql", "root.crt")
		}
		if def != "" && fileExists(def) {
			pol.root = def
		} else if verify {
			if def == "" {
				def = "~/.postgresql/root.crt"
			}
			p.refuse("sslmode", "sslmode=%s needs a root certificate: %s does not exist and sslrootcert is not set; either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode (libpq refuses it too; pgconn would fall back on the system's roots)", pol.mode, def)
		}
	}
	pol.verifying = verify || (pol.mode == "require" && pol.root != "")
	switch {
	case pol.mode == "require" && pol.root != "":
		p.note("sslmode", Honoured, "require with a root certificate (%s): the chain is verified, as libpq's verify-ca", pol.root)
	case pol.mode == "allow" || pol.mode == "prefer":
		p.note("sslmode", Honoured, "passed to pgconn: %s, TLS tried %s plaintext and the certificate not verified (libpq would verify it against a root certificate, then fall back to plaintext: nothing is lost)", pol.mode, map[bool]string{true: "before", false: "after"}[pol.mode == "prefer"])
	}

	p.decideClientCert()
	p.decideCRL()
	if pol.noSNI {
		p.note("sslsni", Honoured, "0: no SNI is sent%s", map[bool]string{true: "; the host name is still verified (verify-full)", false: ""}[pol.mode == "verify-full"])
	}
}

// decideClientCert mirrors libpq's initialize_SSL for the client
// certificate: a missing certificate file sends none; a certificate
// without its key, or a key anyone else may read, is an error.
func (p *parser) decideClientCert() {
	pol := &p.sslPolicy
	if p.get("sslcertmode") == "disable" {
		p.note("sslcert", Ignored, "sslcertmode=disable: no client certificate is sent")
		p.note("sslkey", Ignored, "sslcertmode=disable: no client certificate is sent")
		return
	}
	cert, key := p.get("sslcert"), p.get("sslkey")
	certExplicit := cert != ""
	if cert == "" && p.home != "" {
		cert = filepath.Join(p.home, ".postgresql", "postgresql.crt")
	}
	if key == "" && p.home != "" {
		key = filepath.Join(p.home, ".postgresql", "postgresql.key")
	}
	if cert == "" {
		return
	}
	if _, err := os.Stat(cert); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.refuse("sslcert", "could not open certificate file %q: %v", cert, errors.Unwrap(err))
			return
		}
		if certExplicit {
			p.warn("sslcert %q does not exist: no client certificate is sent, as libpq does", cert)
			p.note("sslcert", Ignored, "the file does not exist: no client certificate is sent, as libpq does")
		}
		p.note("sslkey", Ignored, "no client certificate (%s does not exist), so no key", cert)
		return
	}
	if strings.Contains(key, ":") {
		p.refuse("sslkey", "an OpenSSL engine key (engine:key id) cannot be used by pgconn")
		return
	}
	if key == "" {
		p.refuse("sslkey", "certificate present, but not private key file (no home directory for the default)")
		return
	}
	fi, err := os.Stat(key)
	if err != nil {
		p.refuse("sslkey", "certificate present, but not private key file %q", key)
		return
	}
	if !fi.Mode().IsRegular() {
		p.refuse("sslkey", "private key file %q is not a regular file", key)
		return
	}
	// libpq: root-owned keys may be u=rw,g=r (0640), others u=rw (0600).
	loose := fi.Mode().Perm()&0o077 != 0
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
		loose = fi.Mode().Perm()&0o037 != 0
	}
	if loose {
		p.refuse("sslkey", "private key file %q has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root (libpq refuses it too)", key)
		return
	}
	pol.cert, pol.key = cert, key
}

// decideCRL mirrors libpq: CRLs are used while the certificate is verified;
// sslcrl/sslcrldir, else ~/.postgresql/root.crl; a file that cannot be
// loaded disables the check (libpq: silently; standbyd warns).
func (p *parser) decideCRL() {
	pol := &p.sslPolicy
	file, dir := p.get("sslcrl"), p.get("sslcrldir")
	if !pol.verifying {
		for _, kw := range []string{"sslcrl", "sslcrldir"} {
			p.note(kw, Ignored, "with sslmode=%s and no root certificate the server certificate is not verified, so there is no chain to check (libpq checks CRLs only while verifying)", pol.mode)
		}
		return
	}
	explicit := file != "" || dir != ""
	if !explicit && p.home != "" {
		file = filepath.Join(p.home, ".postgresql", "root.crl")
	}
	pol.crlFile, pol.crlDir = file, dir
	if file != "" {
		if _, n, err := loadCRLFile(file); err != nil || n == 0 {
			if !explicit {
				return // the default file is usually absent: nothing to say
			}
			why := "it holds no certificate or CRL"
			if err != nil {
				why = err.Error()
			}
			msg := fmt.Sprintf("sslcrl %q cannot be loaded (%s): certificate revocation is NOT checked, as libpq does in this case", file, why)
			p.warn("%s", msg)
			p.note("sslcrl", Honoured, "%s", msg)
			p.note("sslcrldir", Ignored, "not used: sslcrl cannot be loaded, and libpq then checks no CRL at all")
			return
		}
	}
	if dir != "" {
		if _, err := os.ReadDir(dir); err != nil {
			p.warn("sslcrldir %q cannot be read (%v): every handshake will fail for want of CRLs, as with libpq", dir, err)
		}
	}
}

func (p *parser) decideOthers() {
	if p.get("gssencmode") == "require" {
		p.refuse("gssencmode", "gssencmode=require cannot be honoured: pgconn has no GSSAPI encryption; use TLS (sslmode=verify-full) for this channel")
	}
	for _, kw := range []string{"scram_client_key", "scram_server_key"} {
		if !p.isSet(kw) {
			continue
		}
		switch {
		case p.get(kw) == "":
			p.note(kw, Ignored, "empty")
		case p.password != "":
			p.note(kw, Ignored, "a password is available (%s): SCRAM authentication derives the same keys from it", p.passwordSource)
		default:
			p.refuse(kw, "pgconn cannot authenticate with pre-computed SCRAM keys, and no password is available (password, PGPASSWORD or passfile)")
		}
	}
	p.note("dbname", Ignored, "reported, not used: the channel connects to %q (channel.database); the walreceiver itself uses dbname=replication, only for the passfile lookup", p.database())
	app, usedA := p.applicationName()
	if usedA {
		p.note("application_name", Honoured, "replaces %%a in channel.application_name: the channel's application_name is %q", app)
		if p.get("application_name") == "" {
			p.note("fallback_application_name", Honoured, "replaces %%a in channel.application_name (application_name is not set): %q", app)
		}
	} else {
		p.note("application_name", Ignored, "the channel's application_name is %q (channel.application_name), so that it is never mistaken for the walreceiver", app)
		p.note("fallback_application_name", Ignored, "an application_name is always set: %q (channel.application_name)", app)
	}
	if enc, ok := p.clientEncoding(); ok {
		p.note("client_encoding", Honoured, "sent as client_encoding=%s", enc)
	} else {
		p.note("client_encoding", Ignored, "auto: the locale's encoding is not one standbyd knows, so none is sent (libpq sends none either)")
	}
	if p.isSet("connect_timeout") {
		if d := p.connectTimeout(); d > 0 {
			p.note("connect_timeout", Honoured, "%s per host address (pgconn)", d)
		} else {
			p.note("connect_timeout", Honoured, "0 or less: no bound per host address, as libpq (the caller's deadline still applies)")
		}
	}
	unix := false
	for _, t := range p.targets {
		unix = unix || !t.tcp()
	}
	if p.isSet("requirepeer") && !unix {
		p.note("requirepeer", Ignored, "no host is a Unix socket: libpq checks the peer only there")
	}
	if p.isSet("keepalives") && !p.keepalivesOn() {
		p.note("keepalives", Honoured, "0: TCP keepalives off")
	}
	if p.svcName != "" {
		p.note("service", Honoured, "expanded by standbyd from %s", p.svcFile)
	} else {
		p.note("servicefile", Ignored, "no service is used")
	}
	for _, g := range envGUCs {
		v := p.getenv(g.env)
		if v == "" || strings.EqualFold(v, "default") {
			continue
		}
		p.extra = append(p.extra, Decision{Keyword: g.env, Value: v, Source: "environment " + g.env, Action: Honoured,
			Reason: fmt.Sprintf("sent as the %s startup parameter, as libpq does", g.param)})
	}
}

// applicationName is the channel's application_name, and whether %a used
// the string's.
func (p *parser) applicationName() (string, bool) {
	tmpl := p.opts.ApplicationName
	if tmpl == "" {
		tmpl = "standbyd"
	}
	theirs := p.get("application_name")
	if theirs == "" {
		theirs = p.get("fallback_application_name")
	}
	var b strings.Builder
	used := false
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '%' && i+1 < len(tmpl) {
			switch tmpl[i+1] {
			case 'a':
				b.WriteString(theirs)
				used = true
				i++
				continue
			case '%':
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(tmpl[i])
	}
	return b.String(), used
}

// clientEncoding is the client_encoding to send: the given one (auto
// resolved from the locale as libpq's pg_get_encoding_from_locale), else
// UTF8. ok is false when auto resolves to nothing.
func (p *parser) clientEncoding() (string, bool) {
	enc := p.get("client_encoding")
	if enc == "" {
		return "UTF8", true
	}
	if enc != "auto" {
		return enc, true
	}
	loc := ""
	for _, v := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if loc = p.getenv(v); loc != "" {
			break
		}
	}
	if loc == "" || loc == "C" || loc == "POSIX" {
		return "SQL_ASCII", true
	}
	_, codeset, _ := strings.Cut(loc, ".")
	codeset, _, _ = strings.Cut(codeset, "@")
	switch strings.ToUpper(strings.ReplaceAll(codeset, "-", "")) {
	case "UTF8":
		return "UTF8", true
	case "ISO88591":
		return "LATIN1", true
	case "ISO885915":
		return "LATIN9", true
	case "ANSI_X3.41968", "ASCII":
		return "SQL_ASCII", true
	}
	return "", false
}

// connectTimeout is libpq's: 1 counts as 2 seconds, 0 or less waits
// indefinitely; absent, Options.ConnectTimeout.
func (p *parser) connectTimeout() time.Duration {
	if !p.isSet("connect_timeout") {
		return p.opts.ConnectTimeout
	}
	n, _ := parseInt(p.get("connect_timeout"))
	switch {
	case n <= 0:
		return 0
	case n == 1:
		n = 2
	}
	return time.Duration(n) * time.Second
}

func (p *parser) keepalivesOn() bool {
	if !p.isSet("keepalives") {
		return true
	}
	n, _ := parseInt(p.get("keepalives"))
	return n != 0
}
