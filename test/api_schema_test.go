package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The API tests check every response they receive against the schema its
// endpoint and status have in roles/api/openapi.json. This file is the
// checker: the JSON Schema 2020-12 keywords that document uses, and nothing
// else, so a keyword added to the document without support here fails
// loudly instead of being ignored. TestAPIOpenAPIValidators cross-checks
// the document and a sample of live responses with real npm validators.

// apiSpecPath is the embedded OpenAPI document, relative to test/.
var apiSpecPath = filepath.Join("..", "roles", "api", "openapi.json")

type openAPIDoc struct{ root map[string]any }

var loadSpecOnce = sync.OnceValues(func() (*openAPIDoc, error) {
	data, err := os.ReadFile(apiSpecPath)
	if err != nil {
		return nil, err
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", apiSpecPath, err)
	}
	return &openAPIDoc{root: root}, nil
})

func loadAPISpec(t testing.TB) *openAPIDoc {
	t.Helper()
	doc, err := loadSpecOnce()
	if err != nil {
		t.Fatal(err)
	}
	return doc
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

// resolve returns the value at a "#/..." pointer.
func (d *openAPIDoc) resolve(ptr string) (any, error) {
	if !strings.HasPrefix(ptr, "#/") {
		return nil, fmt.Errorf("unsupported $ref %q", ptr)
	}
	var v any = d.root
	for _, part := range strings.Split(ptr[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is not inside an object", ptr, part)
		}
		if v, ok = m[part]; !ok {
			return nil, fmt.Errorf("$ref %q: no %q", ptr, part)
		}
	}
	return v, nil
}

// checkResponse validates a response body against its endpoint's schema and
// returns the violations (none: nil).
func (d *openAPIDoc) checkResponse(method, path string, status int, body []byte) []string {
	ptr, err := d.schemaPointer(method, path, status)
	if err != nil {
		return []string{err.Error()}
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return []string{"body is not JSON: " + err.Error()}
	}
	schema, err := d.resolve(ptr)
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	d.validate(schema, v, "$", &errs)
	return errs
}

// annotation keywords carry no assertion.
var schemaAnnotations = map[string]bool{
	"description": true, "example": true, "examples": true, "title": true, "default": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "format": true, "$comment": true,
}

// validate applies the supported assertion keywords of schema to v.
func (d *openAPIDoc) validate(schema any, v any, at string, errs *[]string) {
	fail := func(format string, a ...any) { *errs = append(*errs, at+": "+fmt.Sprintf(format, a...)) }
	if b, ok := schema.(bool); ok {
		if !b {
			fail("no value is allowed here")
		}
		return
	}
	s, ok := schema.(map[string]any)
	if !ok {
		fail("schema is not an object: %v", schema)
		return
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kw := s[k]
		switch {
		case schemaAnnotations[k]:
		case k == "$ref":
			target, err := d.resolve(kw.(string))
			if err != nil {
				fail("%v", err)
				continue
			}
			d.validate(target, v, at, errs)
		case k == "type":
			if !schemaHasType(v, kw.(string)) {
				fail("want %s, got %s", kw, schemaKind(v))
			}
		case k == "const":
			if !schemaEqual(v, kw) {
				fail("want %v, got %v", kw, v)
			}
		case k == "enum":
			list, _ := kw.([]any)
			found := false
			for _, e := range list {
				found = found || schemaEqual(v, e)
			}
			if !found {
				fail("%v is not one of %v", v, kw)
			}
		case k == "pattern":
			if str, ok := v.(string); ok && !regexp.MustCompile(kw.(string)).MatchString(str) {
				fail("%q does not match %s", str, kw)
			}
		case k == "minimum":
			if n, ok := v.(json.Number); ok {
				f, _ := n.Float64()
				min, _ := kw.(float64)
				if f < min {
					fail("%v is below %v", n, kw)
				}
			}
		case k == "minItems" || k == "maxItems":
			if arr, ok := v.([]any); ok {
				limit := int(kw.(float64))
				if (k == "minItems" && len(arr) < limit) || (k == "maxItems" && len(arr) > limit) {
					fail("%d items breaks %s %d", len(arr), k, limit)
				}
			}
		case k == "required":
			if obj, ok := v.(map[string]any); ok {
				for _, name := range kw.([]any) {
					if _, present := obj[name.(string)]; !present {
						fail("missing required %q", name)
					}
				}
			}
		case k == "properties":
			if obj, ok := v.(map[string]any); ok {
				for name, sub := range kw.(map[string]any) {
					if val, present := obj[name]; present {
						d.validate(sub, val, at+"."+name, errs)
					}
				}
			}
		case k == "additionalProperties":
			if obj, ok := v.(map[string]any); ok {
				props, _ := s["properties"].(map[string]any)
				for name, val := range obj {
					if _, declared := props[name]; !declared {
						d.validate(kw, val, at+"."+name, errs)
					}
				}
			}
		case k == "oneOf":
			matched := 0
			var why []string
			for i, sub := range kw.([]any) {
				var subErrs []string
				d.validate(sub, v, at, &subErrs)
				if len(subErrs) == 0 {
					matched++
				}
				for _, e := range subErrs {
					why = append(why, "oneOf["+strconv.Itoa(i)+"] "+e)
				}
			}
			if matched != 1 {
				fail("matches %d of the oneOf schemas, want exactly 1 (%s)", matched, strings.Join(why, "; "))
			}
		case k == "items":
			if arr, ok := v.([]any); ok {
				for i, el := range arr {
					d.validate(kw, el, at+"["+strconv.Itoa(i)+"]", errs)
				}
			}
		default:
			fail("schema keyword %q is not supported by this checker: extend api_schema_test.go", k)
		}
	}
}

func schemaHasType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f == float64(int64(f))
	}
	return false
}

func schemaKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// jsonEqual compares a decoded value (numbers as json.Number) with a schema
// constant (numbers as float64).
func schemaEqual(v, c any) bool {
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		cf, isNum := c.(float64)
		return err == nil && isNum && f == cf
	}
	a, _ := json.Marshal(v)
	b, _ := json.Marshal(c)
	return string(a) == string(b)
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
	doc := loadAPISpec(t)
	cases := []struct {
		name, method, path string
		status             int
		body               string
		wantErr            string // substring of the first violation; "" = valid
	}{
		{"health ok", "GET", "/health", 200, `{"ok":true,"version":"1"}`, ""},
		{"health extra field", "GET", "/health", 200, `{"ok":true,"version":"1","x":1}`, "no value is allowed"},
		{"health ok false", "GET", "/health", 200, `{"ok":false,"version":"1"}`, "want true"},
		{"run missing reqid", "POST", "/run", 200, `{"ok":true,"results":[]}`, `missing required "reqid"`},
		{"run exit not integer", "POST", "/run", 200, `{"ok":true,"reqid":"ab","results":[{"host":"h","exit":1.5}]}`, "want integer"},
		{"run bad rtt", "POST", "/run", 200, `{"ok":true,"reqid":"ab","results":[{"host":"h","exit":0,"rtt":"5s"}]}`, "does not match"},
		{"ping status enum", "POST", "/ping", 200, `{"ok":true,"results":[{"host":"h","status":"meh"}]}`, "is not one of"},
		{"error shape", "POST", "/run", 409, `{"ok":false,"error":"locked","code":4,"conflicts":["a:b"]}`, ""},
		{"error code zero", "POST", "/run", 403, `{"ok":false,"error":"x","code":0}`, "below"},
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
