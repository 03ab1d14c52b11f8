package tlsx_test

import (
	"bufio"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// Interop with the Perl peers' TLS settings (IO::Socket::SSL as configured by
// upstream ctrl-exec-agent and Exec::Engine).

func requirePerlSSL(t *testing.T) {
	t.Helper()
	if err := exec.Command("perl", "-MIO::Socket::SSL", "-MNet::SSLeay", "-e", "1").Run(); err != nil {
		t.Skip("perl with IO::Socket::SSL not available")
	}
}

const perlCiphers = `SSL_cipher_list => 'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256',
  SSL_ciphersuites => 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256',`

// The Perl control host (Exec::Engine's SSL defaults) talks to a Go agent.
func TestPerlControlHostToGoAgent(t *testing.T) {
	requirePerlSSL(t)
	home := newPKIFrom(t, 2048, 0)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	host, port, _ := strings.Cut(addr, ":")

	for _, version := range []string{"TLSv1_2", "TLSv1_3"} {
		t.Run(version, func(t *testing.T) {
			script := `use IO::Socket::SSL;
my $s = IO::Socket::SSL->new(PeerHost => $ARGV[0], PeerPort => $ARGV[1],
  SSL_cert_file => $ARGV[2], SSL_key_file => $ARGV[3], SSL_ca_file => $ARGV[4],
  SSL_verify_mode => 0x01, SSL_verifycn_scheme => 'none', SSL_version => $ARGV[5],
  ` + perlCiphers + `) or die "connect: $IO::Socket::SSL::SSL_ERROR\n";
my $line = <$s>; print $line; print $s "bye\n"; close $s;`
			out, err := exec.Command("perl", "-e", script, host, port,
				home.ctrlExec.Cert, home.ctrlExec.Key, home.ctrlExec.CA, version).CombinedOutput()
			if err != nil || string(out) != "ok\n" {
				t.Fatalf("perl client: %v\n%s", err, out)
			}
			hs := next(t, seen)
			if hs.err != nil {
				t.Fatalf("Go agent: %v", hs.err)
			}
			if got, want := tlsx.PeerSerialHex(hs.state), serialOf(t, home.ctrlExec.Cert); got != want {
				t.Errorf("Go agent sees serial %s, want %s", got, want)
			}
		})
	}
}

// A Go control host talks to a Perl agent (upstream ctrl-exec-agent's
// listener settings), and the serial the Perl agent reads from our client
// certificate equals our canonical spelling.
func TestGoControlHostToPerlAgent(t *testing.T) {
	requirePerlSSL(t)
	home := newPKIFrom(t, 2048, 0)
	script := `use IO::Socket::SSL; use Net::SSLeay;
my $srv = IO::Socket::SSL->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1,
  SSL_cert_file => $ARGV[0], SSL_key_file => $ARGV[1], SSL_ca_file => $ARGV[2],
  SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(),
  ` + perlCiphers + `) or die "listen: $IO::Socket::SSL::SSL_ERROR\n";
$| = 1; print $srv->sockport, "\n";
my $c = $srv->accept or die "accept: $IO::Socket::SSL::SSL_ERROR\n";
my $x = Net::SSLeay::get_peer_certificate($c->_get_ssl_object);
my $serial = $x ? lc Net::SSLeay::P_ASN1_INTEGER_get_hex(Net::SSLeay::X509_get_serialNumber($x)) : '';
print $c "ok\n"; <$c>; close $c; print "$serial\n";`
	cmd := exec.Command("perl", "-e", script, home.agent.Cert, home.agent.Key, home.agent.CA)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	port, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("perl agent did not start: %v\n%s", err, stderr.String())
	}

	cs, err := talk(t, "127.0.0.1:"+strings.TrimSpace(port), mustClient(t, home.ctrlExec))
	if err != nil {
		t.Fatalf("Go client: %v", err)
	}
	perlSerial, _ := r.ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("perl agent: %v\n%s", err, stderr.String())
	}
	if got, want := strings.TrimSpace(perlSerial), serialOf(t, home.ctrlExec.Cert); got != want {
		t.Errorf("Perl agent read serial %q, want %q", got, want)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	}
}
