package dispatch

import "github.com/ctrl-exec-go/ctrl-exec/pkg/wire"

// Object and ParseObject live in pkg/wire with the rest of the wire format.
// These names stay until the packages being changed in parallel (pkg/state,
// pkg/etcdstate, roles/api) import wire.Object directly; new code uses wire.
type Object = wire.Object

// ParseObject is wire.ParseObject.
func ParseObject(data []byte) (Object, error) { return wire.ParseObject(data) }
