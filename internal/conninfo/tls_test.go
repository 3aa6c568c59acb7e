package conninfo

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TLS versions apply to every TLS config, the primary's and the fallbacks'.
func TestTLSVersionsEverywhere(t *testing.T) {
	r := mustParse(t, "host=a,b,c sslmode=prefer ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.3", opts(t))
	n := 0
	for _, tc := range append([]*tls.Config{r.Config.TLSConfig}, fallbackTLS(r)...) {
		if tc == nil {
			continue
		}
		n++
		eq(t, tc.MinVersion, uint16(tls.VersionTLS13))
		eq(t, tc.MaxVersion, uint16(tls.VersionTLS13))
	}
	eq(t, n, 3)
	// libpq's default minimum, TLSv1.2, and no maximum.
	r = mustParse(t, "host=a,b sslmode=allow", opts(t))
	for _, tc := range append([]*tls.Config{r.Config.TLSConfig}, fallbackTLS(r)...) {
		if tc != nil {
			eq(t, tc.MinVersion, uint16(tls.VersionTLS12))
			eq(t, tc.MaxVersion, uint16(0))
		}
	}
	// A handshake honours them: TLSv1 allowed explicitly.
	p := newPKI(t)
	r = mustParse(t, "host=db.example sslmode=require ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1.2", opts(t))
	eq(t, p.handshake(t, r.Config.TLSConfig), nil)
}

func fallbackTLS(r *Result) []*tls.Config {
	var out []*tls.Config
	for _, f := range r.Config.Fallbacks {
		out = append(out, f.TLSConfig)
	}
	return out
}

func TestVerification(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	hs := func(conn string, o Options) error {
		t.Helper()
		return p.handshake(t, mustParse(t, conn, o).Config.TLSConfig)
	}
	o := opts(t)
	eq(t, hs("host=db.example sslmode=verify-full sslrootcert="+p.caFile, o), nil)
	eq(t, hs("host=127.0.0.1 sslmode=verify-full sslrootcert="+p.caFile, o), nil)
	if err := hs("host=wrong.example sslmode=verify-full sslrootcert="+p.caFile, o); err == nil {
		t.Fatal("verify-full accepted another name")
	}
	if err := hs("host=wrong.example sslmode=verify-full sslsni=0 sslrootcert="+p.caFile, o); err == nil {
		t.Fatal("verify-full with sslsni=0 accepted another name")
	}
	eq(t, hs("host=wrong.example sslmode=verify-ca sslrootcert="+p.caFile, o), nil)
	if err := hs("host=db.example sslmode=verify-ca sslrootcert="+other.caFile, o); err == nil {
		t.Fatal("verify-ca accepted another CA")
	}
	eq(t, hs("host=db.example sslmode=require", o), nil)
	// require with a root certificate verifies it, as libpq: explicit or
	// ~/.postgresql/root.crt.
	if err := hs("host=db.example sslmode=require sslrootcert="+other.caFile, o); err == nil {
		t.Fatal("require with a root certificate did not verify")
	}
	data, _ := os.ReadFile(other.caFile)
	write(t, filepath.Join(o.HomeDir, ".postgresql", "root.crt"), string(data))
	r := mustParse(t, "host=db.example sslmode=require", o)
	if !strings.Contains(decision(t, r, "sslmode").Reason, "verify-ca") {
		t.Fatalf("reason %q", decision(t, r, "sslmode").Reason)
	}
	if err := p.handshake(t, r.Config.TLSConfig); err == nil {
		t.Fatal("require with ~/.postgresql/root.crt did not verify")
	}
	eq(t, mustParse(t, "host=db.example sslmode=verify-full", o).Config.TLSConfig.RootCAs != nil, true)
}

