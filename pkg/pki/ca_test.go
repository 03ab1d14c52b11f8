package pki_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

func TestCreateCAWritesFilesAndV3CACert(t *testing.T) {
	files := pki.CAFilesIn(join(t.TempDir(), "etc/ctrl-exec"))
	ca, err := pki.CreateCA(files, testBits, testNow)
	if err != nil {
		t.Fatal(err)
	}

	modes := map[string]os.FileMode{
		"key": fileMode(t, files.Key), "cert": fileMode(t, files.Cert), "serial": fileMode(t, files.Serial),
	}
	if diff := cmp.Diff(map[string]os.FileMode{"key": 0o600, "cert": 0o644, "serial": 0o600}, modes); diff != "" {
		t.Errorf("file modes (-want +got):\n%s", diff)
	}
	if got := readFile(t, files.Serial); got != "01" {
		t.Errorf("ca.serial = %q, want %q", got, "01")
	}

	loaded, err := pki.LoadCA(files)
	if err != nil {
		t.Fatal(err)
	}
	c := loaded.Cert
	if !c.Equal(ca.Cert) {
		t.Error("LoadCA returned a different cert than CreateCA")
	}
	type shape struct {
		Subject, Issuer   string
		Version           int
		IsCA, BCCritical  bool
		KeyUsage          x509.KeyUsage
		ExtKeyUsages      int
		SigAlg            x509.SignatureAlgorithm
		AKIEqualsSKI      bool
		SKILen            int
		Lifetime          time.Duration
		SerialPositive    bool
		SerialBytesAtMost int
	}
	got := shape{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Version: c.Version,
		IsCA: c.IsCA, BCCritical: extensionCritical(c, oidBasicConstraints),
		KeyUsage: c.KeyUsage, ExtKeyUsages: len(c.ExtKeyUsage), SigAlg: c.SignatureAlgorithm,
		AKIEqualsSKI: string(c.AuthorityKeyId) == string(c.SubjectKeyId), SKILen: len(c.SubjectKeyId),
		Lifetime:       c.NotAfter.Sub(c.NotBefore),
		SerialPositive: c.SerialNumber.Sign() > 0, SerialBytesAtMost: 20,
	}
	if n := len(c.SerialNumber.Bytes()); n > 20 {
		got.SerialBytesAtMost = n
	}
	want := shape{
		Subject: "CN=ctrl-exec CA", Issuer: "CN=ctrl-exec CA", Version: 3,
		IsCA: true, BCCritical: true, SigAlg: x509.SHA256WithRSA,
		AKIEqualsSKI: true, SKILen: 20, Lifetime: 3650 * 24 * time.Hour,
		SerialPositive: true, SerialBytesAtMost: 20,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CA cert (-want +got):\n%s", diff)
	}
	if !c.NotBefore.Equal(testNow) {
		t.Errorf("notBefore = %v, want %v", c.NotBefore, testNow)
	}
}

func extensionCritical(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical
		}
	}
	return false
}

func TestCreateCARefusesExistingKey(t *testing.T) {
	dir := t.TempDir()
	files := pki.CAFilesIn(dir)
	writeFile(t, files.Key, "keep me\n", 0o600)

	_, err := pki.CreateCAWithKey(files, testKey(t, 0), testNow)
	if !errors.Is(err, pki.ErrCAExists) {
		t.Fatalf("err = %v, want ErrCAExists", err)
	}
	if want := "CA already exists at '" + files.Key + "'"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want prefix %q", err, want)
	}
	if got := readFile(t, files.Key); got != "keep me\n" {
		t.Errorf("existing ca.key was touched: %q", got)
	}
	if _, err := os.Stat(files.Cert); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ca.crt written despite refusal: %v", err)
	}
}

func TestLoadCAReportsMissingFiles(t *testing.T) {
	ca := newCA(t)
	noKey := ca.Files
	noKey.Key = join(t.TempDir(), "ca.key")
	noCert := ca.Files
	noCert.Cert = join(t.TempDir(), "ca.crt")

	tests := []struct {
		name  string
		files pki.CAFiles
		want  string
	}{
		{"key", noKey, "CA key not found at '" + noKey.Key + "'"},
		{"cert", noCert, "CA cert not found at '" + noCert.Cert + "'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.LoadCA(tt.files)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Error("error does not match fs.ErrNotExist")
			}
		})
	}
}

func TestLoadCARejectsKeyOfAnotherCA(t *testing.T) {
	ca := newCA(t)
	other, err := pki.EncodeKeyPEM(testKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, ca.Files.Key, string(other), 0o600)
	if _, err := pki.LoadCA(ca.Files); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("err = %v, want a key/cert mismatch", err)
	}
}

