package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The metrics listener serves TLS with basic authentication when given an
// exporter-toolkit web configuration, and refuses to start on a bad one.
func TestMetricsListenerTLSAndBasicAuth(t *testing.T) {
	needEnv(t)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-Pa55"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	writeFile(t, webConfig, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash))

	d := startDaemonWith(t, daemonConfig{metrics: "  web_config_file: " + webConfig})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path, user, pass string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+d.metrics+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if !d.poll(30*time.Second, func() bool { code, _ := get("/readyz", "prometheus", "scrape-Pa55"); return code == http.StatusOK }) {
		code, body := get("/readyz", "prometheus", "scrape-Pa55")
		t.Fatalf("readyz over TLS with the right password: %d %s", code, body)
	}
	if code, body := get("/metrics", "prometheus", "scrape-Pa55"); code != http.StatusOK || !strings.Contains(body, "standbyd_channel_up 1") {
		t.Errorf("metrics over TLS: %d, channel_up 1 present %v", code, strings.Contains(body, "standbyd_channel_up 1"))
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"prometheus", "wrong"}, {"nobody", "scrape-Pa55"}} {
		if code, _ := get("/metrics", c.user, c.pass); code != http.StatusUnauthorized {
			t.Errorf("user %q password %q: %d, want 401", c.user, c.pass, code)
		}
	}
	// Plain HTTP to the TLS listener gets no metrics.
	if resp, err := http.Get("http://" + d.metrics + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "standbyd_") {
			t.Errorf("plain HTTP got %d with metrics", resp.StatusCode)
		}
	}
	if strings.Contains(d.log(), "scrape-Pa55") || strings.Contains(d.log(), string(hash)) {
		t.Error("the log shows the password or its hash")
	}

	// A broken web config stops the daemon at start, naming the file.
	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, bad, "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: "+keyFile+"\n")
	d2 := startDaemonWith(t, daemonConfig{metrics: "  web_config_file: " + bad})
	select {
	case err := <-d2.done:
		d2.exited, d2.exitErr = true, err
		if err == nil || !strings.Contains(d2.log(), bad) {
			t.Errorf("exit %v; log does not name %s:\n%s", err, bad, tailLines(d2.log(), 5))
		}
	case <-time.After(20 * time.Second):
		t.Error("standbyd runs with a broken web config file")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "standbyd metrics"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "metrics.crt"), filepath.Join(dir, "metrics.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
