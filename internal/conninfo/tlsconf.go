package conninfo

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// tlsVersion maps libpq's names (case-insensitive, as sslVerifyProtocolVersion)
// to crypto/tls versions; 0 for "" or an unknown name.
func tlsVersion(name string) uint16 {
	switch strings.ToLower(name) {
	case "tlsv1":
		return tls.VersionTLS10
	case "tlsv1.1":
		return tls.VersionTLS11
	case "tlsv1.2":
		return tls.VersionTLS12
	case "tlsv1.3":
		return tls.VersionTLS13
	}
	return 0
}

// adjustTLS returns a copy of one of pgconn's TLS configs with standbyd's
// decisions applied: protocol versions, no SNI with verify-full when
// sslsni=0, and the CRL check.
func (pol *tlsPolicy) adjustTLS(t *tls.Config) *tls.Config {
	if t == nil {
		return nil
	}
	t = t.Clone()
	t.MinVersion, t.MaxVersion = pol.min, pol.max
	// pgconn verifies the host name (verify-full) through ServerName, which
	// is also sent as SNI. With sslsni=0 libpq sends no SNI but still checks
	// the name: do the same by verifying in VerifyConnection.
	verifyName := ""
	if pol.noSNI && pol.mode == "verify-full" && !t.InsecureSkipVerify && t.ServerName != "" {
		verifyName = t.ServerName
		t.ServerName = ""
		t.InsecureSkipVerify = true
	}
	checkCRL := pol.verifying && (pol.crlFile != "" || pol.crlDir != "")
	if verifyName == "" && !checkCRL {
		return t
	}
	roots := t.RootCAs
	crlFile, crlDir := pol.crlFile, pol.crlDir
	prev := t.VerifyConnection
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		chains := cs.VerifiedChains
		if verifyName != "" || len(chains) == 0 {
			var err error
			if chains, err = verifyChains(cs.PeerCertificates, roots, verifyName); err != nil {
				return err
			}
		}
		if checkCRL {
			return checkRevocation(chains, crlFile, crlDir)
		}
		return nil
	}
	return t
}

// verifyChains verifies the server's chain against roots (nil: the
// system's), and the host name when name is not empty.
func verifyChains(peer []*x509.Certificate, roots *x509.CertPool, name string) ([][]*x509.Certificate, error) {
	if len(peer) == 0 {
		return nil, errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	return peer[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: time.Now()})
}

// loadCRLFile reads the CRLs of a PEM file, as OpenSSL's
// X509_load_cert_crl_file: n counts certificates and CRLs (0 is a failure
// to load, which disables CRL checks in libpq).
func loadCRLFile(path string) (crls []*x509.RevocationList, n int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(b.Bytes)
			if err != nil {
				return nil, 0, fmt.Errorf("CRL %d: %w", n+1, err)
			}
			crls = append(crls, crl)
			n++
		case "CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE":
			n++
		}
	}
	return crls, n, nil
}

// crlDirName is OpenSSL's hashed CRL file name (c_rehash, openssl rehash).
var crlDirName = regexp.MustCompile(`^[0-9a-f]{8}\.r[0-9]+$`)

// loadCRLs gathers the CRLs at a handshake, as libpq's initialize_SSL and
// X509_STORE_load_locations do: active is false when the file cannot be
// loaded (no check at all), true otherwise (a directory is always active,
// even if it holds nothing; its CRLs are found by issuer, as OpenSSL's
// hashed lookup, whatever their hash).
func loadCRLs(file, dir string) (crls []*x509.RevocationList, active bool) {
	if file != "" {
		c, n, err := loadCRLFile(file)
		if err != nil || n == 0 {
			return nil, false
		}
		crls = c
	}
	if dir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !crlDirName.MatchString(e.Name()) {
				continue
			}
			c, _, err := loadCRLFile(filepath.Join(dir, e.Name()))
			if err == nil {
				crls = append(crls, c...)
			}
		}
	}
	return crls, true
}

// checkRevocation checks every certificate of the chain, root included,
// against a CRL of its issuer, as OpenSSL with X509_V_FLAG_CRL_CHECK |
// X509_V_FLAG_CRL_CHECK_ALL (what libpq sets): no valid CRL for one of
// them, or a revoked one, fails. With several chains, one must pass.
func checkRevocation(chains [][]*x509.Certificate, file, dir string) error {
	crls, active := loadCRLs(file, dir)
	if !active {
		return nil
	}
	var first error
	for _, chain := range chains {
		err := checkChain(chain, crls)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func checkChain(chain []*x509.Certificate, crls []*x509.RevocationList) error {
	t := time.Now()
	for i, c := range chain {
		issuer := c
		if i+1 < len(chain) {
			issuer = chain[i+1]
		}
		var best *x509.RevocationList
		var timeErr error
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, c.RawIssuer) || crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			switch {
			case t.Before(crl.ThisUpdate):
				timeErr = fmt.Errorf("certificate revocation list of %q is not yet valid", issuer.Subject)
			case !crl.NextUpdate.IsZero() && t.After(crl.NextUpdate):
				timeErr = fmt.Errorf("certificate revocation list of %q has expired (next update was %s)", issuer.Subject, crl.NextUpdate.UTC().Format(time.RFC3339))
			default:
				if best == nil || crl.ThisUpdate.After(best.ThisUpdate) {
					best = crl
				}
			}
		}
		if best == nil {
			if timeErr != nil {
				return timeErr
			}
			return fmt.Errorf("unable to get certificate CRL: no revocation list of %q for certificate %q (sslcrl/sslcrldir must cover every certificate of the chain, as with libpq)", issuer.Subject, c.Subject)
		}
		for _, e := range best.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return fmt.Errorf("certificate revoked: %q (serial %x), per the revocation list of %q", c.Subject, c.SerialNumber, issuer.Subject)
			}
		}
	}
	return nil
}