func TestSignCSRIssuesLeafLikeOpenSSL(t *testing.T) {
	ca := newCA(t)
	if err := os.Chmod(ca.Files.Serial, 0o640); err != nil {
		t.Fatal(err)
	}
	csr := mustCSR(t, testKey(t, 1), "web-01")

	cert, err := ca.SignCSR(csr, 825, testNow, pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}

	parsedCSR, err := pki.ParseCSR(csr)
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		Subject, Serial, Issuer string
		RawSubjectCopied        bool
		KeyUsage                x509.KeyUsage
		ExtKeyUsages            int
		BasicConstraints        bool
		SigAlg                  x509.SignatureAlgorithm
		SKILen                  int
		AKIIsCASKI              bool
		Extensions              int
		NotBefore, NotAfter     time.Time
	}
	got := shape{
		Subject: cert.Subject.String(), Serial: pki.SerialHex(cert), Issuer: cert.Issuer.String(),
		RawSubjectCopied: string(cert.RawSubject) == string(parsedCSR.RawSubject),
		KeyUsage:         cert.KeyUsage, ExtKeyUsages: len(cert.ExtKeyUsage),
		BasicConstraints: cert.BasicConstraintsValid, SigAlg: cert.SignatureAlgorithm,
		SKILen: len(cert.SubjectKeyId), AKIIsCASKI: string(cert.AuthorityKeyId) == string(ca.Cert.SubjectKeyId),
		Extensions: len(cert.Extensions), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
	}
	want := shape{
		Subject: "CN=web-01", Serial: "02", Issuer: "CN=ctrl-exec CA", RawSubjectCopied: true,
		SigAlg: x509.SHA256WithRSA, SKILen: 20, AKIIsCASKI: true, Extensions: 2,
		NotBefore: testNow, NotAfter: testNow.Add(825 * 24 * time.Hour),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("issued cert (-want +got):\n%s", diff)
	}
	if err := pki.VerifyChain(cert, nil, []*x509.Certificate{ca.Cert}, testNow); err != nil {
		t.Errorf("issued cert does not chain to the CA: %v", err)
	}
	if got := readFile(t, ca.Files.Serial); got != "02\n" {
		t.Errorf("ca.serial = %q, want %q", got, "02\n")
	}
	if got := fileMode(t, ca.Files.Serial); got != 0o640 {
		t.Errorf("ca.serial mode = %v, want the preserved 0640", got)
	}
}

