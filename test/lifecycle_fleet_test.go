package e2e

import (
	"crypto/rsa"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// rotationFleet is a control host and n real agents registered with it as
// pairing would leave them: certificates issued through pkg/pki by the
// control host's own CA (one RSA key shared by the agents, each with its own
// certificate and serial), ctrl-exec-serial stored, registry records
// written, update-ctrl-exec-serial allowlisted. The agents serve until the
// test ends.
type rotationFleet struct {
	ctl    *Root
	agents []*AgentHost
}

// fleetName is agent i's hostname: fleet-001 …, looked up in DNS by
// registry.Address (and, failing that, reached by its recorded ip).
func fleetName(i int) string { return fmt.Sprintf("fleet-%03d", i+1) }

// loopbackName is agent i's hostname as an address of 127/8: registry.Address
// uses an IP-literal hostname as it is, without a name lookup.
func loopbackName(i int) string { return fmt.Sprintf("127.0.%d.%d", (i+2)/250, (i+2)%250) }

func newRotationFleet(tb testing.TB, n, bits int, name func(int) string) *rotationFleet {
	tb.Helper()
	ctl := NewRoot(tb, "control")
	ctl.ExtraEnv = append(ctl.ExtraEnv, "CTRL_EXEC_TEST_KEY_BITS="+strconv.Itoa(bits)) // the key rotate-cert makes
	now := time.Now()
	ca, err := pki.CreateCA(pki.CAFilesIn(ctl.Path("/etc/ctrl-exec")), bits, now)
	if err != nil {
		tb.Fatal(err)
	}
	ctrl, err := ca.IssueCtrlExecCert(ctl.Path("/etc/ctrl-exec/ctrl-exec.key"), ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"), bits, 825, now)
	if err != nil {
		tb.Fatal(err)
	}
	ctrlSerial := pki.SerialHex(ctrl)
	setConf(ctl, "read_timeout = 120")
	key, err := pki.GenerateKey(bits)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		tb.Fatal(err)
	}
	reg := registry.New(ctl.Path("/var/lib/ctrl-exec/agents"))

	ports := make([]int, n) // distinct: FreePort hands each out once
	for i := range ports {
		ports[i] = FreePort(tb)
	}

	f := &rotationFleet{ctl: ctl}
	for i := 0; i < n; i++ {
		a := fleetAgent(tb, ca, key, keyPEM, name(i), ports[i], ctrlSerial)
		cert, _ := pki.LoadCert(a.Path("/etc/ctrl-exec-agent/agent.crt"))
		err := reg.Put(registry.Record{
			registry.FieldHostname: a.Hostname, registry.FieldIP: "127.0.0.1", registry.FieldPort: itoa(a.Port),
			registry.FieldPaired: pki.ISOTime(now), registry.FieldExpiry: pki.FormatOpenSSLDate(cert.NotAfter),
			registry.FieldReqID: pki.NewReqID(), registry.FieldDispatcherSerial: ctrlSerial,
			registry.FieldSerialStatus: registry.StatusCurrent, registry.FieldSerialBroadcast: "",
			registry.FieldSerialConfirmed: pki.ISOTime(now), registry.FieldAgentSerial: pki.SerialHex(cert),
		})
		if err != nil {
			tb.Fatal(err)
		}
		f.agents = append(f.agents, a)
	}
	// Start them all, then wait for each: startup overlaps.
	for _, a := range f.agents {
		a.Start("ctrl-exec-agent", "serve")
	}
	for _, a := range f.agents {
		a.WaitLog(60*time.Second, "ACTION=start", "PORT="+itoa(a.Port))
	}
	return f
}

// fleetAgent installs one agent's identity and configuration.
func fleetAgent(tb testing.TB, ca *pki.CA, key *rsa.PrivateKey, keyPEM []byte, name string, port int, ctrlSerial string) *AgentHost {
	tb.Helper()
	csr, err := pki.CreateCSR(key, name)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := ca.SignCSR(csr, 825, time.Now(), pki.SignOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	a := &AgentHost{Root: NewRoot(tb, name), Port: port}
	a.WriteFile("/etc/ctrl-exec-agent/agent.key", string(keyPEM), 0o640)
	a.WriteFile("/etc/ctrl-exec-agent/agent.crt", string(pki.CertPEM(cert)), 0o640)
	a.WriteFile("/etc/ctrl-exec-agent/ca.crt", string(ca.CertPEM), 0o644)
	a.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", ctrlSerial+"\n", 0o644)
	a.WriteFile("/etc/ctrl-exec-agent/agent.conf", fmt.Sprintf(
		"port = %d\ncert = %s\nkey = %s\nca = %s\n", a.Port,
		a.Path("/etc/ctrl-exec-agent/agent.crt"), a.Path("/etc/ctrl-exec-agent/agent.key"),
		a.Path("/etc/ctrl-exec-agent/ca.crt")), 0o640)
	allowLifecycleScripts(a)
	return a
}

func (f *rotationFleet) targets() []string {
	out := make([]string, len(f.agents))
	for i, a := range f.agents {
		out[i] = a.target()
	}
	return out
}

// rotate runs rotate-cert and checks every agent took the new serial.
func (f *rotationFleet) rotate(tb testing.TB) (elapsed time.Duration) {
	tb.Helper()
	start := time.Now()
	res := f.ctl.Run("ctrl-exec", "rotate-cert")
	elapsed = time.Since(start)
	n := len(f.agents)
	if res.Code != 0 || !strings.Contains(res.Stdout, fmt.Sprintf("Agents pending:  %d\n", n)) ||
		!strings.Contains(res.Stdout, fmt.Sprintf("  Updated: %d\n  Failed:  0\n", n)) {
		tb.Fatalf("rotate-cert: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	serial, _ := pki.LoadCert(f.ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	want := pki.SerialHex(serial)
	var wrong []string
	for _, a := range f.agents {
		stored := strings.TrimSpace(a.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial"))
		rec := record(tb, f.ctl, a.Hostname)
		if stored != want || rec["serial_status"] != "current" || rec["dispatcher_serial"] != want {
			wrong = append(wrong, fmt.Sprintf("%s stores %s, registry %s/%s", a.Hostname, stored, rec["serial_status"], rec["dispatcher_serial"]))
		}
	}
	if len(wrong) > 0 {
		tb.Fatalf("not current after rotation (want %s):\n%s", want, strings.Join(wrong, "\n"))
	}
	return elapsed
}

// TestRotateFleet50: fifty agents, one rotate-cert, every agent current and
// answering run and ping with the new certificate; the previous pair is gone
// since nothing is pending. The agents are named by loopback addresses: no
// name is looked up, so the test needs no resolver (BenchmarkRotate50
// measures the lookups).
func TestRotateFleet50(t *testing.T) {
	if testing.Short() {
		t.Skip("fifty agent processes")
	}
	t.Parallel()
	f := newRotationFleet(t, 50, 2048, loopbackName)
	f.rotate(t)
	if _, err := os.Stat(f.ctl.Path("/etc/ctrl-exec/ctrl-exec.crt.prev")); err == nil {
		t.Error(".prev kept although no agent is pending")
	}
	f.ctl.MustRun("ctrl-exec", append([]string{"ping"}, f.targets()...)...)
	f.ctl.MustRun("ctrl-exec", append(append([]string{"run"}, f.targets()...), "hello")...)
	// A second rotation works the same way (the .prev pair is made afresh).
	f.rotate(t)
	if out := f.ctl.MustRun("ctrl-exec", "serial-status").Stdout; strings.Count(out, " current ") != 50 {
		t.Errorf("serial-status:\n%s", out)
	}
}

// BenchmarkRotate50 is the wall time of `ctrl-exec rotate-cert` across fifty
// real agents on loopback with production key sizes (RSA-4096 CA, agent keys
// and the new ctrl-exec key rotate-cert generates): key generation, signing,
// rotation.json, the registry, and the broadcast of update-ctrl-exec-serial
// with the previous certificate, each agent storing the serial and reloading.
// Every iteration is checked: all fifty current.
//
//	names=ip    agents named 127.0.x.y: registry.Address needs no name lookup,
//	            so this is rotate-cert's own cost
//	names=dns   agents named fleet-NNN: every broadcast first looks the names
//	            up (registry.Address); a resolver that drops queries, as some
//	            sandboxes do, adds its 2 s lookup timeout
func BenchmarkRotate50(b *testing.B) {
	for _, names := range []struct {
		label string
		fn    func(int) string
	}{{"ip", loopbackName}, {"dns", fleetName}} {
		b.Run("names="+names.label, func(b *testing.B) {
			f := newRotationFleet(b, 50, 4096, names.fn)
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += f.rotate(b)
			}
			b.ReportMetric(float64(total)/float64(time.Millisecond)/float64(b.N), "ms/rotate")
			b.ReportMetric(float64(total)/float64(time.Millisecond)/float64(b.N)/50, "ms/agent")
		})
	}
}
