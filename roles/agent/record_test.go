package agent

import (
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Issue 9 A: self-ping's request reaches an agent that reads one TLS
// record per request (the Perl agent) whole.
func TestSelfPingSendsOneRecord(t *testing.T) {
	c := testCerts(t)
	id, err := tlsx.LoadIdentity(c.agentCert, c.agentKey, c.ca)
	if err != nil {
		t.Fatal(err)
	}
	var resp strings.Builder
	wire.WriteResponse(&resp, 200, []byte(`{"status":"ok","reqid":"x"}`), wire.AgentPhrase)
	addr := pkitest.ListenOneRecord(t, tlsx.AgentServerConfig(id), func([]byte) []byte { return []byte(resp.String()) })

	r := newCheckRoot(t)
	r.pair(c)
	r.conf(addr.Port, "")
	err = selfPing(r.e, r.e.paths.AgentConf())
	if !strings.Contains(r.out.String(), "  Ping response: OK\n") || exitCode(err) != 0 {
		t.Errorf("exit %d\n%s", exitCode(err), r.out.String())
	}
}