func TestSignCSRBackdate(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.SignCSR(mustCSR(t, testKey(t, 1), "h"), 1, testNow, pki.SignOptions{Backdate: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if want := testNow.Add(-5 * time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("notBefore = %v, want %v", cert.NotBefore, want)
	}
	if want := testNow.Add(24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("notAfter = %v, want %v", cert.NotAfter, want)
	}
}

func TestSignCSRRejectsBadInput(t *testing.T) {
	ca := newCA(t)
	good := mustCSR(t, testKey(t, 1), "web-01")

	tampered := tamperCSR(t, good)
	ecCSR := ecdsaCSR(t)
	tests := []struct {
		name string
		csr  []byte
		days int
		want string
	}{
		{"zero days", good, 0, "days must be a positive integer"},
		{"negative days", good, -1, "days must be a positive integer"},
		{"oversize", []byte(strings.Repeat("A", 10241)), 1, "CSR exceeds maximum size"},
		{"not PEM", []byte("{}"), 1, "Invalid CSR format"},
		{"leading space", append([]byte(" "), good...), 1, "Invalid CSR format"},
		{"garbage body", []byte("-----BEGIN CERTIFICATE REQUEST-----\nYQ==\n-----END CERTIFICATE REQUEST-----\n"), 1, "Invalid CSR format"},
		{"tampered", tampered, 1, "CSR self-signature does not verify"},
		{"ecdsa p-224", ecCSR, 1, "P-256 or P-384"},
		{"RSA 1024 (D-35)", mustCSR(t, pkitest.Key(t, 1024, 0), "web-01"), 1, "CSR key is too weak: RSA 1024 bits"},
		{"two CNs (D-35)", pkitest.CSR(t, testKey(t, 1), "web-01", "evil"), 1, "CSR subject has more than one CN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.SignCSR(tt.csr, tt.days, testNow, pki.SignOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if got := readFile(t, ca.Files.Serial); got != "01" {
		t.Errorf("rejected requests consumed serials: ca.serial = %q", got)
	}
}

// tamperCSR re-encodes csr with the subject CN changed but the old signature.
func tamperCSR(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	der := append([]byte(nil), block.Bytes...)
	i := strings.Index(string(der), "web-01")
	if i < 0 {
		t.Fatal("CN not found in CSR DER")
	}
	copy(der[i:], "web-02")
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// ecdsaCSR is a CSR for an ECDSA key on a curve ctrl-exec refuses (P-224).
func ecdsaCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ec"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignCSRSerialFile(t *testing.T) {
	tests := []struct {
		name       string
		stored     string // "" with missing=true: no file
		floor      int64
		wantSerial string
		wantFile   string
	}{
		{"after setup-ca", "01", 0, "02", "02\n"},
		{"lowercase with newline", "0a\n", 0, "0b", "0B\n"},
		{"uppercase", "0A", 0, "0b", "0B\n"},
		{"whitespace around", "  ff \n", 0, "0100", "0100\n"},
		{"odd digit count", "1", 0, "02", "02\n"},
		{"high bit", "7F", 0, "80", "80\n"},
		{"wide", "FFFFFFFFFFFFFFFF", 0, "010000000000000000", "010000000000000000\n"},
		{"below floor jumps to it", "02", pki.CtrlExecSerialFloor, "01000000", "01000000\n"},
		{"above floor keeps counting", "01000005", pki.CtrlExecSerialFloor, "01000006", "01000006\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newCA(t)
			writeFile(t, ca.Files.Serial, tt.stored, 0o600)
			cert, err := ca.SignCSR(mustCSR(t, testKey(t, 1), "h"), 1, testNow, pki.SignOptions{MinSerial: tt.floor})
			if err != nil {
				t.Fatal(err)
			}
			got := []string{pki.SerialHex(cert), readFile(t, ca.Files.Serial)}
			if diff := cmp.Diff([]string{tt.wantSerial, tt.wantFile}, got); diff != "" {
				t.Errorf("[serial, ca.serial] (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignCSRWithoutSerialFileStartsRandom(t *testing.T) {
	for _, name := range []string{"missing", "empty"} {
		t.Run(name, func(t *testing.T) {
			ca := newCA(t)
			if name == "missing" {
				os.Remove(ca.Files.Serial)
			} else {
				writeFile(t, ca.Files.Serial, "\n", 0o600)
			}
			cert, err := ca.SignCSR(mustCSR(t, testKey(t, 1), "h"), 1, testNow, pki.SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n := cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 159 || n.BitLen() < 64 {
				t.Errorf("serial %s: want a random positive serial below 2^159", pki.SerialHex(cert))
			}
			if got, want := readFile(t, ca.Files.Serial), strings.ToUpper(pki.SerialHex(cert))+"\n"; got != want {
				t.Errorf("ca.serial = %q, want %q", got, want)
			}
			if got := fileMode(t, ca.Files.Serial); name == "missing" && got != 0o600 {
				t.Errorf("created ca.serial mode = %v, want 0600", got)
			}
		})
	}
}

func TestSignCSRRefusesCorruptSerialFile(t *testing.T) {
	ca := newCA(t)
	writeFile(t, ca.Files.Serial, "serial=zz\n", 0o600)
	_, err := ca.SignCSR(mustCSR(t, testKey(t, 1), "h"), 1, testNow, pki.SignOptions{})
	if err == nil || !strings.Contains(err.Error(), ca.Files.Serial) {
		t.Fatalf("err = %v, want an error naming ca.serial", err)
	}
	if got := readFile(t, ca.Files.Serial); got != "serial=zz\n" {
		t.Errorf("corrupt ca.serial was rewritten: %q", got)
	}
}

func TestSignCSRConcurrentGoroutinesGetDistinctSerials(t *testing.T) {
	ca := newCA(t)
	csr := mustCSR(t, testKey(t, 1), "h")
	const n = 20
	serials := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cert, err := ca.SignCSR(csr, 1, testNow, pki.SignOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			serials[i] = pki.SerialHex(cert)
		}()
	}
	wg.Wait()
	sort.Strings(serials)
	var want []string
	for i := 2; i < 2+n; i++ {
		want = append(want, fmt.Sprintf("%02x", i))
	}
	if diff := cmp.Diff(want, serials); diff != "" {
		t.Errorf("serials (-want +got):\n%s", diff)
	}
	if got := readFile(t, ca.Files.Serial); got != fmt.Sprintf("%02X\n", n+1) {
		t.Errorf("ca.serial = %q, want %02X", got, n+1)
	}
}

const signerDirEnv = "PKI_TEST_SIGNER_DIR"

// TestSignerProcess is not a test on its own: the process test re-executes the
// test binary with this one selected and signerDirEnv set, and it prints one
// issued serial per line.
func TestSignerProcess(t *testing.T) {
	dir := os.Getenv(signerDirEnv)
	if dir == "" {
		t.Skip("helper process for TestSignCSRConcurrentProcessesGetDistinctSerials")
	}
	ca, err := pki.LoadCA(pki.CAFilesIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := os.ReadFile(join(dir, "h.csr"))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		cert, err := ca.SignCSR(csr, 1, time.Now(), pki.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("serial", pki.SerialHex(cert))
	}
}

func TestSignCSRConcurrentProcessesGetDistinctSerials(t *testing.T) {
	ca := newCA(t)
	dir := ca.Files.Key[:len(ca.Files.Key)-len("/ca.key")]
	writeFile(t, join(dir, "h.csr"), string(mustCSR(t, testKey(t, 1), "h")), 0o644)

	type result struct {
		out []byte
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSignerProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), signerDirEnv+"="+dir)
			out, err := cmd.Output()
			results <- result{out, err}
		}()
	}
	// This process signs too, concurrently with the two children.
	var mine []string
	for range 10 {
		cert, err := ca.SignCSR(mustCSR(t, testKey(t, 2), "parent"), 1, testNow, pki.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, pki.SerialHex(cert))
	}
	all := mine
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("signer process: %v\n%s", r.err, r.out)
		}
		sc := bufio.NewScanner(strings.NewReader(string(r.out)))
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "serial "); ok {
				all = append(all, s)
			}
		}
	}
	sort.Strings(all)
	var want []string
	for i := 2; i < 32; i++ {
		want = append(want, fmt.Sprintf("%02x", i))
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("serials from 3 processes (-want +got):\n%s", diff)
	}
	if got := readFile(t, ca.Files.Serial); got != "1F\n" {
		t.Errorf("ca.serial = %q, want %q", got, "1F\n")
	}
}

// A Perl process holding flock on ca.serial (as upstream approve_request does
// around openssl) makes the Go signer wait, and the Go signer then continues
// from the value the Perl side left.
func TestSignCSRWaitsForPerlFlock(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("perl not installed")
	}
	ca := newCA(t)
	const script = `use Fcntl qw(:flock); open(my $fh, '<', $ARGV[0]) or die; flock($fh, LOCK_EX) or die;
$| = 1; print "locked\n"; <STDIN>;
open(my $w, '>', $ARGV[0]) or die; print $w "10\n"; close $w; flock($fh, LOCK_UN);`
	cmd := exec.Command("perl", "-e", script, ca.Files.Serial)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("perl said %q", line)
	}

	done := make(chan string, 1)
	go func() {
		cert, err := ca.SignCSR(mustCSR(t, testKey(t, 1), "h"), 1, testNow, pki.SignOptions{})
		if err != nil {
			t.Error(err)
			done <- ""
			return
		}
		done <- pki.SerialHex(cert)
	}()
	select {
	case s := <-done:
		t.Fatalf("signed serial %s while Perl held the lock", s)
	case <-time.After(200 * time.Millisecond):
	}
	stdin.Write([]byte("go\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "11" {
		t.Errorf("serial = %q, want 11 (continuing from Perl's 10)", got)
	}
}

