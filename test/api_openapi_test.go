package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
)

// The npm tools of TestAPIOpenAPIValidators, pinned by package-lock.json.
var openapiToolsDir = filepath.Join("testdata", "openapi")

// openapiTools installs the pinned npm packages once per lock-file version
// into the user cache directory (npm ci, from the npm registry) and returns
// that directory. It skips the test only when Node.js is not installed.
func openapiTools(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the OpenAPI document and live responses are checked only by the Go checker (install Node.js and npm to run the npm validators)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("node is at %s but npm is not installed: install npm", node)
	}
	lock, err := os.ReadFile(filepath.Join(openapiToolsDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "ctrl-exec-go", "openapi-check-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = atomicfile.WithLock(dir, func() error { // parallel test binaries install once
		if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil {
			return nil
		}
		for _, f := range []string{"package.json", "package-lock.json"} {
			data, err := os.ReadFile(filepath.Join(openapiToolsDir, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return &apiInstallError{err: err, out: string(out)}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("installing the npm OpenAPI validators into %s: %v", dir, err)
	}
	script, err := os.ReadFile(filepath.Join(openapiToolsDir, "check.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "check.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type apiInstallError struct {
	err error
	out string
}

func (e *apiInstallError) Error() string { return "npm ci: " + e.err.Error() + "\n" + e.out }

// The document (embedded and live) passes a real OpenAPI 3.1 validator, and
// a live answer of every endpoint and error status passes Ajv against the
// schema the document gives it, as it passed the Go checker.
func TestAPIOpenAPIValidators(t *testing.T) {
	tools := openapiTools(t)
	c := newAPIControl(t, apiOptions{hook: true}).start()
	a := c.startAgent("localhost") // named as registered: the agent identity check holds
	c.register("localhost", "127.0.0.1", a.port)

	type sample struct {
		Label   string          `json:"label"`
		Pointer string          `json:"pointer"`
		Body    json.RawMessage `json:"body"`
	}
	var samples []sample
	add := func(method, path string, r apiReply) apiReply {
		ptr, err := c.spec.schemaPointer(method, path, r.Status)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{Label: method + " " + path + " " + itoa(r.Status), Pointer: ptr, Body: r.Body})
		return r
	}
	call := func(method, path, body string, headers ...string) apiReply {
		return add(method, path, c.call(method, path, body, headers...))
	}

	call("GET", "/", "")
	call("GET", "/health", "")
	call("POST", "/ping", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`)
	run := call("POST", "/run", `{"hosts":["`+a.target()+`","127.0.0.1:1"],"script":"echo","args":["x"]}`)
	call("GET", "/status/"+run.JSON["reqid"].(string), "")
	call("GET", "/status/0123abcd", "")
	call("GET", "/discovery", "")
	call("POST", "/discovery", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`)
	call("GET", "/openapi.json", "")
	live := call("GET", "/openapi-live.json", "")
	call("POST", "/run", `{"hosts":"x"}`)
	call("POST", "/run", `{"hosts":["a"],"script":"true","token":"run=2"}`)
	call("GET", "/nowhere", "")
	var headers strings.Builder
	headers.WriteString("GET /health HTTP/1.0\r\n")
	for range 33 {
		headers.WriteString("X: y\r\n")
	}
	add("GET", "/health", c.raw("GET", "/health", []byte(headers.String()+"\r\n")))

	// Lock conflict (409).
	started, release := apiScratch(t, "started"), apiScratch(t, "release")
	hold := `{"hosts":["` + a.target() + `"],"script":"hold","args":["` + started + `","` + release + `"]}`
	done := make(chan struct{})
	go func() { defer close(done); c.do("POST", "/run", hold) }()
	apiWaitFile(t, started, 20*time.Second)
	call("POST", "/run", hold)
	os.WriteFile(release, nil, 0o644)
	<-done

	dir := t.TempDir()
	livePath := filepath.Join(dir, "live.json")
	os.WriteFile(livePath, live.Body, 0o644)
	input, _ := json.Marshal(map[string]any{
		"docs":       []string{apiAbsPath(t, apiSpecPath), livePath},
		"schema_doc": apiAbsPath(t, apiSpecPath),
		"responses":  samples,
	})
	inputPath := filepath.Join(dir, "input.json")
	os.WriteFile(inputPath, input, 0o644)

	cmd := exec.Command("node", "check.mjs", inputPath)
	cmd.Dir = tools
	out, err := cmd.CombinedOutput()
	t.Logf("npm validators:\n%s", out)
	if err != nil {
		t.Fatalf("npm validators failed: %v", err)
	}
	if !strings.Contains(string(out), itoa(len(samples))+" responses checked") {
		t.Fatalf("validator did not check all %d responses", len(samples))
	}
}

func apiAbsPath(t *testing.T, p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