func TestVerificationRefusals(t *testing.T) {
	for conn, kw := range map[string]string{
		"host=h sslmode=verify-full":                     "sslmode",     // no root certificate: pgconn would trust the system's
		"host=h sslmode=verify-ca sslrootcert=/nonexist": "sslrootcert", // as libpq
		"host=h sslmode=require sslrootcert=system":      "sslmode",     // libpq 16+: system needs verify-full
		"host=h sslnegotiation=direct":                   "sslnegotiation",
		"host=h sslmode=allow sslnegotiation=direct":     "sslnegotiation",
		"host=h gssencmode=require":                      "gssencmode",
	} {
		r, err := Parse(conn, opts(t))
		keywordErr(t, err, kw)
		if r == nil || r.Config != nil || len(r.Decisions) == 0 {
			t.Errorf("%s: want decisions and no config, got %+v", conn, r)
		}
	}
	// sslrootcert=system alone means verify-full.
	r := mustParse(t, "host=db.example sslrootcert=system", opts(t))
	eq(t, len(r.Config.Fallbacks), 0)
	eq(t, r.Config.TLSConfig.ServerName, "db.example")
	eq(t, r.Config.TLSConfig.InsecureSkipVerify, false)
	// No TLS at all: nothing to verify, nothing refused.
	for _, conn := range []string{"host=/tmp sslmode=verify-full", "host=h sslmode=disable sslrootcert=/nonexistent sslcert=/x"} {
		r := mustParse(t, conn, opts(t))
		eq(t, r.Config.TLSConfig == nil, true)
	}
}

func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	o := opts(t)
	cert, key := p.client(t, 0o600)
	// Defaults in ~/.postgresql.
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	write(t, filepath.Join(o.HomeDir, ".postgresql", "postgresql.crt"), string(c))
	write(t, filepath.Join(o.HomeDir, ".postgresql", "postgresql.key"), string(k))
	eq(t, len(mustParse(t, "host=h sslmode=require", o).Config.TLSConfig.Certificates), 1)
	// An explicit certificate that does not exist: none sent, a warning.
	r := mustParse(t, "host=h sslmode=require sslcert=/nonexistent", o)
	eq(t, len(r.Config.TLSConfig.Certificates), 0)
	eq(t, len(r.Warnings), 1)
	// An OpenSSL engine key.
	_, err := Parse("host=h sslmode=require sslcert="+cert+" sslkey=pkcs11:id_01", o)
	keywordErr(t, err, "sslkey")
	// Key permissions, as libpq: 0600 for the user's own, 0640 if root's.
	os.Chmod(key, 0o640)
	_, err = Parse("host=h sslmode=require sslcert="+cert+" sslkey="+key, o)
	if os.Getuid() == 0 {
		eq(t, err, nil)
	} else {
		keywordErr(t, err, "sslkey")
	}
	os.Chmod(key, 0o604)
	_, err = Parse("host=h sslmode=require sslcert="+cert+" sslkey="+key, o)
	keywordErr(t, err, "sslkey")
	_, err = Parse("host=h sslmode=require sslcert="+cert+" sslkey="+t.TempDir(), o)
	keywordErr(t, err, "sslkey")
}

// sslpassword decrypts an encrypted key, through pgconn's callback; it is
// in no error.
func TestSSLPassword(t *testing.T) {
	p := newPKI(t)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "repl"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &rk.PublicKey, p.caKey)
	cert := p.write(t, "enc.crt", "CERTIFICATE", der, 0o644)
	//lint:ignore SA1019 libpq's (and pgconn's) legacy PEM encryption is what is tested
	blk, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), []byte("Kennwort-42"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(p.dir, "enc.key")
	os.WriteFile(key, pem.EncodeToMemory(blk), 0o600)
	r := mustParse(t, "host=h sslmode=require sslcert="+cert+" sslkey="+key+" sslpassword=Kennwort-42", opts(t))
	eq(t, len(r.Config.TLSConfig.Certificates), 1)
	for _, bad := range []string{"sslpassword=wrong-Kennwort", ""} {
		_, err = Parse("host=h sslmode=require sslcert="+cert+" sslkey="+key+" "+bad, opts(t))
		keywordErr(t, err, "sslpassword")
		if strings.Contains(err.Error(), "Kennwort") {
			t.Fatalf("password in error: %v", err)
		}
	}
}