func TestIssueCtrlExecCert(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	keyPath, certPath := join(dir, "ctrl-exec.key"), join(dir, "ctrl-exec.crt")

	cert, err := ca.IssueCtrlExecCert(keyPath, certPath, testBits, 825, testNow)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := pki.LoadCert(certPath)
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		CN, Serial, CASerialFile string
		KeyMatches, SameAsDisk   bool
		KeyMode, CertMode        os.FileMode
		NotAfter                 time.Time
	}
	got := shape{
		CN: cert.Subject.CommonName, Serial: pki.SerialHex(cert), CASerialFile: readFile(t, ca.Files.Serial),
		KeyMatches: pki.KeyMatches(key, cert), SameAsDisk: onDisk.Equal(cert),
		KeyMode: fileMode(t, keyPath), CertMode: fileMode(t, certPath), NotAfter: cert.NotAfter,
	}
	want := shape{
		CN: "ctrl-exec", Serial: "01000000", CASerialFile: "01000000\n", KeyMatches: true, SameAsDisk: true,
		KeyMode: pki.CtrlExecKeyMode, CertMode: 0o644, NotAfter: testNow.Add(825 * 24 * time.Hour),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ctrl-exec cert (-want +got):\n%s", diff)
	}

	// A rotation replaces both files and keeps counting from the floor.
	again, err := ca.IssueCtrlExecCert(keyPath, certPath, testBits, 30, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.SerialHex(again); got != "01000001" {
		t.Errorf("second ctrl-exec serial = %s, want 01000001", got)
	}
}
