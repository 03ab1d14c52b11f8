package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The API tests check every response they receive against the schema its
// endpoint and status have in roles/api/openapi.json, with a full JSON
// Schema 2020-12 validator (santhosh-tekuri/jsonschema). The document itself
// is checked against the official OpenAPI 3.1 schema kept in
// testdata/oas3.1 (api_openapi_test.go). Nothing is fetched: every schema
// the validators see is added to them from the repository.

// apiSpecPath is the embedded OpenAPI document, relative to test/.
var apiSpecPath = filepath.Join("..", "roles", "api", "openapi.json")

// apiSpecURL names openapi.json for the validator; its $refs resolve
// inside it.
const apiSpecURL = "urn:ctrl-exec:openapi.json"

type openAPIDoc struct {
	root map[string]any // as encoding/json decodes it, for specDig

	mu       sync.Mutex // the compiler is not safe for concurrent use
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema // by JSON pointer
}

var loadSpecOnce = sync.OnceValues(func() (*openAPIDoc, error) {
	data, err := os.ReadFile(apiSpecPath)
	if err != nil {
		return nil, err
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", apiSpecPath, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", apiSpecPath, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)      // OpenAPI 3.1's default dialect builds on it
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no file or network access
	if err := c.AddResource(apiSpecURL, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", apiSpecPath, err)
	}
	return &openAPIDoc{root: root, compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
})

func loadAPISpec(t testing.TB) *openAPIDoc {
	t.Helper()
	doc, err := loadSpecOnce()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// schemaAt compiles (once) the schema at a "#/..." pointer of the document.
func (d *openAPIDoc) schemaAt(ptr string) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.compiled[ptr]; ok {
		return s, nil
	}
	s, err := d.compiler.Compile(apiSpecURL + ptr)
	if err != nil {
		return nil, fmt.Errorf("openapi.json schema %s: %w", ptr, err)
	}
	d.compiled[ptr] = s
	return s, nil
}

// routeTemplate maps a request path to its path in the document; "" for
// paths the server has no route for.
func apiRouteTemplate(path string) string {
	switch {
	case path == "/" || path == "/health" || path == "/ping" || path == "/run" ||
		path == "/discovery" || path == "/openapi.json" || path == "/openapi-live.json":
		return path
	case regexp.MustCompile(`^/status/[a-f0-9]+$`).MatchString(path):
		return "/status/{reqid}"
	}
	return ""
}

// schemaPointer is the JSON pointer of the response schema for method,
// request path and status, following a components/responses $ref. Routes
// the document does not describe (404 for unknown paths, framing errors
// without a request) use ErrorResponse.
func (d *openAPIDoc) schemaPointer(method, path string, status int) (string, error) {
	tmpl := apiRouteTemplate(path)
	op, _ := specDig(d.root, "paths", tmpl, strings.ToLower(method)).(map[string]any)
	if tmpl == "" || op == nil {
		if status < 400 {
			return "", fmt.Errorf("%s %s answered %d but has no operation in the document", method, path, status)
		}
		return "#/components/schemas/ErrorResponse", nil
	}
	ptr := "#/paths/" + specEscape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(status)
	resp, ok := specDig(op, "responses", strconv.Itoa(status)).(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s %s: status %d is not documented", method, tmpl, status)
	}
	if ref, ok := resp["$ref"].(string); ok {
		ptr = ref
	}
	return ptr + "/content/application~1json/schema", nil
}

func specEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// checkResponse validates a response body against its endpoint's schema and
// returns the violations (none: nil).
func (d *openAPIDoc) checkResponse(method, path string, status int, body []byte) []string {
	ptr, err := d.schemaPointer(method, path, status)
	if err != nil {
		return []string{err.Error()}
	}
	return d.checkAgainst(ptr, body)
}

// checkAgainst validates one JSON document against the schema at a "#/..."
// pointer of the document and returns the violations (none: nil).
func (d *openAPIDoc) checkAgainst(ptr string, body []byte) []string {
	schema, err := d.schemaAt(ptr)
	if err != nil {
		return []string{err.Error()}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body)) // numbers stay exact
	if err != nil {
		return []string{"body is not JSON: " + err.Error()}
	}
	return schemaViolations(schema.Validate(v))
}

// schemaViolations is a validation error as lines: which schema failed,
// then each place in the instance and what is wrong there.
func schemaViolations(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func specDig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// The checker itself: it must reject what the document forbids, or the
// response checks prove nothing.
func TestAPISchemaCheckerRejects(t *testing.T) {
	t.Parallel()
	doc := loadAPISpec(t)
	cases := []struct {
		name, method, path string
		status             int
		body               string
		wantErr            string // substring of the first violation; "" = valid
	}{
		{"health ok", "GET", "/health", 200, `{"ok":true,"version":"1"}`, ""},
		{"health extra field", "GET", "/health", 200, `{"ok":true,"version":"1","x":1}`, "additional properties 'x' not allowed"},
		{"health ok false", "GET", "/health", 200, `{"ok":false,"version":"1"}`, "at '/ok': value must be true"},
		{"run missing reqid", "POST", "/run", 200, `{"ok":true,"results":[]}`, "missing property 'reqid'"},
		{"run exit not integer", "POST", "/run", 200, `{"ok":true,"reqid":"ab","results":[{"host":"h","exit":1.5}]}`, "want integer"},
		{"run bad rtt", "POST", "/run", 200, `{"ok":true,"reqid":"ab","results":[{"host":"h","exit":0,"rtt":"5s"}]}`, "does not match"},
		{"ping status enum", "POST", "/ping", 200, `{"ok":true,"results":[{"host":"h","status":"meh"}]}`, "value must be one of 'ok', 'error'"},
		{"error shape", "POST", "/run", 409, `{"ok":false,"error":"locked","code":4,"conflicts":["a:b"]}`, ""},
		{"error code zero", "POST", "/run", 403, `{"ok":false,"error":"x","code":0}`, "at '/code': minimum: got 0, want 1"},
		{"undocumented status", "GET", "/health", 409, `{"ok":false,"error":"x"}`, "not documented"},
		{"unknown route", "GET", "/nope", 404, `{"ok":false,"error":"not found","detail":"x"}`, ""},
		{"discovery map", "GET", "/discovery", 200, `{"ok":true,"hosts":{"a":{"host":"a","status":"ok","tags":{"k":1}}}}`, "want string"},
		{"status completed", "GET", "/status/ab", 200, `{"ok":true,"reqid":"ab","script":"s","hosts":[],"results":[],"completed":"x"}`, "want integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := doc.checkResponse(c.method, c.path, c.status, []byte(c.body))
			switch {
			case c.wantErr == "" && len(errs) > 0:
				t.Errorf("unexpected violations: %q", errs)
			case c.wantErr != "" && (len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), c.wantErr)):
				t.Errorf("want a violation containing %q, got %q", c.wantErr, errs)
			}
		})
	}
}