func TestRevocation(t *testing.T) {
	p := newPKI(t)
	o := opts(t)
	hour := time.Hour
	nowT := time.Now()
	valid := p.crl(t, "valid.crl", nowT.Add(-hour), nowT.Add(hour))
	revoked := p.crl(t, "revoked.crl", nowT.Add(-hour), nowT.Add(hour), p.server.SerialNumber)
	expired := p.crl(t, "expired.crl", nowT.Add(-2*hour), nowT.Add(-hour))
	garbage := write(t, filepath.Join(p.dir, "garbage.crl"), "not a CRL\n")
	base := "host=db.example sslmode=verify-full sslrootcert=" + p.caFile
	hs := func(conn string) error {
		t.Helper()
		return p.handshake(t, mustParse(t, conn, o).Config.TLSConfig)
	}
	eq(t, hs(base+" sslcrl="+valid), nil)
	eq(t, hs(base), nil) // no CRL at all
	for conn, want := range map[string]string{
		base + " sslcrl=" + revoked:        "revoked",
		base + " sslcrl=" + expired:        "expired",
		base + " sslcrldir=" + t.TempDir(): "unable to get certificate CRL",
		"host=x sslmode=verify-ca sslrootcert=" + p.caFile + " sslcrl=" + revoked: "revoked",
		"host=x sslmode=require sslrootcert=" + p.caFile + " sslcrl=" + revoked:   "revoked",
		base + " sslsni=0 sslcrl=" + revoked:                                      "revoked",
	} {
		if err := hs(conn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", conn, err, want)
		}
	}
	// A file that cannot be loaded disables the check, as libpq, loudly.
	for _, f := range []string{"/nonexistent.crl", garbage} {
		r := mustParse(t, base+" sslcrl="+f, o)
		if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "NOT checked") {
			t.Errorf("%s: warnings %v", f, r.Warnings)
		}
		eq(t, p.handshake(t, r.Config.TLSConfig), nil)
	}
	// The default ~/.postgresql/root.crl, when nothing is given.
	data, _ := os.ReadFile(revoked)
	write(t, filepath.Join(o.HomeDir, ".postgresql", "root.crl"), string(data))
	if err := hs(base); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("default root.crl: %v", err)
	}
	os.Remove(filepath.Join(o.HomeDir, ".postgresql", "root.crl"))
	// CRLs are read at every handshake (they expire; libpq reads them per
	// connection): a CRL replaced after Parse takes effect.
	live := filepath.Join(t.TempDir(), "live.crl")
	copyFile(t, valid, live)
	r := mustParse(t, base+" sslcrl="+live, o)
	eq(t, p.handshake(t, r.Config.TLSConfig), nil)
	copyFile(t, revoked, live)
	if err := p.handshake(t, r.Config.TLSConfig); err == nil {
		t.Fatal("a CRL updated after Parse was not used")
	}
	// Not verified (prefer): nothing to check, as libpq.
	r = mustParse(t, "host=db.example sslmode=prefer sslcrl="+revoked, o)
	eq(t, decision(t, r, "sslcrl").Action, Ignored)
	eq(t, p.handshake(t, r.Config.TLSConfig), nil)
}

// OpenSSL's X509_V_FLAG_CRL_CHECK_ALL, which libpq sets: every certificate
// of the chain needs a CRL of its issuer.
func TestRevocationWholeChain(t *testing.T) {
	p := newPKI(t)
	ik, _ := rsa.GenerateKey(rand.Reader, 2048)
	itmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next()), Subject: pkix.Name{CommonName: "intermediate CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	ider, _ := x509.CreateCertificate(rand.Reader, itmpl, p.ca, &ik.PublicKey, p.caKey)
	inter, _ := x509.ParseCertificate(ider)
	// The server certificate, issued by the intermediate.
	lk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ltmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next()), Subject: pkix.Name{CommonName: "db.example"}, DNSNames: []string{"db.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	lder, _ := x509.CreateCertificate(rand.Reader, ltmpl, inter, &lk.PublicKey, ik)
	p.serverTL = tls.Certificate{Certificate: [][]byte{lder, ider}, PrivateKey: lk}
	rootCRL := p.crl(t, "root.crl", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	base := "host=db.example sslmode=verify-full sslrootcert=" + p.caFile
	r := mustParse(t, base+" sslcrl="+rootCRL, opts(t))
	if err := p.handshake(t, r.Config.TLSConfig); err == nil || !strings.Contains(err.Error(), "unable to get certificate CRL") {
		t.Fatalf("a chain without the intermediate's CRL: %v", err)
	}
	ider2, _ := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}, inter, ik)
	both := filepath.Join(p.dir, "both.crl")
	rootPEM, _ := os.ReadFile(rootCRL)
	os.WriteFile(both, append(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ider2})...), 0o644)
	r = mustParse(t, base+" sslcrl="+both, opts(t))
	eq(t, p.handshake(t, r.Config.TLSConfig), nil)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
