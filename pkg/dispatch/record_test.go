package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// oneRecordAgent is an agent that, like the Perl one, reads a request with
// a single read (one TLS record) and answers a JSON object.
func oneRecordAgent(t *testing.T, body string) string {
	t.Helper()
	p := sharedPKI(t)
	id, err := tlsx.LoadIdentity(p.Agent.Cert, p.Agent.Key, p.Agent.CA)
	if err != nil {
		t.Fatal(err)
	}
	var resp strings.Builder
	wire.WriteResponse(&resp, 200, []byte(body), wire.AgentPhrase)
	addr := pkitest.ListenOneRecord(t, tlsx.AgentServerConfig(id), func([]byte) []byte { return []byte(resp.String()) })
	return "127.0.0.1:" + strconv.Itoa(addr.Port)
}

// Issue 9 A: a request of up to 16 KiB reaches a Perl agent in one record.
func TestRequestsTravelInOneRecord(t *testing.T) {
	host := oneRecordAgent(t, `{"exit":0,"stdout":"","stderr":""}`)
	c, _ := testClient(t)
	for _, size := range []int{1 << 10, 4 << 10, 12 << 10} {
		t.Run(fmt.Sprintf("Run with %d bytes of arguments", size), func(t *testing.T) {
			res, err := c.Run(context.Background(), RunRequest{Hosts: []string{host}, Script: "s", Args: []string{strings.Repeat("a", size)}})
			if err != nil {
				t.Fatal(err)
			}
			if code, ok := res[0].Exit(); !ok || code != 0 {
				t.Errorf("result %s", res[0].Str("error"))
			}
		})
		t.Run(fmt.Sprintf("Do with a %d byte body", size), func(t *testing.T) {
			body := wire.JSON(map[string]string{"reqid": "r", "pad": strings.Repeat("b", size)})
			rep, err := c.Do(context.Background(), c.Target(host), "POST", "/renew", body)
			if err != nil || !rep.OK() {
				t.Errorf("Do: %v %s", err, rep.StatusLine)
			}
		})
	}
}
