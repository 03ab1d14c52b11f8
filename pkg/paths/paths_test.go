package paths

import "testing"

func TestAbsPrefixesRoot(t *testing.T) {
	tests := []struct {
		root, want string
	}{
		{"", "/etc/ctrl-exec/ca.key"},
		{"/tmp/r", "/tmp/r/etc/ctrl-exec/ca.key"},
		{"/tmp/r/", "/tmp/r/etc/ctrl-exec/ca.key"},
	}
	for _, tt := range tests {
		if got := (Paths{Root: tt.root}).CAKey(); got != tt.want {
			t.Errorf("root %q: CAKey() = %q, want %q", tt.root, got, tt.want)
		}
	}
}

func TestFromEnvAndHostname(t *testing.T) {
	t.Setenv("CTRL_EXEC_ROOT", "/x")
	t.Setenv("CTRL_EXEC_HOSTNAME", "web-01")
	if got := FromEnv().AgentConf(); got != "/x/etc/ctrl-exec-agent/agent.conf" {
		t.Errorf("AgentConf() = %q", got)
	}
	if h, err := Hostname(); err != nil || h != "web-01" {
		t.Errorf("Hostname() = %q, %v", h, err)
	}
}
