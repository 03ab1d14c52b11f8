package e2e

import (
	"bufio"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// fleetPKI is a CA and a ctrl-exec identity issued directly through
// pkg/pki, plus one RSA key that every agent of the fleet shares (each agent
// still gets its own certificate and serial).
type fleetPKI struct {
	dir        string
	ca         *pki.CA
	ctrlCert   string // file
	ctrlKey    string // file
	ctrlSerial string // hex, what agents store as ctrl-exec-serial
	agentKey   crypto.Signer
	agentPEM   []byte
}

var fleetPKIs sync.Map // key type and bits → *fleetPKI: built once per process for each

// sharedFleetPKI returns the fleet PKI with RSA keys of the given size, made
// once per test binary run and kept under binDir (removed by TestMain).
func sharedFleetPKI(tb testing.TB, bits int) *fleetPKI {
	return sharedFleetPKIOfType(tb, pki.KeyRSA4096, bits)
}

// sharedFleetPKIOfType is sharedFleetPKI with keys of type kt (bits is the
// RSA size).
func sharedFleetPKIOfType(tb testing.TB, kt pki.KeyType, bits int) *fleetPKI {
	tb.Helper()
	type entry struct {
		once sync.Once
		p    *fleetPKI
		err  error
	}
	name := "fleet-pki-" + string(kt) + "-" + strconv.Itoa(bits)
	v, _ := fleetPKIs.LoadOrStore(name, &entry{})
	e := v.(*entry)
	e.once.Do(func() { e.p, e.err = newFleetPKI(filepath.Join(binDir, name), kt, bits) })
	if e.err != nil {
		tb.Fatal(e.err)
	}
	return e.p
}

func newFleetPKI(dir string, kt pki.KeyType, bits int) (*fleetPKI, error) {
	now := time.Now()
	ca, err := pki.CreateCAOfType(pki.CAFilesIn(filepath.Join(dir, "ca")), kt, bits, now)
	if err != nil {
		return nil, err
	}
	p := &fleetPKI{dir: dir, ca: ca, ctrlCert: filepath.Join(dir, "ctrl-exec.crt"), ctrlKey: filepath.Join(dir, "ctrl-exec.key")}
	cert, err := ca.IssueCtrlExecCert(p.ctrlKey, p.ctrlCert, bits, 825, now)
	if err != nil {
		return nil, err
	}
	p.ctrlSerial = pki.SerialHex(cert)
	if p.agentKey, err = pki.NewKey(kt, bits); err != nil {
		return nil, err
	}
	if p.agentPEM, err = pki.EncodeKeyPEM(p.agentKey); err != nil {
		return nil, err
	}
	return p, nil
}

// writeFile writes root+path, creating directories.
func writeFile(tb testing.TB, root, path, content string, mode os.FileMode) string {
	tb.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	return full
}

func copyFile(tb testing.TB, from, root, path string, mode os.FileMode) string {
	tb.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, root, path, string(data), mode)
}

// installControl puts the CA certificate and the ctrl-exec identity into a
// control root's /etc/ctrl-exec and writes ctrl-exec.conf with extra lines.
func (p *fleetPKI) installControl(tb testing.TB, root string, extra ...string) {
	tb.Helper()
	conf := []string{
		"cert = " + copyFile(tb, p.ctrlCert, root, "/etc/ctrl-exec/ctrl-exec.crt", 0o644),
		"key = " + copyFile(tb, p.ctrlKey, root, "/etc/ctrl-exec/ctrl-exec.key", 0o600),
		"ca = " + writeFile(tb, root, "/etc/ctrl-exec/ca.crt", string(p.ca.CertPEM), 0o644),
	}
	writeFile(tb, root, "/etc/ctrl-exec/ctrl-exec.conf", strings.Join(append(conf, extra...), "\n")+"\n", 0o640)
}

// agentFiles are one agent identity's files.
type agentFiles struct{ cert, key, ca string }

// installAgentIdentity issues a certificate for hostname with the shared
// agent key and stores it, the key, the CA and the ctrl-exec serial where
// pairing would have put them in root.
func (p *fleetPKI) installAgentIdentity(tb testing.TB, root, hostname string) agentFiles {
	tb.Helper()
	csr, err := pki.CreateCSR(p.agentKey, hostname)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := p.ca.SignCSR(csr, 365, time.Now(), pki.SignOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, root, "/etc/ctrl-exec-agent/ctrl-exec-serial", p.ctrlSerial+"\n", 0o644)
	return agentFiles{
		cert: writeFile(tb, root, "/etc/ctrl-exec-agent/agent.crt", string(pki.CertPEM(cert)), 0o640),
		key:  writeFile(tb, root, "/etc/ctrl-exec-agent/agent.key", string(p.agentPEM), 0o640),
		ca:   writeFile(tb, root, "/etc/ctrl-exec-agent/ca.crt", string(p.ca.CertPEM), 0o644),
	}
}

