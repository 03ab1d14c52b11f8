package fleet

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Registry fields kept for targeting by tag. Perl readers ignore them.
const (
	FieldTags        = registry.FieldTags        // the agent's [tags] as it last reported them
	FieldTagsUpdated = registry.FieldTagsUpdated // ISO time of that report
)

// Freshness says how current stored tags are, for errors and help texts.
const Freshness = "tags as of each agent's last successful ping, discovery or pairing"

// TagSelector is one --tag key=pattern: the agent's tag key must exist and
// its value match pattern, a shell-style glob (*, ?, [...]).
type TagSelector struct {
	Key, Pattern string
}

func (s TagSelector) String() string { return s.Key + "=" + s.Pattern }

// ParseTagSelector reads "key=pattern".
func ParseTagSelector(s string) (TagSelector, error) {
	key, pattern, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return TagSelector{}, fmt.Errorf("tag %q: expected key=value (the value may be a glob such as 'db*')", s)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return TagSelector{}, fmt.Errorf("tag %q: bad pattern: %v", s, err)
	}
	return TagSelector{Key: key, Pattern: pattern}, nil
}

// Matches reports whether tags satisfy the selector.
func (s TagSelector) Matches(tags map[string]string) bool {
	v, ok := tags[s.Key]
	if !ok {
		return false
	}
	m, _ := path.Match(s.Pattern, v)
	return m
}

// RecordTags reads a registry record's stored tags (nil if it has none).
func RecordTags(rec registry.Record) map[string]string {
	raw, ok := rec[FieldTags].(map[string]any)
	if !ok {
		return nil
	}
	tags := make(map[string]string, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			tags[k] = x
		default:
			tags[k] = registry.Record{"v": x}.Get("v")
		}
	}
	return tags
}

// ErrNoTagMatch is wrapped by Select when no agent matches.
var ErrNoTagMatch = errors.New("no registered agent matches")

// Select returns the positions of the agents (given by their tags) that
// match every selector (AND). With no match the error names the selectors
// that matched no agent on their own, or says that each matched some agents
// but never all together.
func Select(agentTags []map[string]string, sels []TagSelector) ([]int, error) {
	var out []int
	alone := make([]int, len(sels))
	for i, tags := range agentTags {
		all := true
		for j, s := range sels {
			if s.Matches(tags) {
				alone[j]++
			} else {
				all = false
			}
		}
		if all {
			out = append(out, i)
		}
	}
	if len(out) > 0 || len(sels) == 0 {
		return out, nil
	}
	var none []string
	for j, s := range sels {
		if alone[j] == 0 {
			none = append(none, s.String())
		}
	}
	if len(none) > 0 {
		return nil, fmt.Errorf("%w tag %s (%s)", ErrNoTagMatch, strings.Join(none, ", tag "), Freshness)
	}
	all := make([]string, len(sels))
	for j, s := range sels {
		all[j] = s.String()
	}
	return nil, fmt.Errorf("%w all of tag %s together (each matches some agents)", ErrNoTagMatch, strings.Join(all, ", tag "))
}

// SelectRecords is Select over registry records.
func SelectRecords(recs []registry.Record, sels []TagSelector) ([]registry.Record, error) {
	tags := make([]map[string]string, len(recs))
	for i, r := range recs {
		tags[i] = RecordTags(r)
	}
	idx, err := Select(tags, sels)
	if err != nil {
		return nil, err
	}
	out := make([]registry.Record, len(idx))
	for i, j := range idx {
		out[i] = recs[j]
	}
	return out, nil
}

// SelectorsFromMap turns the API's {"key":"glob",…} into selectors, sorted
// by key.
func SelectorsFromMap(m map[string]string) ([]TagSelector, error) {
	var out []TagSelector
	for _, k := range SortedKeys(m) {
		sel, err := ParseTagSelector(k + "=" + m[k])
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

// Union is explicit hosts followed by the tag-selected addresses not
// already named, each once, order kept.
func Union(hosts, selected []string) []string {
	seen := make(map[string]bool, len(hosts)+len(selected))
	var out []string
	for _, h := range append(append([]string{}, hosts...), selected...) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// SortedKeys is a map's keys in byte order (for stable output).
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CapTags reads the "tags" object of a capabilities result; ok is false
// when the result has none (an error result, or an agent that sent none).
func CapTags(r dispatch.CapResult) (map[string]string, bool) {
	raw, present := r.Raw("tags")
	if !present || !r.OK() {
		return nil, false
	}
	obj, err := wire.ParseObject(raw)
	if err != nil {
		return nil, false
	}
	tags := make(map[string]string, len(obj.Keys()))
	for _, k := range obj.Keys() {
		tags[k] = obj.Str(k)
	}
	return tags, true
}

// StoreTags keeps the tags a successful capabilities result reported in
// hostname's registry record (other fields untouched). A result without
// tags changes nothing.
func StoreTags(reg *registry.Registry, hostname string, r dispatch.CapResult, now time.Time) error {
	tags, ok := CapTags(r)
	if !ok {
		return nil
	}
	return StoreTagMap(reg, hostname, tags, now)
}

// StoreTagMap merges tags (and the time) into hostname's registry record,
// other fields untouched.
func StoreTagMap(reg *registry.Registry, hostname string, tags map[string]string, now time.Time) error {
	_, err := reg.Merge(hostname, TagFields(tags, now))
	return err
}

// TagFields are the registry fields that record tags learnt at now.
func TagFields(tags map[string]string, now time.Time) map[string]any {
	stored := make(map[string]any, len(tags))
	for k, v := range tags {
		stored[k] = v
	}
	return map[string]any{FieldTags: stored, FieldTagsUpdated: pki.ISOTime(now)}
}
