package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Full-size keys: these benchmarks measure what an operator waits for.
const realKeyBits = "CTRL_EXEC_TEST_KEY_BITS=4096"

// BenchmarkSetupCA times `ctrl-exec setup-ca` (an RSA-4096 CA key and
// certificate) as a process, from exec to exit.
func BenchmarkSetupCA(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ctl := NewRoot(b, "")
		ctl.ExtraEnv = []string{realKeyBits}
		b.StartTimer()
		ctl.MustRun("ctrl-exec", "setup-ca")
	}
}

// BenchmarkApproveToCerts times the operator's `ctrl-exec approve` until the
// agent's certificate is on its disk: signing, the pairing server noticing
// the answer, delivery over the held connection and the agent storing it.
// The control host and every agent key are RSA-4096.
func BenchmarkApproveToCerts(b *testing.B) {
	ctl := NewControl(b, NoHook)
	ctl.ExtraEnv = []string{realKeyBits}
	// The production poll interval, not the 50 ms the tests use.
	_, port := StartPairingMode(b, ctl, "CTRL_EXEC_TEST_PAIRING_POLL=250ms")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		agent := NewAgent(b, "bench-agent")
		agent.ExtraEnv = []string{realKeyBits}
		res := agent.MustRun("ctrl-exec-agent", "request-pairing",
			"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "120")
		reqid := strings.TrimSpace(res.Stdout)
		crt := agent.Path("/etc/ctrl-exec-agent/agent.crt")
		b.StartTimer()
		ctl.MustRun("ctrl-exec", "approve", reqid)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(crt); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("agent.crt not stored 30 s after approve")
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
