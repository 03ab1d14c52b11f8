package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/ctrlserial"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

func selfCheckCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "self-check",
		// dispatcher-agent, before its rename, called this check ping-self.
		Aliases: []string{"ping-self"},
		Usage:   "validate agent.conf, the allowlist and the pairing certificates",
		Description: `Loads agent.conf and the allowlist as serve would, reports whether the
agent holds certificates, and lists every allowlisted script with whether it
is executable. It also reports the certificate serve presents and its expiry,
script_dirs, the revoked serials and the stored ctrl-exec serial.

Exit status: 0 when agent.conf and the allowlist load (even if the agent is
not paired or a script is not executable); 1 when either fails.`,
		Action: func(c *cli.Context) error {
			return selfCheck(e, c.String("config"), c.String("allowlist"))
		},
	}
}

func selfCheck(e *env, configPath, allowlistPath string) error {
	out := e.stdout
	fmt.Fprintln(out, "Checking config...")
	cfg, warns, err := config.LoadAgent(configPath, e.paths)
	if err != nil {
		fmt.Fprintf(out, "Config error: %v\n", err)
		return cliapp.Exit(1, "")
	}
	config.LogWarnings(e.log, warns)
	fmt.Fprintf(out, "  Config OK (port %d)\n", cfg.Port)

	list, skipped, err := config.LoadAllowlist(allowlistPath, cfg.ScriptDirs)
	printWarnings(e.stderr, skipped)
	if err != nil {
		fmt.Fprintf(out, "Allowlist error: %v\n", err)
		return cliapp.Exit(1, "")
	}
	fmt.Fprintf(out, "  Allowlist OK (%d scripts)\n", len(list))
	// D-10: the skipped entries again in the report, where they are read.
	for _, w := range skipped {
		fmt.Fprintf(out, "  WARNING: %s\n", w.Msg)
	}

	if paired, expiry, reason := pairing.Status(e.paths); paired {
		fmt.Fprintf(out, "  Certs OK (expires %s)\n", expiry)
	} else {
		fmt.Fprintf(out, "  Certs: NOT paired - %s\n", reason)
	}

	names := make([]string, 0, len(list))
	for name := range list {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		state := "ok"
		if !executable(list[name]) {
			state = "NOT EXECUTABLE"
		}
		fmt.Fprintf(out, "  Script '%s': %s [%s]\n", name, list[name], state)
	}

	// Informational lines Go adds (D-10); they never change the exit status.
	fmt.Fprintln(out, servingCertLine(cfg.Cert, e.now()))
	fmt.Fprintln(out, scriptDirsLine(cfg.ScriptDirs))
	fmt.Fprintln(out, revokedLine(cfg.RevokedSerials, e.stderr))
	fmt.Fprintln(out, storedSerialLine(cfg.SerialPath, e.stderr))

	fmt.Fprintln(out, "Self-check complete.")
	return nil
}

func servingCertLine(path string, now time.Time) string {
	cert, err := pki.LoadCert(path)
	if err != nil {
		return fmt.Sprintf("  Serving cert: %s - cannot be read: %v", path, err)
	}
	expiry := pki.FormatOpenSSLDate(cert.NotAfter)
	if left := cert.NotAfter.Sub(now); left > 0 {
		return fmt.Sprintf("  Serving cert: %s (expires %s, %d days left)", path, expiry, int(left.Hours()/24))
	}
	return fmt.Sprintf("  Serving cert: %s (EXPIRED %s - renew or re-pair)", path, expiry)
}

func scriptDirsLine(dirs []string) string {
	switch {
	case dirs == nil:
		return "  script_dirs: not set (any absolute path may be allowlisted)"
	case len(dirs) == 0:
		return "  script_dirs: empty (every script is refused)"
	}
	return "  script_dirs: " + strings.Join(dirs, ":")
}

func revokedLine(path string, stderr io.Writer) string {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return fmt.Sprintf("  Revoked serials: none (%s absent)", path)
	}
	n := loadRevoked(path, zerolog.Nop(), stderr).Len()
	return fmt.Sprintf("  Revoked serials: %d in %s", n, path)
}