// fakeScript is how an in-test agent answers POST /run for one script name.
type fakeScript func(args []string) (exit int, stdout, stderr string)

// fakeAgentRun is one /run an in-test agent served.
type fakeAgentRun struct {
	Body       map[string]any
	Start, End time.Time
}

// fakeAgent is an in-test agent: the agent's TLS policy from pkg/tlsx, a
// certificate from the fleet CA, and canned answers to /run and /ping. It
// lets CLI tests run without the real agent server.
type fakeAgent struct {
	name    string
	port    int
	scripts map[string]fakeScript
	release chan struct{} // closed by releaseHolds: "hold" runs return
	once    sync.Once
	mu      sync.Mutex
	runs    []fakeAgentRun
}

// releaseHolds lets every "hold" run, current and future, finish.
func (a *fakeAgent) releaseHolds() { a.once.Do(func() { close(a.release) }) }

// standardFakeScripts: hello prints a greeting; slow sleeps for its first
// argument in seconds (default 2); hold waits for releaseHolds (at most
// 60 s); fail exits 3.
func standardFakeScripts(name string, release <-chan struct{}) map[string]fakeScript {
	return map[string]fakeScript{
		"hold": func([]string) (int, string, string) {
			select {
			case <-release:
			case <-time.After(60 * time.Second):
			}
			return 0, "held\n", ""
		},
		"hello": func(args []string) (int, string, string) {
			return 0, "hello from " + name + " " + strings.Join(args, ",") + "\n", ""
		},
		"slow": func(args []string) (int, string, string) {
			d := 2 * time.Second
			if len(args) > 0 {
				if s, err := strconv.ParseFloat(args[0], 64); err == nil {
					d = time.Duration(s * float64(time.Second))
				}
			}
			time.Sleep(d)
			return 0, "slow done\n", ""
		},
		"fail": func([]string) (int, string, string) { return 3, "", "failed\n" },
	}
}

func startFakeAgent(tb testing.TB, p *fleetPKI, name string) *fakeAgent {
	tb.Helper()
	ids := p.installAgentIdentity(tb, tb.TempDir(), name)
	id, err := tlsx.LoadIdentity(ids.cert, ids.key, ids.ca)
	if err != nil {
		tb.Fatal(err)
	}
	conf := tlsx.AgentServerConfig(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	a := &fakeAgent{name: name, port: ln.Addr().(*net.TCPAddr).Port, release: make(chan struct{})}
	a.scripts = standardFakeScripts(name, a.release)
	var wg sync.WaitGroup
	tb.Cleanup(func() { a.releaseHolds(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(90 * time.Second))
				a.serve(tls.Server(raw, conf))
			}()
		}
	}()
	return a
}

func (a *fakeAgent) serve(conn *tls.Conn) {
	if conn.Handshake() != nil {
		return
	}
	req, err := wire.ReadRequest(bufio.NewReader(conn), wire.AgentLimits())
	if err != nil {
		return
	}
	var body map[string]any
	json.Unmarshal(req.Body, &body)
	reqid, _ := body["reqid"].(string)
	switch req.Method + " " + req.Path {
	case "POST /ping":
		wire.WriteResponse(conn, 200, orderedJSON("status", "ok", "host", a.name, "version", "fake",
			"expiry", "Jan  1 00:00:00 2030 GMT", "reqid", reqid), wire.AgentPhrase)
	case "POST /run":
		run := fakeAgentRun{Body: body, Start: time.Now()}
		script, _ := body["script"].(string)
		var args []string
		list, _ := body["args"].([]any)
		for _, v := range list {
			s, _ := v.(string)
			args = append(args, s)
		}
		fn, ok := a.scripts[script]
		var answer []byte
		if !ok {
			answer = orderedJSON("script", script, "exit", -1, "error", "script not permitted", "reqid", reqid)
		} else {
			code, out, errOut := fn(args)
			answer = orderedJSON("script", script, "exit", code, "stdout", out, "stderr", errOut, "reqid", reqid)
		}
		run.End = time.Now()
		a.mu.Lock()
		a.runs = append(a.runs, run)
		a.mu.Unlock()
		wire.WriteResponse(conn, 200, answer, wire.AgentPhrase)
	default:
		wire.WriteResponse(conn, 404, []byte(`{"error":"not found"}`), wire.AgentPhrase)
	}
}

// orderedJSON encodes key, value, key, value… as an object in that order,
// as the agent does.
func orderedJSON(kv ...any) []byte {
	var o wire.Object
	for i := 0; i+1 < len(kv); i += 2 {
		o.Set(kv[i].(string), kv[i+1])
	}
	b, _ := o.MarshalJSON()
	return b
}

