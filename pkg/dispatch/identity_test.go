package dispatch

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// identityFixture: two fake agents that both present agent-01's
// certificate, a registry that lists agent-01 at the first one's port and
// "web-02" at the second's, and a third agent the registry does not know.
type identityFixture struct {
	right, wrong, unknown *fakeAgent
	reg                   *registry.Registry
}

func newIdentityFixture(t *testing.T) *identityFixture {
	t.Helper()
	p := sharedPKI(t)
	ok := reply(200, `{"script":"hello","exit":0,"stdout":"","stderr":"","reqid":"r"}`)
	f := &identityFixture{
		right:   startAgent(t, p.Agent, ok),
		wrong:   startAgent(t, p.Agent, ok),
		unknown: startAgent(t, p.Agent, ok),
		reg:     registry.New(t.TempDir()),
	}
	for name, port := range map[string]string{"agent-01": f.right.Port, "web-02": f.wrong.Port} {
		if err := f.reg.Put(registry.Record{registry.FieldHostname: name, registry.FieldIP: "127.0.0.1", registry.FieldPort: port}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *identityFixture) client(t *testing.T, mode string) (*Client, *logBuffer) {
	c, logs := testClient(t)
	c.Identity = &agentid.Policy{Mode: mode, Registry: f.reg}
	return c, logs
}

func TestRunAgentIdentity(t *testing.T) {
	f := newIdentityFixture(t)
	mismatch := "agent identity mismatch: expected web-02, got agent-01"
	for _, tt := range []struct {
		mode    string
		target  string
		wantErr string // "" = the run reaches the agent
	}{
		{config.IdentityRegistry, f.right.Host, ""},
		{config.IdentityRegistry, f.wrong.Host, mismatch},
		{config.IdentityRegistry, "[::ffff:127.0.0.1]:" + f.wrong.Port, mismatch},
		{config.IdentityRegistry, f.unknown.Host, ""},
		{config.IdentityStrict, f.right.Host, ""},
		{config.IdentityStrict, f.wrong.Host, mismatch},
		{config.IdentityStrict, f.unknown.Host, "agent identity unknown: " + f.unknown.Host + " is not in the agent registry (agent_identity = strict)"},
		{config.IdentityOff, f.wrong.Host, ""},
		{config.IdentityOff, f.unknown.Host, ""},
	} {
		t.Run(tt.mode+" "+tt.target, func(t *testing.T) {
			var agent *fakeAgent
			for _, a := range []*fakeAgent{f.right, f.wrong, f.unknown} {
				if strings.HasSuffix(tt.target, ":"+a.Port) {
					agent = a
				}
			}
			before := len(agent.Requests())
			c, logs := f.client(t, tt.mode)
			res, err := c.Run(context.Background(), RunRequest{Hosts: []string{tt.target}, Script: "hello", ReqID: testReqID})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantErr, res[0].Str("error")); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			sent := len(agent.Requests()) - before
			if tt.wantErr != "" && sent != 0 {
				t.Errorf("a refused agent received %d requests", sent)
			}
			if tt.wantErr == "" && sent != 1 {
				t.Errorf("agent received %d requests, want 1", sent)
			}
			log := logs.String()
			if tt.wantErr == mismatch {
				want := "ACTION=identity-mismatch EXPECTED=web-02 GOT=agent-01 TARGET="
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if tt.target == f.unknown.Host && tt.mode != config.IdentityOff {
				result := map[string]string{config.IdentityRegistry: "allowed", config.IdentityStrict: "refused"}[tt.mode]
				want := "ACTION=identity-unknown RESULT=" + result + " TARGET=" + f.unknown.Host
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if tt.mode == config.IdentityOff && strings.Contains(log, "identity-") {
				t.Errorf("off logged identity lines:\n%s", log)
			}
		})
	}
}

// A mismatch is an *IdentityError for every kind of call, and a host name
// in the CN that reads like a timeout is not rewritten as one.
func TestAgentIdentityErrorKinds(t *testing.T) {
	f := newIdentityFixture(t)
	c, _ := f.client(t, config.IdentityRegistry)
	want := "agent identity mismatch: expected web-02, got agent-01"

	pings, err := c.Ping(context.Background(), []string{f.wrong.Host, f.right.Host})
	if err != nil {
		t.Fatal(err)
	}
	if got := pings[0].Str("error"); got != want || pings[0].OK() || pings[1].Defined("error") {
		t.Errorf("ping results %s / %s", mustJSON(t, pings[0]), mustJSON(t, pings[1]))
	}
	caps, err := c.Capabilities(context.Background(), []string{f.wrong.Host})
	if err != nil {
		t.Fatal(err)
	}
	if got := caps[0].Str("error"); got != want {
		t.Errorf("capabilities error %q", got)
	}
	_, err = c.Do(context.Background(), c.Target(f.wrong.Host), "POST", "/renew", []byte(`{}`))
	var ie *IdentityError
	if !errors.As(err, &ie) || ie.Error() != want {
		t.Errorf("Do error %v", err)
	}
	// A caller that names the agent itself (renewal) is held to it.
	t2 := c.Target(f.right.Host)
	t2.Agents = []string{"timeout-box"}
	_, err = c.Do(context.Background(), t2, "POST", "/renew", []byte(`{}`))
	if !errors.As(err, &ie) || ie.Error() != "agent identity mismatch: expected timeout-box, got agent-01" {
		t.Errorf("Do error %v", err)
	}
	if len(f.wrong.Requests()) != 0 {
		t.Errorf("the wrong agent received %d requests", len(f.wrong.Requests()))
	}
}

// The registry cannot be read: the call fails as a whole rather than going
// unchecked.
func TestAgentIdentityUnreadableRegistry(t *testing.T) {
	f := newIdentityFixture(t)
	c, _ := testClient(t)
	notDir := f.reg.Dir + "/agent-01.json" // a file where a directory should be
	c.Identity = &agentid.Policy{Mode: config.IdentityRegistry, Registry: registry.New(notDir)}
	if _, err := c.Run(context.Background(), RunRequest{Hosts: []string{f.right.Host}, Script: "hello"}); err == nil {
		t.Fatal("no error")
	}
}
