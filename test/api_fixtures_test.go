package e2e

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// apiControl is a control host with a CA, a ctrl-exec certificate and a
// running ctrl-exec-api.
type apiControl struct {
	t        testing.TB
	root     *Root
	ca       *pki.CA
	ctrlCert *x509.Certificate
	port     int
	proc     *Proc
	hookLog  string // what the test hook recorded, one line per call
	bits     int    // RSA size of its keys and its agents' keys
	spec     *openAPIDoc
}

// apiOptions shape ctrl-exec.conf.
type apiOptions struct {
	hook      bool     // install apiTestHook as auth_hook (else api_auth_default decides)
	allow     bool     // api_auth_default = allow
	extraConf []string // more key = value lines
	bits      int      // RSA size of every key; 0 = testKeyBits
}

// apiTestHook records each call and denies when the token says so: a token
// containing "<action>=<code>" makes that action exit <code>, e.g.
// "run=3" or "api=2,ping=1".
const apiTestHook = `#!/bin/sh
printf '%s user=%s token=%s hosts=%s script=%s\n' "$ENVEXEC_ACTION" "$ENVEXEC_USERNAME" "$ENVEXEC_TOKEN" "$ENVEXEC_HOSTS" "$ENVEXEC_SCRIPT" >> "$API_HOOK_LOG"
rest=${ENVEXEC_TOKEN#*"$ENVEXEC_ACTION="}
if [ "$rest" != "$ENVEXEC_TOKEN" ]; then
  exit "${rest%%,*}"
fi
exit 0
`

// newAPIControl prepares a control host; call start to run the API.
func newAPIControl(t testing.TB, opts apiOptions) *apiControl {
	t.Helper()
	r := NewRoot(t, "control")
	now := time.Now()
	bits := opts.bits
	if bits == 0 {
		bits = testKeyBits
	}
	keys := keysOfSize(t, bits, 2)
	ca, err := pki.CreateCAWithKey(pki.CAFilesIn(r.Path("/etc/ctrl-exec")), keys[0], now)
	if err != nil {
		t.Fatal(err)
	}
	cert := issueCtrlExecCert(t, ca, keys[1], r.Path("/etc/ctrl-exec/ctrl-exec.key"), r.Path("/etc/ctrl-exec/ctrl-exec.crt"), now)
	c := &apiControl{t: t, root: r, ca: ca, ctrlCert: cert, bits: bits, port: FreePort(t), hookLog: r.Path("/hook.log"), spec: loadAPISpec(t)}
	r.ExtraEnv = append(r.ExtraEnv, "API_HOOK_LOG="+c.hookLog)
	conf := []string{
		"cert = " + r.Path("/etc/ctrl-exec/ctrl-exec.crt"),
		"key = " + r.Path("/etc/ctrl-exec/ctrl-exec.key"),
		"ca = " + r.Path("/etc/ctrl-exec/ca.crt"),
		"api_bind = 127.0.0.1",
		"api_port = " + itoa(c.port),
		"read_timeout = 20",
	}
	if opts.hook {
		conf = append(conf, "auth_hook = "+r.WriteFile("/etc/ctrl-exec/auth-hook", apiTestHook, 0o755))
	}
	if opts.allow {
		conf = append(conf, "api_auth_default = allow")
	}
	conf = append(conf, opts.extraConf...)
	r.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", strings.Join(conf, "\n")+"\n", 0o640)
	return c
}

// start runs ctrl-exec-api and waits for its listening line.
func (c *apiControl) start() *apiControl {
	c.t.Helper()
	c.proc = c.root.Start("ctrl-exec-api", "--config", c.root.Path("/etc/ctrl-exec/ctrl-exec.conf"))
	c.proc.WaitOutput(c.t, "ctrl-exec API listening on 127.0.0.1:"+itoa(c.port)+" (plain HTTP)", 20*time.Second)
	return c
}

func (c *apiControl) url(path string) string { return "http://127.0.0.1:" + itoa(c.port) + path }

// apiReply is one answer of the API.
type apiReply struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

