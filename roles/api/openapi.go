package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// embeddedSpec is this server's own OpenAPI 3.1 description, served when no
// document is installed at paths.OpenAPIFile (D-22).
//
//go:embed openapi.json
var embeddedSpec []byte

// staticSpecBytes returns the installed document if there is one, else the
// embedded one.
func (s *Server) staticSpecBytes() ([]byte, error) {
	data, err := os.ReadFile(s.paths.OpenAPIFile())
	if errors.Is(err, fs.ErrNotExist) {
		return embeddedSpec, nil
	}
	return data, err
}

// staticSpec serves the document byte for byte.
func (s *Server) staticSpec() response {
	data, err := s.staticSpecBytes()
	if err != nil {
		return errorResponse(500, "server error", "cannot read spec: "+err.Error())
	}
	return response{status: 200, body: data}
}

// liveSpec rebuilds the document with the registered hosts and the scripts
// the reachable agents offer as enums (§14.6). Nothing is cached or written.
func (s *Server) liveSpec(ctx context.Context) response {
	data, err := s.staticSpecBytes()
	if err != nil {
		return errorResponse(500, "server error", "cannot read spec: "+err.Error())
	}
	spec, err := decodeSpec(data)
	if err != nil {
		return errorResponse(500, "server error", "cannot parse base spec: "+err.Error())
	}

	agents, err := s.fleet.Registered()
	if err != nil {
		return errorResponse(500, "server error", err.Error())
	}
	hostnames := make([]string, 0, len(agents))
	targets := make([]string, 0, len(agents))
	for _, a := range agents {
		hostnames = append(hostnames, a.Hostname)
		targets = append(targets, a.Address)
	}
	sort.Strings(hostnames)

	var scripts []string
	if len(targets) > 0 {
		release, ok := s.acquireSlot(ctx)
		if !ok {
			return busy(cap(s.slots))
		}
		results, err := capabilities(ctx, s.fleet, targets)
		release()
		if err != nil {
			return engineFailure(err)
		}
		seen := map[string]bool{}
		for _, r := range results {
			if !r.OK() {
				continue
			}
			for _, raw := range r.Scripts() {
				var entry struct {
					Name any `json:"name"`
				}
				if json.Unmarshal(raw, &entry) != nil {
					continue
				}
				if name, ok := entry.Name.(string); ok && name != "" && !seen[name] {
					seen[name] = true
					scripts = append(scripts, name)
				}
			}
		}
		sort.Strings(scripts)
	}

	addLiveEnums(spec, hostnames, scripts)
	stampVersion(spec, s.version, s.now().Unix())
	return jsonResponse(200, spec)
}

// decodeSpec parses a document keeping numbers exactly as written.
func decodeSpec(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var spec map[string]any
	if err := dec.Decode(&spec); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, errors.New("the document is not a JSON object")
	}
	return spec, nil
}

// addLiveEnums applies §14.6 steps 3 and 4: in the request-body schema of
// each of /ping, /run and /discovery (a components $ref resolved by its last
// segment), hosts.items.enum becomes hostnames, or null when there are none;
// and, when any scripts were found, the /run body's script.enum becomes them.
func addLiveEnums(spec map[string]any, hostnames, scripts []string) {
	var hostEnum any // JSON null without hosts, as upstream
	if len(hostnames) > 0 {
		hostEnum = hostnames
	}
	for _, path := range []string{"/ping", "/run", "/discovery"} {
		for _, method := range []string{"post", "get"} {
			schema := bodySchema(spec, path, method)
			if schema == nil {
				continue
			}
			props, _ := schema["properties"].(map[string]any)
			hosts, ok := props["hosts"].(map[string]any)
			if !ok {
				continue
			}
			items, ok := hosts["items"].(map[string]any)
			if !ok {
				items = map[string]any{}
				hosts["items"] = items
			}
			items["enum"] = hostEnum
		}
	}
	if len(scripts) == 0 {
		return
	}
	if schema := bodySchema(spec, "/run", "post"); schema != nil {
		props, ok := schema["properties"].(map[string]any)
		if !ok {
			props = map[string]any{}
			schema["properties"] = props
		}
		script, ok := props["script"].(map[string]any)
		if !ok {
			script = map[string]any{}
			props["script"] = script
		}
		script["enum"] = scripts
	}
}

// bodySchema finds paths[path][method].requestBody.content
// ["application/json"].schema, following a $ref to components.schemas by
// its last segment; nil when any step is missing.
func bodySchema(spec map[string]any, path, method string) map[string]any {
	schema, ok := dig(spec, "paths", path, method, "requestBody", "content", "application/json", "schema").(map[string]any)
	if !ok {
		return nil
	}
	if ref, ok := schema["$ref"].(string); ok {
		name := ref[strings.LastIndexByte(ref, '/')+1:]
		schema, _ = dig(spec, "components", "schemas", name).(map[string]any)
	}
	return schema
}

// dig walks nested objects; nil when a key is missing or not an object.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

var buildStamp = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\+\d+$`) })

// stampVersion replaces any "+<digits>" suffix of info.version with
// "+<unix time>" so viewers see a new document (§14.6 step 5); a document
// without a version gets the server's.
func stampVersion(spec map[string]any, fallback string, unix int64) {
	info, ok := spec["info"].(map[string]any)
	if !ok {
		info = map[string]any{}
		spec["info"] = info
	}
	base, ok := info["version"].(string)
	if !ok {
		base = fallback
	}
	info["version"] = buildStamp().ReplaceAllString(base, "") + "+" + strconv.FormatInt(unix, 10)
}
