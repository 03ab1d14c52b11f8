package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// oasSchemaDir holds the official OpenAPI 3.1 schemas (see its README.md).
var oasSchemaDir = filepath.Join("testdata", "oas3.1")

// oasSchemaBaseID is schema-base.json: the OpenAPI 3.1 document schema
// plus the check that every Schema Object is in the OAS base dialect.
const oasSchemaBaseID = "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07"

// oasSchema compiles schema-base.json and its companions, all from
// oasSchemaDir: the compiler may load nothing else.
var oasSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no file or network access
	for _, f := range []string{"schema.json", "schema-base.json", "dialect/base.schema.json", "meta/base.schema.json"} {
		data, err := os.ReadFile(filepath.Join(oasSchemaDir, f))
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			return nil, fmt.Errorf("%s: no $id", f)
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return c.Compile(oasSchemaBaseID)
})

// oasViolations validates an OpenAPI document against the OpenAPI 3.1
// schema; nil when it is valid.
func oasViolations(t testing.TB, document []byte) []string {
	t.Helper()
	schema, err := oasSchema()
	if err != nil {
		t.Fatalf("compiling the OpenAPI 3.1 schema: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(document))
	if err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	return schemaViolations(schema.Validate(v))
}

// The embedded document is a valid OpenAPI 3.1 document, and the validator
// rejects what the OpenAPI schema forbids (or passing would prove nothing).
func TestAPIOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(apiSpecPath)
	if err != nil {
		t.Fatal(err)
	}
	if v := oasViolations(t, data); v != nil {
		t.Fatalf("%s is not a valid OpenAPI 3.1 document:\n%s", apiSpecPath, strings.Join(v, "\n"))
	}

	cases := []struct{ name, doc, want string }{
		{"no info", `{"openapi":"3.1.0","paths":{}}`, "missing property 'info'"},
		{"OpenAPI 3.0", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`, "does not match pattern"},
		{"response without description", `{"openapi":"3.1.0","info":{"title":"t","version":"1"},
			"paths":{"/x":{"get":{"responses":{"200":{}}}}}}`, "missing property 'description'"},
		{"schema type not a type", `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{},
			"components":{"schemas":{"S":{"type":"strin"}}}}`, "/components/schemas/S/type"},
		{"schema minLength not a number", `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{},
			"components":{"schemas":{"S":{"type":"string","minLength":"1"}}}}`, "/components/schemas/S/minLength"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(oasViolations(t, []byte(c.doc)), "\n")
			if !strings.Contains(got, c.want) {
				t.Errorf("violations %q, want one with %q", got, c.want)
			}
		})
	}
}

// The documents the API serves (the embedded one, and the live one with
// this fleet's hosts and scripts as enums) are valid OpenAPI 3.1, and an
// answer of every endpoint and error status passes its schema (apiControl
// checks each answer it gets).
func TestAPIOpenAPILive(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{hook: true}).start()
	a := c.startAgent("localhost") // named as registered: the agent identity check holds
	c.register("localhost", "127.0.0.1", a.port)

	for _, path := range []string{"/openapi.json", "/openapi-live.json"} {
		r := c.call("GET", path, "").want(t, 200, "")
		if v := oasViolations(t, r.Body); v != nil {
			t.Errorf("%s is not a valid OpenAPI 3.1 document:\n%s", path, strings.Join(v, "\n"))
		}
	}

	c.call("GET", "/", "")
	c.call("GET", "/health", "")
	c.call("POST", "/ping", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`)
	run := c.call("POST", "/run", `{"hosts":["`+a.target()+`","127.0.0.1:1"],"script":"echo","args":["x"]}`)
	c.call("GET", "/status/"+run.JSON["reqid"].(string), "")
	c.call("GET", "/status/0123abcd", "")
	c.call("GET", "/discovery", "")
	c.call("POST", "/discovery", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`)
	c.call("POST", "/run", `{"hosts":"x"}`)
	c.call("POST", "/run", `{"hosts":["a"],"script":"true","token":"run=2"}`)
	c.call("GET", "/nowhere", "")
	var headers strings.Builder
	headers.WriteString("GET /health HTTP/1.0\r\n")
	for range 33 {
		headers.WriteString("X: y\r\n")
	}
	c.raw("GET", "/health", []byte(headers.String()+"\r\n"))

	// Lock conflict (409).
	started, release := apiScratch(t, "started"), apiScratch(t, "release")
	hold := `{"hosts":["` + a.target() + `"],"script":"hold","args":["` + started + `","` + release + `"]}`
	done := make(chan error, 1)
	go func() { _, err := c.do("POST", "/run", hold); done <- err }()
	apiWaitFile(t, started, 20*time.Second)
	c.call("POST", "/run", hold).want(t, 409, "")
	os.WriteFile(release, nil, 0o644)
	if err := <-done; err != nil {
		t.Error(err)
	}
}
