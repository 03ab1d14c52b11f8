package packaging

// The container images, built and run: a local Alpine-like base made from
// Debian's busybox-static (no registry is reachable), both images built
// once, then the life of a control host and an agent container on the
// host's network, loopback ports only.

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	baseImage    = "ctrl-exec-test/busybox-base:1"
	controlImage = "ctrl-exec-test/ctrl-exec"
	agentImage   = "ctrl-exec-test/agent"
	scratchImage = "ctrl-exec-test/agent-scratch"
)

// Shims for the Alpine commands the Dockerfiles use that Debian's busybox
// lacks; only the forms the Dockerfiles use.
var shims = map[string]string{
	"addgroup": `#!/bin/sh
# addgroup -S NAME: a system group with the next free id from 100.
[ "$1" = -S ] && shift
gid=100
while cut -d: -f3 /etc/group | grep -qx "$gid"; do gid=$((gid + 1)); done
printf '%s:x:%s:\n' "$1" "$gid" >>/etc/group
`,
	"install": `#!/bin/sh
# install -d [-m MODE] [-g GROUP] DIR...
mode= group=
while [ $# -gt 0 ]; do
	case $1 in
	-d) ;;
	-m) mode=$2; shift ;;
	-g) group=$2; shift ;;
	*) break ;;
	esac
	shift
done
for d in "$@"; do
	mkdir -p "$d"
	[ -z "$mode" ] || chmod "$mode" "$d"
	[ -z "$group" ] || chgrp "$group" "$d"
done
`,
}

// docker runs the docker CLI with the classic builder (the engine from
// Debian has no BuildKit front end to offer the newer client).
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerTry(args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(out)
}

func dockerTry(args ...string) (string, error) {
	os.Setenv("DOCKER_BUILDKIT", "0")
	return tryRun("", "docker", args...)
}

