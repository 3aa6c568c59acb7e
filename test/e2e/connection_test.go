package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testcluster"
)

// makeCA writes a CA certificate and returns its path and a signer.
func makeCA(t *testing.T, dir, name string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(dir, name+".crt")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return p, cert, key
}

// enableTLS gives the primary a server certificate for localhost and
// 127.0.0.1 signed by a fresh CA, turns ssl on, and returns the CA's path.
func enableTLS(t *testing.T, e *testcluster.Env) string {
	t.Helper()
	dir := t.TempDir()
	caPath, ca, caKey := makeCA(t, dir, "standbyd-test-ca")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	crt, kp := filepath.Join(e.PrimaryData, "server.crt"), filepath.Join(e.PrimaryData, "server.key")
	os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	if os.Geteuid() == 0 {
		out, _ := exec.Command("id", "-u", "postgres").Output()
		uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		out, _ = exec.Command("id", "-g", "postgres").Output()
		gid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		os.Chown(crt, uid, gid)
		os.Chown(kp, uid, gid)
	}
	ctx := context.Background()
	for _, sql := range []string{"ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"} {
		if _, err := e.PrimarySQL(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	// New sessions see ssl = on once the postmaster has reloaded.
	waitFor(t, 10*time.Second, "ssl = on after the reload", func() bool {
		v, err := e.PrimarySQL(ctx, "SHOW ssl")
		return err == nil && v == "on"
	})
	return caPath
}

// daemonOn starts standbyd against e's standby with an optional conninfo.
func daemonOn(t *testing.T, e *testcluster.Env, conninfo string) *daemon {
	t.Helper()
	extra := ""
	if conninfo != "" {
		extra = fmt.Sprintf("  conninfo: %q\n", conninfo)
	}
	return startDaemonFor(t, e.StandbyData, extra)
}

func TestTLSAndAuthentication(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ca := enableTLS(t, e)
	wrongCA, _, _ := makeCA(t, t.TempDir(), "some-other-ca")
	pf := passfileFor(t, e)
	base := fmt.Sprintf("user=%s port=%d passfile=%s", testcluster.ChannelRole, e.PrimaryPort, pf)

	good := []struct{ name, conninfo string }{
		{"verify-full with the right CA", base + " host=localhost sslmode=verify-full sslrootcert=" + ca},
		{"channel_binding=require over TLS (SCRAM-SHA-256-PLUS)", base + " host=localhost sslmode=verify-full sslrootcert=" + ca + " channel_binding=require"},
		{"URI form", fmt.Sprintf("postgresql://%s@localhost:%d/?sslmode=verify-full&sslrootcert=%s&passfile=%s&ssl_min_protocol_version=TLSv1.3",
			testcluster.ChannelRole, e.PrimaryPort, ca, pf)},
	}
	good = append(good, struct{ name, conninfo string }{"several hosts: target_session_attrs=read-write picks the primary",
		fmt.Sprintf("user=%s passfile=%s host=localhost,localhost port=%d,%d sslmode=verify-full sslrootcert=%s target_session_attrs=read-write",
			testcluster.ChannelRole, pf, e.StandbyPort, e.PrimaryPort, ca)})
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			d := daemonOn(t, e, c.conninfo)
			d.waitReady(30 * time.Second)
			if st := d.status(context.Background()); st.Primary == nil || st.Primary.InRecovery {
				t.Fatalf("the channel is not on the primary: %+v", st.Primary)
			}
			pid := strconv.Itoa(int(d.status(context.Background()).ChannelBackendID))
			got, err := e.PrimarySQL(context.Background(), "SELECT ssl::text || ' ' || version FROM pg_stat_ssl WHERE pid = "+pid)
			if err != nil || !strings.HasPrefix(got, "true TLSv1.") {
				t.Fatalf("channel backend's TLS: %q %v", got, err)
			}
			if strings.Contains(c.conninfo, "TLSv1.3") && !strings.HasSuffix(got, "TLSv1.3") {
				t.Fatalf("ssl_min_protocol_version=TLSv1.3 not honoured: %q", got)
			}
			if out, _, code := d.call("N", "1", "2", "3"); code != 0 || out != "301 302 303\n" {
				t.Fatalf("call: %d %q", code, out)
			}
		})
	}
	bad := []struct{ name, conninfo, want string }{
		{"verify-full with a wrong CA", base + " host=localhost sslmode=verify-full sslrootcert=" + wrongCA, "certificate"},
		{"verify-full with a host name the certificate does not name", base + " host=db.example hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=" + ca, "certificate"},
		{"channel_binding=require without TLS", base + " host=127.0.0.1 sslmode=disable channel_binding=require", "channel binding"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			d := daemonOn(t, e, c.conninfo)
			if !d.poll(15*time.Second, func() bool {
				return strings.Contains(strings.ToLower(d.lastError()), c.want)
			}) {
				t.Fatalf("want a failure mentioning %q, status %+v", c.want, d.status(context.Background()))
			}
			if d.readyz() == 200 {
				t.Fatal("ready despite the failure")
			}
			if c.want == "certificate" {
				if n, _ := d.metric(`standbyd_channel_connect_errors_total{class="configuration"}`); n < 1 {
					t.Fatal("a certificate that does not verify must count as a configuration error")
				}
			}
		})
	}
}