// call sends one request with Go's HTTP client and checks the answer
// against the endpoint's schema in openapi.json. headers are "Name: value".
func (c *apiControl) call(method, path, body string, headers ...string) apiReply {
	c.t.Helper()
	r, err := c.do(method, path, body, headers...)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// do is call for any goroutine: every problem is in the error.
func (c *apiControl) do(method, path, body string, headers ...string) (apiReply, error) {
	req, err := http.NewRequest(method, c.url(path), strings.NewReader(body))
	if err != nil {
		return apiReply{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return apiReply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiReply{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return c.checked(method, path, apiReply{Status: resp.StatusCode, Header: resp.Header, Body: data})
}

// raw sends bytes as they are and parses the answer by hand (framing tests).
func (c *apiControl) raw(method, path string, request []byte) apiReply {
	c.t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+itoa(c.port), 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	go conn.Write(request) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		c.t.Fatalf("%s %s: no HTTP answer: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	r, err := c.checked(method, path, apiReply{Status: resp.StatusCode, Header: resp.Header, Body: data})
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// checked applies what every answer must satisfy: the fixed headers, a
// JSON object body, and the endpoint's schema in openapi.json.
func (c *apiControl) checked(method, path string, r apiReply) (apiReply, error) {
	var problems []string
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		problems = append(problems, fmt.Sprintf("Content-Type %q", ct))
	}
	if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
		problems = append(problems, fmt.Sprintf("Content-Length %q for %d bytes", cl, len(r.Body)))
	}
	if err := json.Unmarshal(r.Body, &r.JSON); err != nil {
		problems = append(problems, "body is not a JSON object: "+err.Error())
	} else {
		for _, v := range c.spec.checkResponse(method, path, r.Status, r.Body) {
			problems = append(problems, "against openapi.json: "+v)
		}
	}
	if len(problems) > 0 {
		return r, fmt.Errorf("%s %s answered %d: %s\nbody: %s", method, path, r.Status, strings.Join(problems, "; "), r.Body)
	}
	return r, nil
}

// want fails unless the answer has the status and, when detail is not "",
// the error detail (or error, for 403s).
func (r apiReply) want(t *testing.T, status int, errText string) apiReply {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if errText != "" {
		got, _ := r.JSON["detail"].(string)
		if status == 403 || got == "" {
			got, _ = r.JSON["error"].(string)
		}
		if got != errText {
			t.Fatalf("error %q, want %q: %s", got, errText, r.Body)
		}
	}
	return r
}

// hookCalls returns the hook's log lines so far.
func (c *apiControl) hookCalls() []string {
	data, _ := os.ReadFile(c.hookLog)
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// register writes a registry record for an agent.
func (c *apiControl) register(hostname, ip string, port int) {
	c.t.Helper()
	rec := map[string]string{
		"hostname": hostname, "ip": ip, "port": itoa(port), "paired": "2026-01-01T00:00:00Z",
		"expiry": "", "reqid": "00", "dispatcher_serial": pki.SerialHex(c.ctrlCert),
		"serial_status": "current", "serial_broadcast": "", "serial_confirmed": "",
	}
	data, _ := json.Marshal(rec)
	c.root.WriteFile("/var/lib/ctrl-exec/agents/"+hostname+".json", string(data), 0o644)
}

// apiAgent is a real ctrl-exec-agent serving on 127.0.0.1:port.
type apiAgent struct {
	root *Root
	name string
	port int
	proc *Proc
}

// apiAgentScripts are the test agents' allowlisted scripts.
var apiAgentScripts = map[string]string{
	"true": "#!/bin/sh\nexit 0\n",
	"echo": "#!/bin/sh\necho \"$@\"\n",
	// hold: touch $1, then wait until $2 exists (at most 30 s).
	"hold": "#!/bin/sh\ntouch \"$1\"\ni=0\nwhile [ ! -e \"$2\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\necho held\n",
	"fail": "#!/bin/sh\necho oops >&2\nexit 3\n",
}

// startAgent pairs a real agent with this control host by hand (key, CSR,
// certificate signed by the CA, stored ctrl-exec serial) and starts it.
// extraScripts are more allowlist names, each running /bin/true.
func (c *apiControl) startAgent(name string, extraScripts ...string) *apiAgent {
	c.t.Helper()
	t := c.t
	r := NewRoot(t, name)
	a := &apiAgent{root: r, name: name, port: FreePort(t)}
	key := keysOfSize(t, c.bits, 1)[0]
	csr, err := pki.CreateCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.ca.SignCSR(csr, 365, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKeyPEM(key)
	r.WriteFile("/etc/ctrl-exec-agent/agent.key", string(keyPEM), 0o600)
	r.WriteFile("/etc/ctrl-exec-agent/agent.crt", string(pki.CertPEM(cert)), 0o644)
	r.WriteFile("/etc/ctrl-exec-agent/ca.crt", string(c.ca.CertPEM), 0o644)
	r.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", pki.SerialHex(c.ctrlCert)+"\n", 0o640)
	var allow bytes.Buffer
	for script, body := range apiAgentScripts {
		fmt.Fprintf(&allow, "%s = %s\n", script, r.WriteFile("/opt/ctrl-exec-scripts/"+script+".sh", body, 0o755))
	}
	for _, script := range extraScripts {
		fmt.Fprintf(&allow, "%s = %s\n", script, r.Path("/opt/ctrl-exec-scripts/true.sh"))
	}
	r.WriteFile("/etc/ctrl-exec-agent/scripts.conf", allow.String(), 0o640)
	r.WriteFile("/etc/ctrl-exec-agent/agent.conf", strings.Join([]string{
		"port = " + itoa(a.port),
		"cert = " + r.Path("/etc/ctrl-exec-agent/agent.crt"),
		"key = " + r.Path("/etc/ctrl-exec-agent/agent.key"),
		"ca = " + r.Path("/etc/ctrl-exec-agent/ca.crt"),
		"dispatcher_serial_path = " + r.Path("/etc/ctrl-exec-agent/ctrl-exec-serial"),
		"revoked_serials = " + r.Path("/etc/ctrl-exec-agent/revoked-serials"),
		"rate_limit_disable = yes",
		"[tags]",
		"role = test",
	}, "\n")+"\n", 0o640)
	a.proc = r.Start("ctrl-exec-agent", "serve", "--config", r.Path("/etc/ctrl-exec-agent/agent.conf"),
		"--allowlist", r.Path("/etc/ctrl-exec-agent/scripts.conf"))
	WaitListening(t, a.port, 20*time.Second)
	return a
}

// target is the agent's host argument for the API.
func (a *apiAgent) target() string { return "127.0.0.1:" + itoa(a.port) }

// addScript allowlists another name (running /bin/true) and reloads the agent.
func (a *apiAgent) addScript(t *testing.T, name string) {
	t.Helper()
	path := a.root.Path("/etc/ctrl-exec-agent/scripts.conf")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%s = %s\n", name, a.root.Path("/opt/ctrl-exec-scripts/true.sh"))
	f.Close()
	a.proc.Cmd.Process.Signal(syscall.SIGHUP)
}

// waitFile waits until path exists.
func apiWaitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", path, timeout)
}

// scratch is a file name under the test's temp dir.
func apiScratch(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
