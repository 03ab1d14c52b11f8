package pki_test

import (
	"crypto/x509"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// A CA made by openssl the way upstream setup-ca makes it (PKCS#1 key, v3 CA
// cert, ca.serial "01") signs an openssl CSR from Go; openssl accepts the
// result, prints the same serial, and continues the same ca.serial.
func TestGoSignsWithOpenSSLCA(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	openssl(t, dir, "genrsa", "-traditional", "-out", "ca.key", "2048")
	openssl(t, dir, "req", "-new", "-x509", "-key", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=ctrl-exec CA")
	writeFile(t, join(dir, "ca.serial"), "01", 0o600)
	openssl(t, dir, "genrsa", "-out", "agent.key", "2048")
	openssl(t, dir, "req", "-new", "-key", "agent.key", "-out", "agent.csr", "-subj", "/CN=web-01")

	ca, err := pki.LoadCA(pki.CAFilesIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := []byte(readFile(t, join(dir, "agent.csr")))
	if cn, err := pki.CSRCommonName(csrPEM); err != nil || cn != "web-01" {
		t.Fatalf("CSRCommonName = %q, %v", cn, err)
	}
	cert, err := ca.SignCSR(csrPEM, 825, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, join(dir, "agent.crt"), string(pki.CertPEM(cert)), 0o644)

	if out := openssl(t, dir, "verify", "-CAfile", "ca.crt", "agent.crt"); !strings.Contains(out, "agent.crt: OK") {
		t.Errorf("openssl verify: %s", out)
	}
	if out := openssl(t, dir, "x509", "-noout", "-serial", "-in", "agent.crt"); out != "serial="+strings.ToUpper(pki.SerialHex(cert))+"\n" {
		t.Errorf("openssl serial %q, SerialHex %q", out, pki.SerialHex(cert))
	}
	end := strings.TrimPrefix(strings.TrimSpace(openssl(t, dir, "x509", "-noout", "-enddate", "-in", "agent.crt")), "notAfter=")
	if end != pki.FormatOpenSSLDate(cert.NotAfter) {
		t.Errorf("openssl notAfter %q, FormatOpenSSLDate %q", end, pki.FormatOpenSSLDate(cert.NotAfter))
	}

	// openssl continues from the ca.serial Go wrote, and writes it the same way.
	openssl(t, dir, "x509", "-req", "-in", "agent.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
		"-CAserial", "ca.serial", "-out", "next.crt", "-days", "1")
	next, err := pki.LoadCert(join(dir, "next.crt"))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{pki.SerialHex(next), readFile(t, join(dir, "ca.serial"))}
	if diff := cmp.Diff([]string{"03", string(pki.FormatSerialFile(next.SerialNumber))}, got); diff != "" {
		t.Errorf("[openssl serial, ca.serial] (-want +got):\n%s", diff)
	}
}

// A CA made by Go is usable by openssl (upstream Perl signing after a Go
// setup-ca): openssl reads the PKCS#8 key and ca.serial, signs a Go CSR, and
// Go accepts the v1 certificate openssl issues.
func TestOpenSSLSignsWithGoCA(t *testing.T) {
	requireOpenSSL(t)
	ca := newCA(t)
	dir := strings.TrimSuffix(ca.Files.Key, "/ca.key")
	csrPEM := mustCSR(t, testKey(t, 1), "web-02")
	writeFile(t, join(dir, "agent.csr"), string(csrPEM), 0o644)

	if out := openssl(t, dir, "req", "-noout", "-verify", "-subject", "-in", "agent.csr"); !strings.Contains(out, "subject=CN = web-02") {
		t.Errorf("openssl req on the Go CSR: %q", out)
	}
	if out := openssl(t, dir, "x509", "-noout", "-text", "-in", "ca.crt"); !strings.Contains(out, "X509v3 Basic Constraints: critical\n                CA:TRUE") {
		t.Errorf("Go CA cert lacks critical CA:TRUE:\n%s", out)
	}
	openssl(t, dir, "x509", "-req", "-in", "agent.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
		"-CAserial", "ca.serial", "-CAcreateserial", "-out", "agent.crt", "-days", "825")

	cert, err := pki.LoadCert(join(dir, "agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "web-02" || pki.SerialHex(cert) != "02" {
		t.Errorf("openssl issued CN=%q serial=%s, want web-02 / 02", cert.Subject.CommonName, pki.SerialHex(cert))
	}
	if err := pki.VerifyChain(cert, nil, []*x509.Certificate{ca.Cert}, time.Now()); err != nil {
		t.Errorf("Go does not accept the openssl-issued cert: %v", err)
	}

	// Go signs next and openssl verifies Go's cert against the Go CA.
	goCert, err := ca.SignCSR(csrPEM, 1, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pki.SerialHex(goCert) != "03" {
		t.Errorf("Go serial after openssl = %s, want 03", pki.SerialHex(goCert))
	}
	writeFile(t, join(dir, "go.crt"), string(pki.CertPEM(goCert)), 0o644)
	if out := openssl(t, dir, "verify", "-CAfile", "ca.crt", "go.crt"); !strings.Contains(out, "go.crt: OK") {
		t.Errorf("openssl verify: %s", out)
	}
}

// The pairing code equals the Perl computation (openssl dgst, unpack 'N').
func TestPairingCodeMatchesPerl(t *testing.T) {
	requireOpenSSL(t)
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("perl not installed")
	}
	csr := mustCSR(t, testKey(t, 1), "web-01")
	path := join(t.TempDir(), "x.csr")
	if err := os.WriteFile(path, csr, 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `my $d = ` + "`openssl dgst -sha256 -binary $ARGV[0]`" + `; printf '%06d', unpack('N', substr($d, 0, 4)) % 1_000_000;`
	out, err := exec.Command("perl", "-e", script, path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.PairingCode(csr); got != string(out) {
		t.Errorf("PairingCode = %s, Perl = %s", got, out)
	}
}