// The standby's files as real installations write them: an included file
// that sets primary_conninfo, overridden by postgresql.auto.conf; then a
// switchover: another standby is promoted, the standby is repointed with
// ALTER SYSTEM, and the daemon follows without a restart. A broken config
// file on the way keeps the running configuration.
// claim: readme.switchover-follows
// claim: readme.broken-config-kept
// claim: readme.config-files-watched
// claim: readme.check-shows-source
// claim: readme.sighup-reload
func TestIncludesReloadAndSwitchover(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{Standby: true})
	ctx := context.Background()
	inc := filepath.Join(e.StandbyData, "conf.d")
	os.MkdirAll(inc, 0o755)
	os.WriteFile(filepath.Join(inc, "channel.conf"), []byte("primary_conninfo = 'host=wrong.invalid port=1'\n"), 0o644)
	f, _ := os.OpenFile(filepath.Join(e.StandbyData, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("include_dir 'conf.d'\n")
	f.Close()

	d := daemonOn(t, e, "")
	d.waitReady(30 * time.Second)
	if out, _, code := d.cli("check", "--config", d.dir+"/standbyd.yaml"); code != 0 || !strings.Contains(out, "postgresql.auto.conf:") || !strings.Contains(out, "conf.d/channel.conf") {
		t.Fatalf("check: %d\n%s", code, out)
	}
	before := d.status(ctx)
	if before.Primary.Timeline != 1 {
		t.Fatalf("timeline %d", before.Primary.Timeline)
	}

	// A broken daemon config: the reload fails, the channel stays.
	cfgPath := d.dir + "/standbyd.yaml"
	good := readFile(t, cfgPath)
	os.WriteFile(cfgPath, []byte(good+"channel:\n  bogus_key: 1\n"), 0o600)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_config_last_reload_successful"); return v == 0 }) {
		t.Fatal("a broken config did not count as a failed reload")
	}
	if !strings.Contains(d.log(), "standbyd.yaml") || d.readyz() != 200 {
		t.Fatal("the failed reload must name the file and keep the channel up")
	}
	os.WriteFile(cfgPath, []byte(good), 0o600)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	if !d.poll(10*time.Second, func() bool { v, _ := d.metric("standbyd_config_last_reload_successful"); return v == 1 }) {
		t.Fatal("the fixed config did not reload")
	}

	// Switchover: promote a second standby (same system identifier, new
	// timeline) and repoint the standby to it.
	newPort, err := e.AddStandby(ctx, "standby2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.SQL(ctx, "standby2", "SELECT pg_promote()"); err != nil {
		t.Fatal(err)
	}
	if !d.poll(30*time.Second, func() bool {
		v, _ := e.SQL(ctx, "standby2", "SELECT pg_is_in_recovery()")
		return v == "f"
	}) {
		t.Fatal("standby2 was not promoted")
	}
	start := time.Now()
	conninfo := fmt.Sprintf("user=%s passfile=''%s'' host=127.0.0.1 port=%d sslmode=prefer", testcluster.ChannelRole, e.PassFile, newPort)
	os.WriteFile(e.PassFile, []byte(strings.Replace(readFile(t, e.PassFile), fmt.Sprintf(":%d:", e.PrimaryPort), ":*:", 1)), 0o600)
	for _, sql := range []string{"ALTER SYSTEM SET primary_conninfo = '" + conninfo + "'", "SELECT pg_reload_conf()"} {
		if _, err := e.SQL(ctx, "standby", sql); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon sees postgresql.auto.conf change and reconnects.
	if !d.poll(30*time.Second, func() bool {
		st := d.status(ctx)
		return st.State == "ready" && st.Primary != nil && st.Primary.Timeline == 2
	}) {
		t.Fatalf("the channel did not move to the new primary: %+v", d.status(ctx))
	}
	t.Logf("switchover: channel on the new primary %s after the standby was repointed", time.Since(start).Round(time.Millisecond))
	if out, _, code := d.call("N", "7", "8", "9"); code != 0 || out != "307 308 309\n" {
		t.Fatalf("after the switchover: %d %q", code, out)
	}
	if !strings.Contains(d.log(), "reconnecting") {
		t.Fatal("the log does not say why the channel reconnected")
	}
}