func (a *fakeAgent) target() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

func (a *fakeAgent) Runs() []fakeAgentRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]fakeAgentRun(nil), a.runs...)
}

// errAgentServeMissing means the binary's `ctrl-exec-agent serve` does not
// serve yet (it exited at once): tests that need real agents skip.
var errAgentServeMissing = errors.New("ctrl-exec-agent serve exited without listening")

// realAgent is a `ctrl-exec-agent serve` process in its own root.
type realAgent struct {
	root *Root
	name string
	port int
	proc *Proc
}

// fleetScripts are the real agents' allowlisted scripts, by name.
var fleetScripts = map[string]string{
	"true": "/bin/true",
	// sleep2 notes when it started and ended in ./sleep2.times (the agent's
	// working directory, its root) so a test can see runs overlap.
	"sleep2":  "#!/bin/sh\ndate +%s.%N >> sleep2.times\nsleep 2\ndate +%s.%N >> sleep2.times\necho slept\n",
	"context": "#!/bin/sh\ncat\n", // echoes the stdin context (it carries the token)
	// hold waits until the file named by its argument exists (at most 60 s).
	"hold": "#!/bin/sh\ni=0\nwhile [ ! -e \"$1\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\necho held\n",
	// flood prints $1 bytes of "o" on stdout.
	"flood": "#!/bin/sh\nhead -c \"$1\" /dev/zero | tr '\\0' o\n",
}

// startRealAgent launches a real agent and waits until it listens.
func startRealAgent(tb testing.TB, p *fleetPKI, name string) (*realAgent, error) {
	tb.Helper()
	a := launchRealAgent(tb, p, name)
	return a, a.waitReady(20 * time.Second)
}

// writeAllowlist writes scripts.conf under dir: a body starting with "#!"
// becomes a script file in /opt/ctrl-exec-scripts, any other is a path.
func writeAllowlist(tb testing.TB, dir string, scripts map[string]string) {
	tb.Helper()
	var allow strings.Builder
	for script, body := range scripts {
		path := body
		if strings.HasPrefix(body, "#!") {
			path = writeFile(tb, dir, "/opt/ctrl-exec-scripts/"+script, body, 0o755)
		}
		fmt.Fprintf(&allow, "%s = %s\n", script, path)
	}
	writeFile(tb, dir, "/etc/ctrl-exec-agent/scripts.conf", allow.String(), 0o640)
}

// launchRealAgent installs an identity, agent.conf and the fleet scripts in
// a fresh root and starts `ctrl-exec-agent serve` on a free loopback port
// without waiting for it. The process is stopped at cleanup.
func launchRealAgent(tb testing.TB, p *fleetPKI, name string) *realAgent {
	tb.Helper()
	dir := tb.TempDir()
	r := &Root{t: tb, Dir: dir, LogFile: filepath.Join(dir, "log"), Hostname: name}
	ids := p.installAgentIdentity(tb, dir, name)
	writeAllowlist(tb, dir, fleetScripts)
	port := FreePort(tb)
	conf := writeFile(tb, dir, "/etc/ctrl-exec-agent/agent.conf", strings.Join([]string{
		"port = " + strconv.Itoa(port),
		"cert = " + ids.cert,
		"key = " + ids.key,
		"ca = " + ids.ca,
		"dispatcher_serial_path = " + filepath.Join(dir, "/etc/ctrl-exec-agent/ctrl-exec-serial"),
		"revoked_serials = " + filepath.Join(dir, "/etc/ctrl-exec-agent/revoked-serials"),
		"rate_limit_disable = yes", // benchmarks connect far more often than the default volume limit
	}, "\n")+"\n", 0o640)

	proc := r.Start("ctrl-exec-agent", "serve", "--config", conf,
		"--allowlist", filepath.Join(dir, "/etc/ctrl-exec-agent/scripts.conf"))
	return &realAgent{root: r, name: name, port: port, proc: proc}
}

// waitReady waits until the agent accepts connections; errAgentServeMissing
// if it exited first.
func (a *realAgent) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if a.proc.Exited() {
			return fmt.Errorf("%w (agent %s; log: %s)", errAgentServeMissing, a.name, readFileString(a.root.LogFile))
		}
		if c, err := net.DialTimeout("tcp", a.target(), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("agent %s not listening on %d after %v", a.name, a.port, timeout)
}

func (a *realAgent) target() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

// rssKiB is the process's resident set (VmRSS) in KiB.
func (a *realAgent) rssKiB() (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.proc.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no VmRSS line")
}

// cpu is the on-CPU time of the agent process's own threads so far
// (schedstat; the scripts it runs are not included).
func (a *realAgent) cpu() (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", a.proc.Cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended
		}
		ns, err := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", dir, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