func storedSerialLine(path string, stderr io.Writer) string {
	if serial := ctrlserial.Read(path, stderr); serial != "" {
		return "  Stored ctrl-exec serial: " + serial
	}
	return fmt.Sprintf("  Stored ctrl-exec serial: none in %s - run and ping are refused until one is stored", path)
}

func selfPingCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "self-ping",
		Usage: "connect to the local agent over mTLS with the agent's own certificate and ping it",
		Description: `Connects to 127.0.0.1 on the port from agent.conf, presenting the agent's
own certificate and verifying the server against the agent's CA, and sends
POST /ping. A "403 serial mismatch" answer is the normal outcome: the agent's
own certificate is never the stored ctrl-exec serial, so the reply proves the
agent is up and enforcing its policy.

Exit status: 0 when the agent answered ok or with the serial mismatch; 1 when
the config does not load, the agent is not paired, nothing listens, the
handshake fails, or the answer is anything else.`,
		Action: func(c *cli.Context) error {
			return selfPing(e, c.String("config"))
		},
	}
}

var (
	pingOK       = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`"status"\s*:\s*"ok"`) })
	pingMismatch = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)serial mismatch|serial.reject`) })
)

const selfPingTimeout = 5 * time.Second

func selfPing(e *env, configPath string) error {
	out := e.stdout
	fmt.Fprintln(out, "Checking config...")
	cfg, warns, err := config.LoadAgent(configPath, e.paths)
	if err != nil {
		fmt.Fprintf(out, "Config error: %v\n", err)
		return cliapp.Exit(1, "")
	}
	config.LogWarnings(e.log, warns)
	port := cfg.Port
	fmt.Fprintf(out, "  Config OK (port %d)\n", port)

	paired, expiry, reason := pairing.Status(e.paths)
	if !paired {
		fmt.Fprintf(out, "  Paired: no - %s\n", reason)
		fmt.Fprintln(out, "  Cannot self-ping: agent not paired.")
		return cliapp.Exit(1, "")
	}
	fmt.Fprintf(out, "  Paired: yes (cert expires %s)\n", expiry)

	fmt.Fprintf(out, "Connecting to 127.0.0.1:%d...\n", port)
	conn, err := dialSelf(cfg, port)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			fmt.Fprintf(out, "  Port %d: not listening - is the agent running?\n", port)
		} else {
			fmt.Fprintf(out, "  mTLS handshake failed: %v\n", err)
		}
		return cliapp.Exit(1, "")
	}
	defer conn.Close()
	fmt.Fprintf(out, "  Port %d: listening\n", port)
	fmt.Fprintln(out, "  mTLS handshake: OK")

	body := wire.JSON(map[string]string{"reqid": fmt.Sprintf("%08x", rand.Uint32())})
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	werr := wire.WriteRequest10(conn, "POST", "/ping", body)
	response, rerr := io.ReadAll(conn)

	switch {
	case pingOK().Match(response):
		fmt.Fprintln(out, "  Ping response: OK")
	case pingMismatch().Match(response):
		fmt.Fprintln(out, "  Ping response: 403 serial mismatch (expected - agent is running and enforcing policy)")
	default:
		raw := string(response)
		if raw == "" {
			raw = fmt.Sprintf("(nothing received: %v)", errors.Join(werr, rerr))
		}
		fmt.Fprintf(out, "  Ping response: unexpected - %s\n", raw)
		return cliapp.Exit(1, "")
	}
	fmt.Fprintln(out, "Self-ping complete.")
	return nil
}

// dialSelf connects to the local agent with its own identity, verifying the
// server against the agent's CA without a host name check (§4.6).
func dialSelf(cfg *config.Agent, port int) (*tls.Conn, error) {
	tlsConf, err := tlsx.LoadClientConfig(cfg.Cert, cfg.Key, cfg.CA)
	if err != nil {
		return nil, err
	}
	raw, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), selfPingTimeout)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tlsConf)
	_ = raw.SetDeadline(time.Now().Add(selfPingTimeout))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}
