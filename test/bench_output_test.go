package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// floodBytes is what BenchmarkAgentOutputFlood's script prints.
const floodBytes = 100 << 20

// BenchmarkAgentOutputFlood runs a script printing floodBytes on a real
// agent through the real CLI and reports the agent's peak resident set
// (agent-hwm-MiB, VmHWM after the runs) and the reply the CLI printed
// (reply-KiB). The agent caps what it keeps of each stream (max_output), so
// its peak stays a small multiple of the cap whatever the script prints.
func BenchmarkAgentOutputFlood(b *testing.B) {
	p := sharedFleetPKI(b, 4096)
	a := launchRealAgent(b, p, "agent-flood")
	if err := a.waitReady(60 * time.Second); err != nil {
		b.Skip(err)
	}
	dir := b.TempDir()
	ctrl := &Root{Dir: dir, LogFile: dir + "/log", Hostname: "control"}
	p.installControl(b, dir, "read_timeout = 120")

	var out, errOut bytes.Buffer
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out.Reset()
		errOut.Reset()
		cmd := ctrl.Command(context.Background(), "ctrl-exec", "run", a.target(), "flood", "--", strconv.Itoa(floodBytes))
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run() // the old agent's 100 MB reply is refused by the CLI: the agent's peak is the figure
	}
	b.StopTimer()
	hwm, err := procStatusKiB(a.proc.Cmd.Process.Pid, "VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(hwm)/1024, "agent-hwm-MiB")
	b.ReportMetric(float64(out.Len())/1024, "reply-KiB")
}

// procStatusKiB reads one "Name: N kB" line of /proc/<pid>/status.
func procStatusKiB(pid int, name string) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no " + name + " line")
}
