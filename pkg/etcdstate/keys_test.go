package etcdstate

import (
	"errors"
	"strings"
	"testing"
)

// The ctrl-exec key goes over an etcd connection only when it is TLS with
// a client certificate (and no endpoint drops TLS by saying http://), or
// when every endpoint is on this host.
func TestKeysAllowed(t *testing.T) {
	tests := []struct {
		endpoints []string
		clientTLS bool
		ok        bool
	}{
		{[]string{"http://127.0.0.1:2379"}, false, true},
		{[]string{"127.0.0.1:2379", "http://[::1]:2379", "localhost:2379"}, false, true},
		{[]string{"http://127.0.0.1:2379", "http://10.0.0.2:2379"}, false, false},
		{[]string{"10.0.0.2:2379"}, false, false},
		{[]string{"https://10.0.0.2:2379"}, false, false}, // server TLS alone: any client could read the key
		{[]string{"https://10.0.0.2:2379", "10.0.0.3:2379"}, true, true},
		{[]string{"https://10.0.0.2:2379", "http://10.0.0.3:2379"}, true, false}, // http:// drops TLS
		{[]string{"http://0.0.0.0:2379"}, false, false},
		{[]string{"http://127.0.0.1.example.org:2379"}, false, false},
		{nil, false, false},
	}
	for _, tt := range tests {
		err := keysAllowed(tt.endpoints, tt.clientTLS)
		if (err == nil) != tt.ok {
			t.Errorf("%v tls=%v: %v, want allowed %v", tt.endpoints, tt.clientTLS, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrKeysNotAllowed) {
			t.Errorf("%v: %v is not ErrKeysNotAllowed", tt.endpoints, err)
		}
	}
	err := keysAllowed([]string{"http://10.0.0.2:2379"}, false)
	for _, want := range []string{"etcd_ca", "etcd_cert", "etcd_key", "http://10.0.0.2:2379"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not name %s: %v", want, err)
		}
	}
}
