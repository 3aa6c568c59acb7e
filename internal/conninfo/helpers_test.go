package conninfo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"
)

// envMap is an injectable environment.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// opts are the channel defaults of the shipped configuration, with an empty
// environment and an empty home directory.
func opts(t *testing.T) Options {
	t.Helper()
	return Options{Database: "postgres", ApplicationName: "standbyd", Getenv: envMap(nil), HomeDir: t.TempDir(),
		ConnectTimeout: 10 * time.Second, TCPUserTimeout: 10 * time.Second,
		Keepalive: KeepaliveDefaults{Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}}
}

func mustParse(t *testing.T, s string, o Options) *Result {
	t.Helper()
	r, err := Parse(s, o)
	if err != nil {
		t.Fatalf("Parse(%q): %v", Redact(s), err)
	}
	return r
}

// keywordErr asserts err is (or joins) a *KeywordError for kw and returns it.
func keywordErr(t *testing.T, err error, kw string) *KeywordError {
	t.Helper()
	var ke *KeywordError
	if !errors.As(err, &ke) {
		t.Fatalf("want a KeywordError for %s, got %v", kw, err)
	}
	if ke.Keyword != kw {
		// errors.As finds the first; look through a join.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				if errors.As(e, &ke) && ke.Keyword == kw {
					return ke
				}
			}
		}
		t.Fatalf("want a KeywordError for %s, got %v", kw, err)
	}
	return ke
}

func decision(t *testing.T, r *Result, kw string) Decision {
	t.Helper()
	for _, d := range r.Decisions {
		if d.Keyword == kw {
			return d
		}
	}
	t.Fatalf("no decision for %s in %+v", kw, r.Decisions)
	return Decision{}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// allowedStartup are the startup parameters the server may see.
var allowedStartup = map[string]bool{"application_name": true, "client_encoding": true, "options": true, "datestyle": true, "timezone": true, "geqo": true}

func onlyLegitimateParams(t *testing.T, c *pgconn.Config) {
	t.Helper()
	for k := range c.RuntimeParams {
		if !allowedStartup[k] {
			t.Errorf("startup parameter %q would reach the server", k)
		}
	}
}

// pki is a throw-away certificate authority.
type pki struct {
	dir      string
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	caFile   string
	serial   int64
	serverTL tls.Certificate
	server   *x509.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serial: 1}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next()), Subject: pkix.Name{CommonName: "test root CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = p.write(t, "root.crt", "CERTIFICATE", der, 0o644)
	p.serverTL, p.server = p.leaf(t, "db.example", x509.ExtKeyUsageServerAuth)
	return p
}

func (p *pki) next() int64 { p.serial++; return p.serial }

func (p *pki) write(t *testing.T, name, typ string, der []byte, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f, mode)
	return f
}

// leaf makes a certificate signed by the CA, for DNS name cn and 127.0.0.1.
func (p *pki) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, c
}

// client writes a client certificate and its key (mode keyMode).
func (p *pki) client(t *testing.T, keyMode os.FileMode) (cert, key string) {
	t.Helper()
	tc, c := p.leaf(t, "streaming_replica", x509.ExtKeyUsageClientAuth)
	kd, _ := x509.MarshalECPrivateKey(tc.PrivateKey.(*ecdsa.PrivateKey))
	return p.write(t, "client.crt", "CERTIFICATE", c.Raw, 0o644), p.write(t, "client.key", "EC PRIVATE KEY", kd, keyMode)
}

// crl writes a CRL of the CA revoking the given serials, valid from
// thisUpdate to nextUpdate.
func (p *pki) crl(t *testing.T, name string, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) string {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(p.next()), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		RevokedCertificateEntries: entries}, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, "X509 CRL", der, 0o644)
}

// handshake runs the client side of a TLS handshake with cfg against a TLS
// server presenting the PKI's server certificate.
func (p *pki) handshake(t *testing.T, cfg *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.serverTL}, MinVersion: tls.VersionTLS10})
		if srv.Handshake() == nil {
			// TLS 1.3: the client's verdict arrives after the server's
			// handshake; read until it hangs up.
			_, _ = srv.Read(make([]byte, 1))
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, cfg)
	err = cl.Handshake()
	c.Close()
	<-done
	return err
}

// readSockopts reads the socket options of a TCP connection.
func readSockopts(t *testing.T, c net.Conn) map[string]int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	raw.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		out["keepalive"] = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		out["user_timeout"] = get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		out["idle"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		out["interval"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		out["count"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	return out
}

// dialOpts dials a local listener with the config's DialFunc and returns
// the client socket's options.
func dialOpts(t *testing.T, r *Result) map[string]int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := r.Config.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return readSockopts(t, c)
}

// fakeServer speaks just enough of the protocol to record what a client
// sends at startup: it refuses TLS ('N'), records the StartupMessage's
// parameters, and ends the session with a FATAL error.
type fakeServer struct {
	ln     net.Listener
	mu     sync.Mutex
	params []map[string]string
	wg     sync.WaitGroup
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *fakeServer) port() string { _, p, _ := net.SplitHostPort(s.ln.Addr().String()); return p }

func (s *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(c, c)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.StartupMessage:
			s.mu.Lock()
			p := map[string]string{}
			for k, v := range m.Parameters {
				p[k] = v
			}
			s.params = append(s.params, p)
			s.mu.Unlock()
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28000", Message: "fake server: recorded"})
			be.Flush()
			return
		default:
			return
		}
	}
}

func (s *fakeServer) startups() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.params...)
}

// connectOnce runs pgconn.ConnectConfig (which fails at the fake server's
// FATAL) and returns the startup parameters the server saw.
func connectOnce(t *testing.T, cfg *pgconn.Config, s *fakeServer) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgconn.ConnectConfig(ctx, cfg.Copy())
	if err == nil || !strings.Contains(err.Error(), "fake server") {
		t.Fatalf("connect: want the fake server's FATAL, got %v", err)
	}
	st := s.startups()
	if len(st) == 0 {
		t.Fatal("no startup message recorded")
	}
	return st[len(st)-1]
}