// baseTar is a root file system: busybox with a link per applet, the shims,
// and the accounts files.
func baseTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for _, d := range []string{"bin/", "sbin/", "usr/", "usr/bin/", "usr/sbin/", "usr/local/", "usr/local/bin/", "etc/", "root/", "var/", "run/", "proc/", "sys/", "dev/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	add(&tar.Header{Name: "bin/busybox", Mode: 0o755}, bb)
	for _, applet := range strings.Fields(run(t, "", "/bin/busybox", "--list")) {
		if _, shimmed := shims[applet]; shimmed || applet == "busybox" {
			continue
		}
		add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	for name, body := range shims {
		add(&tar.Header{Name: "bin/" + name, Mode: 0o755}, []byte(body))
	}
	add(&tar.Header{Name: "etc/passwd", Mode: 0o644}, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
	add(&tar.Header{Name: "etc/group", Mode: 0o644}, []byte("root:x:0:\nnogroup:x:65534:\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildImages builds the base (once per machine) and the three images from
// the amd64 release binaries, as the Dockerfiles' comments say: the control
// image from the standard build, the agent images from the noetcd build. A
// context holds only what the Dockerfiles copy.
func buildImages(t *testing.T) map[string]int64 {
	t.Helper()
	if _, err := dockerTry("image", "inspect", baseImage); err != nil {
		if _, err := tryRun(string(baseTar(t)), "docker", "import", "-", baseImage); err != nil {
			t.Fatalf("docker import: %v", err)
		}
	}
	contexts := map[string]string{}
	for _, build := range []string{standard, noetcd} {
		ctx := t.TempDir()
		run(t, "", "mkdir", "-p", ctx+"/bin", ctx+"/packaging")
		run(t, "", "cp", artefact(t, build+"amd64"), ctx+"/bin/ctrl-exec")
		run(t, "", "cp", "-a", filepath.Join(top, "packaging/docker"), filepath.Join(top, "packaging/examples"), ctx+"/packaging/")
		contexts[build] = ctx
	}
	sizes := map[string]int64{}
	for image, file := range map[string]string{controlImage: "Dockerfile.ctrl-exec", agentImage: "Dockerfile.agent", scratchImage: "Dockerfile.agent-scratch"} {
		ctx := contexts[noetcd]
		if image == controlImage {
			ctx = contexts[standard]
		}
		docker(t, "build", "-q", "--network", "host", "--build-arg", "BASE="+baseImage,
			"-f", ctx+"/packaging/docker/"+file, "-t", image, ctx)
		size, _ := strconv.ParseInt(docker(t, "image", "inspect", "--format", "{{.Size}}", image), 10, 64)
		sizes[image] = size
	}
	return sizes
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// names gives this run's containers and volumes a unique prefix and removes
// them at the end.
type names struct {
	t      *testing.T
	prefix string
}

func newNames(t *testing.T) *names {
	b := make([]byte, 4)
	rand.Read(b)
	n := &names{t: t, prefix: "cetest-" + hex.EncodeToString(b) + "-"}
	t.Cleanup(func() {
		ids, _ := dockerTry("ps", "-aq", "--filter", "name="+n.prefix)
		if f := strings.Fields(ids); len(f) > 0 {
			dockerTry(append([]string{"rm", "-f"}, f...)...)
		}
		vols, _ := dockerTry("volume", "ls", "-q", "--filter", "name="+n.prefix)
		if f := strings.Fields(vols); len(f) > 0 {
			dockerTry(append([]string{"volume", "rm", "-f"}, f...)...)
		}
	})
	return n
}

func (n *names) of(s string) string { return n.prefix + s }

// writeVolume puts files into a named volume through a throwaway container.
func writeVolume(t *testing.T, volume, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if _, err := tryRun(content, "docker", "run", "--rm", "-i", "--network", "none", "-v", volume+":"+dir,
			"--entrypoint", "/bin/sh", controlImage, "-c", "cat > "+dir+"/"+name+" && chmod 0640 "+dir+"/"+name); err != nil {
			t.Fatalf("write %s into volume %s: %v", name, volume, err)
		}
	}
}

// waitServing waits for a container's port, showing its log if it never opens.
func waitServing(t *testing.T, container string, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !listening(port) {
		if time.Now().After(deadline) {
			logs, _ := tryRun("", "docker", "logs", container)
			t.Fatalf("%s does not listen on %d; its log:\n%s", container, port, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return v
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// pairContainer approves the single pending request on the control
// container once it appears, and waits for the agent run to exit 0.
func approveOne(t *testing.T, control string, agentRun *exec.Cmd, agentOut *bytes.Buffer) {
	t.Helper()
	var reqid string
	eventually(t, 90*time.Second, "a pairing request on the control container", func() bool {
		out, err := dockerTry("exec", control, "ctrl-exec", "list-requests", "--json")
		if err != nil {
			return false
		}
		var reqs []map[string]any
		if json.Unmarshal([]byte(out), &reqs) != nil || len(reqs) != 1 {
			return false
		}
		reqid, _ = reqs[0]["id"].(string)
		return reqid != ""
	})
	docker(t, "exec", control, "ctrl-exec", "approve", reqid)
	done := make(chan error, 1)
	go func() { done <- agentRun.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pairing run: %v\n%s", err, agentOut)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the pairing run did not end after approval:\n%s", agentOut)
	}
}

// agentConf is the agent's config for host networking on a loopback port.
func agentConf(port int) string {
	return fmt.Sprintf("port = %d\ncert = /etc/ctrl-exec-agent/agent.crt\nkey = /etc/ctrl-exec-agent/agent.key\n"+
		"ca = /etc/ctrl-exec-agent/ca.crt\nallowed_ips = 127.0.0.1\n", port)
}

func TestDockerImages(t *testing.T) {
	need(t, "docker")
	sizes := buildImages(t)
	for image, size := range sizes {
		t.Logf("image %s: %d bytes (%.1f MB)", image, size, float64(size)/1e6)
	}
	// The agent images hold the noetcd build, the control image the standard
	// one (its API nodes may share state in etcd); --version names the build.
	for image, args := range map[string][]string{
		controlImage: {"--entrypoint", "/usr/local/bin/ctrl-exec", controlImage, "--version"},
		agentImage:   {"--entrypoint", "/usr/local/bin/ctrl-exec-agent", agentImage, "--version"},
		scratchImage: {scratchImage, "--version"}, // the entrypoint is ctrl-exec-agent
	} {
		v := docker(t, append([]string{"run", "--rm", "--network", "none"}, args...)...)
		if lite := strings.HasSuffix(v, ", noetcd)"); !strings.Contains(v, " version ") || lite != (image != controlImage) {
			t.Errorf("%s: --version %q; want the noetcd build in the agent images only", image, v)
		}
	}
	n := newNames(t)
	apiPort, pairPort, agentPort, scratchPort := freePort(t), freePort(t), freePort(t), freePort(t)
	ctlVols := []string{"-v", n.of("ctl-etc") + ":/etc/ctrl-exec", "-v", n.of("ctl-state") + ":/var/lib/ctrl-exec"}
	agentVols := []string{"-v", n.of("agent-etc") + ":/etc/ctrl-exec-agent", "-v", n.of("agent-scripts") + ":/opt/ctrl-exec-scripts"}
	control := n.of("control")
	startControl := func() {
		docker(t, append(append([]string{"run", "-d", "--name", control, "--network", "host",
			"-e", "API_BIND=127.0.0.1", "-e", "API_PORT=" + strconv.Itoa(apiPort), "-e", "API_AUTH_DEFAULT=allow"}, ctlVols...), controlImage)...)
		eventually(t, 60*time.Second, "the control container's API", func() bool { return listening(apiPort) })
	}

	// First start: CA, cert and config on the volumes; /health answers.
	startControl()
	health := getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/health", apiPort))
	if health["ok"] != true || health["version"] == "" || health["commit"] == "" || !strings.HasPrefix(fmt.Sprint(health["go"]), "go") {
		t.Errorf("/health: %v", health)
	}
	caBefore := docker(t, "exec", control, "cat", "/etc/ctrl-exec/ca.crt")
	for _, f := range []string{"ca.key", "ca.crt", "ctrl-exec.key", "ctrl-exec.crt", "ctrl-exec.conf"} {
		docker(t, "exec", control, "test", "-s", "/etc/ctrl-exec/"+f)
	}

	// The agent pairs through pairing-mode in the control container.
	pm := exec.Command("docker", "exec", control, "ctrl-exec", "pairing-mode", "--port", strconv.Itoa(pairPort))
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	defer pm.Process.Kill()
	eventually(t, 30*time.Second, "pairing-mode", func() bool { return listening(pairPort) })
	writeVolume(t, n.of("agent-etc"), "/etc/ctrl-exec-agent", map[string]string{
		"agent.conf": agentConf(agentPort), "scripts.conf": "echo = /bin/echo\n",
	})
	agent := n.of("agent")
	var pairOut bytes.Buffer
	pairRun := exec.Command("docker", append(append([]string{"run", "--name", agent, "--network", "host",
		"-e", "DISPATCHER_HOST=127.0.0.1", "-e", "DISPATCHER_PORT=" + strconv.Itoa(pairPort), "-e", "CTRL_EXEC_HOSTNAME=agent1"}, agentVols...), agentImage)...)
	pairRun.Stdout, pairRun.Stderr = &pairOut, &pairOut
	if err := pairRun.Start(); err != nil {
		t.Fatal(err)
	}
	approveOne(t, control, pairRun, &pairOut)
	if !strings.Contains(pairOut.String(), "paired; start the container again") {
		t.Errorf("pairing run output:\n%s", pairOut.String())
	}

	// Started again it serves: a run and a ping across the two containers,
	// from the CLI inside the control container and through its API.
	docker(t, "start", agent)
	waitServing(t, agent, agentPort)
	target := "127.0.0.1:" + strconv.Itoa(agentPort)
	if out := docker(t, "exec", control, "ctrl-exec", "ping", target); !strings.Contains(out, "agent1") || !strings.Contains(out, " ok ") {
		t.Errorf("ping:\n%s", out)
	}
	if out := docker(t, "exec", control, "ctrl-exec", "run", target, "echo", "--", "across", "containers"); !strings.Contains(out, "across containers") {
		t.Errorf("run:\n%s", out)
	}
	if code, body := postJSON(t, fmt.Sprintf("http://127.0.0.1:%d/run", apiPort), `{"hosts":["`+target+`"],"script":"echo","args":["via","api"]}`); code != 200 || !strings.Contains(body, "via api") {
		t.Errorf("API /run: %d %s", code, body)
	}

	// kill -HUP 1 reloads the allowlist.
	if _, err := tryRun("", "docker", "exec", control, "ctrl-exec", "run", target, "hello"); err == nil {
		t.Fatal("hello ran before it was allowlisted")
	}
	docker(t, "exec", agent, "sh", "-c", "echo 'hello = /bin/echo' >> /etc/ctrl-exec-agent/scripts.conf")
	docker(t, "exec", agent, "kill", "-HUP", "1")
	eventually(t, 30*time.Second, "the reloaded allowlist", func() bool {
		out, err := dockerTry("exec", control, "ctrl-exec", "run", target, "hello", "--", "reloaded")
		return err == nil && strings.Contains(out, "reloaded")
	})

	// docker stop: PID 1 ends on SIGTERM (exit 0), not on the SIGKILL after the grace period.
	for _, c := range []string{agent, control} {
		start := time.Now()
		docker(t, "stop", "-t", "30", c)
		took := time.Since(start)
		if code := docker(t, "inspect", "--format", "{{.State.ExitCode}}", c); code != "0" {
			t.Errorf("%s after docker stop: exit code %s (137 = killed, SIGTERM ignored)", c, code)
		}
		t.Logf("docker stop %s: %v", c, took.Round(time.Millisecond))
	}

	// Volumes outlive the containers: new containers pick them up (same CA,
	// agent already paired and serving at once).
	docker(t, "rm", agent, control)
	startControl()
	if got := docker(t, "exec", control, "cat", "/etc/ctrl-exec/ca.crt"); got != caBefore {
		t.Error("a new control container made a new CA instead of using the volume's")
	}
	docker(t, append(append([]string{"run", "-d", "--name", agent, "--network", "host"}, agentVols...), agentImage)...)
	waitServing(t, agent, agentPort)
	if out := docker(t, "exec", control, "ctrl-exec", "ping", target); !strings.Contains(out, " ok ") {
		t.Errorf("ping after recreating both containers:\n%s", out)
	}

	// The FROM scratch agent: the binary is the entrypoint; pairing is a run
	// of its own, then it serves.
	pm2 := exec.Command("docker", "exec", control, "ctrl-exec", "pairing-mode", "--port", strconv.Itoa(pairPort))
	if err := pm2.Start(); err != nil {
		t.Fatal(err)
	}
	defer pm2.Process.Kill()
	eventually(t, 30*time.Second, "pairing-mode (second run)", func() bool { return listening(pairPort) })
	scratchVol := []string{"-v", n.of("scratch-etc") + ":/etc/ctrl-exec-agent"}
	writeVolume(t, n.of("scratch-etc"), "/etc/ctrl-exec-agent", map[string]string{
		"agent.conf": agentConf(scratchPort), "scripts.conf": "update-ctrl-exec-serial = /opt/ctrl-exec-scripts/update-ctrl-exec-serial\n"})
	var scratchOut bytes.Buffer
	scratchPair := exec.Command("docker", append(append([]string{"run", "--rm", "--network", "host", "-e", "CTRL_EXEC_HOSTNAME=agent2"}, scratchVol...),
		scratchImage, "request-pairing", "--dispatcher", "127.0.0.1", "--port", strconv.Itoa(pairPort))...)
	scratchPair.Stdout, scratchPair.Stderr = &scratchOut, &scratchOut
	if err := scratchPair.Start(); err != nil {
		t.Fatal(err)
	}
	approveOne(t, control, scratchPair, &scratchOut)
	docker(t, append(append([]string{"run", "-d", "--name", n.of("scratch"), "--network", "host", "-e", "CTRL_EXEC_HOSTNAME=agent2"}, scratchVol...), scratchImage)...)
	waitServing(t, n.of("scratch"), scratchPort)
	if out := docker(t, "exec", control, "ctrl-exec", "ping", "127.0.0.1:"+strconv.Itoa(scratchPort)); !strings.Contains(out, "agent2") || !strings.Contains(out, " ok ") {
		t.Errorf("ping the scratch agent:\n%s", out)
	}
	docker(t, "stop", "-t", "30", n.of("scratch"))
	if code := docker(t, "inspect", "--format", "{{.State.ExitCode}}", n.of("scratch")); code != "0" {
		t.Errorf("scratch agent after docker stop: exit code %s", code)
	}
}
