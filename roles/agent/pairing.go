package agent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// pairingChildFlag marks the re-executed background pairing helper (D-9).
// Its value is the descriptor of the pipe on which the helper reports the
// request id (or why it failed) to the command the operator ran.
const pairingChildFlag = "pairing-child"

// caFingerprintFlag pins the control host's CA at pairing (request-pairing).
const caFingerprintFlag = "ca-fingerprint"

// maxBackgroundTimeout keeps the background wait inside the 660 s
// connection window (§4.3 step 2).
const maxBackgroundTimeout = 600

// Exit statuses of the background helper (§4.3 step 7). Nobody waits for
// it; they are for completeness, the log lines are what callers observe.
const (
	exitPairTimeout = 2
	exitPairDenied  = 3
)

func requestPairingCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "request-pairing",
		Usage: "ask the control host for this agent's certificate",
		Description: `Generates a new key (--key-type rsa-4096, the default, or ecdsa-p256) and CSR
for this host's name, sends the CSR to the
control host's pairing-mode (--dispatcher <host>, --port, default 7444) and
waits for the operator to approve it there, after comparing the pairing code
printed here. On approval stores agent.crt, agent.key, ca.crt and
ctrl-exec-serial in /etc/ctrl-exec-agent (which must exist and be writable)
and tells the control host the serve port from agent.conf.

With --ca-fingerprint sha256:<hex> (printed by 'ctrl-exec setup-ca' and
'ctrl-exec pairing-mode') the control host's CA is pinned: a pairing server
that sends a certificate chain not ending in that CA is refused before the
request is sent, and an approval that delivers another CA is refused. A
pairing server that sends its certificate alone (a Perl ctrl-exec) is
checked once the approval delivers the CA. Without it, an approval is
accepted only from a server whose certificate chains to the CA it delivers.
Either way nothing is stored when a check fails.

With --background prints only the request id and returns at once; a detached
helper keeps the connection and waits up to --timeout seconds (at most 600,
0 = as long as the control host allows), logging pair-complete, pair-denied
or pair-timeout. Check the outcome with 'ctrl-exec-agent pairing-status'.

Exit status: 0 when paired (or, with --background, when the request is
queued); 255 on any failure.`,
		Action: func(c *cli.Context) error {
			if c.IsSet(pairingChildFlag) {
				return pairingChild(e, c)
			}
			return requestPairing(e, c)
		},
	}
}

func pairingStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "pairing-status",
		Usage: "report whether this agent holds its certificates",
		Description: `Checks /etc/ctrl-exec-agent for agent.crt, agent.key and ca.crt and prints the
certificate's expiry. An expired certificate still counts as paired.

Exit status: 0 if paired; 1 if not.`,
		Action: func(c *cli.Context) error {
			paired, expiry, reason := pairing.Status(e.paths)
			if !paired {
				fmt.Fprintf(e.stdout, "Not paired. Reason: %s\n", reason)
				return cliapp.Exit(1, "")
			}
			fmt.Fprintf(e.stdout, "Paired. Certificate expires: %s\n", expiry)
			return nil
		},
	}
}

// pairingRequest is what both the foreground command and the helper need.
type pairingRequest struct {
	dispatcher string
	port       int               // the control host's pairing port
	servePort  int               // this agent's serve port, 0 = unknown
	tags       map[string]string // agent.conf [tags] to report, nil = none
	timeout    int               // background only; <= 0 = no timer
	configPath string
	keyType    pki.KeyType
	caPin      string // --ca-fingerprint, canonical; "" = not pinned
}

func pairingOptions(e *env, c *cli.Context) (pairingRequest, error) {
	r := pairingRequest{
		dispatcher: c.String("dispatcher"),
		port:       c.Int("port"),
		timeout:    c.Int("timeout"),
		configPath: c.String("config"),
	}
	if r.dispatcher == "" {
		return r, cliapp.Fatalf("--dispatcher <host> required for request-pairing")
	}
	kt, err := pki.ParseKeyType(c.String("key-type"))
	if err != nil {
		return r, cliapp.Fatalf("--key-type: %v", err)
	}
	r.keyType = kt
	if v := c.String(caFingerprintFlag); v != "" {
		pin, err := pki.ParseFingerprint(v)
		if err != nil {
			return r, cliapp.Fatalf("--%s: %v", caFingerprintFlag, err)
		}
		r.caPin = pin
	}
	// The serve port is a Go addition to the request; without a readable
	// agent.conf the control host assumes 7443.
	// So are the [tags], which make the agent targetable by tag once
	// approved; not told when an auth_hook gates /capabilities (the
	// pairing server is not yet authenticated).
	if conf, _, err := config.LoadAgent(r.configPath, e.paths); err == nil {
		r.servePort = conf.Port
		if conf.AuthHook == "" && len(conf.Tags) > 0 {
			r.tags = conf.Tags
		}
	}
	return r, nil
}

func requestPairing(e *env, c *cli.Context) error {
	r, err := pairingOptions(e, c)
	if err != nil {
		return err
	}
	background := c.Bool("background")
	if background && r.timeout > maxBackgroundTimeout {
		return cliapp.Fatalf("Error: --timeout cannot exceed 600 seconds in background mode.\n" +
			"The agent connection window is 660 seconds; values above 600 risk\n" +
			"the connection expiring before approval is received.")
	}
	if err := preflight(e.paths); err != nil {
		return err
	}
	if background {
		return startPairingChild(e, r)
	}

	host, err := pairingHostname()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	fmt.Fprintf(e.stdout, "Generating key and CSR for '%s'...\n", host)
	key, csr, err := keyAndCSR(host, r.keyType)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	fmt.Fprintf(e.stdout, "Pairing code: %s\n", pki.PairingCode(csr))
	fmt.Fprintln(e.stdout, "  Verify this code matches the ctrl-exec display before approving.")
	fmt.Fprintln(e.stdout)
	fmt.Fprintf(e.stdout, "Connecting to ctrl-exec at %s for pairing...\n", r.dispatcher)

	p, err := (&pairing.Client{CAFingerprint: r.caPin}).Submit(c.Context, r.dispatcher, r.port,
		pairing.Submission{Hostname: host, CSR: string(csr), Port: r.servePort, Tags: r.tags})
	if err != nil {
		return cliapp.Fatalf("%s", submitFailure(r.dispatcher, err))
	}
	if r.caPin != "" && !p.PinChecked {
		fmt.Fprintf(e.stderr, "Note: the pairing server sent no CA certificate (a Perl ctrl-exec does not);\n"+
			"  %s will be checked against the CA delivered on approval.\n", r.caPin)
	}
	res, err := p.Await(c.Context)
	if err != nil {
		return cliapp.Fatalf("Pairing failed: %v", err)
	}
	if err := storeResult(e, r, res, key); err != nil {
		return cliapp.Fatalf("Pairing failed: %v", err)
	}
	fmt.Fprintln(e.stdout, "Pairing complete. Certificates stored.")
	return nil
}

// preflight is §4.3 step 3: before any key is generated or packet sent, the
// fixed certificate directory must exist and be writable by this user.
func preflight(p paths.Paths) error {
	dir := p.AgentDir()
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return cliapp.Fatalf("Cert directory '%s' does not exist - has the agent been installed?", dir)
	}
	if unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK, unix.AT_EACCESS) != nil {
		return cliapp.Fatalf("Cannot write to '%s' - re-run as root or with sudo", dir)
	}
	return nil
}

func keyAndCSR(host string, kt pki.KeyType) (crypto.Signer, []byte, error) {
	key, err := pki.NewKey(kt, pki.KeyBitsFromEnv())
	if err != nil {
		return nil, nil, err
	}
	csr, err := pki.CreateCSR(key, host)
	if err != nil {
		return nil, nil, err
	}
	return key, csr, nil
}

// submitFailure words a failed submission as §4.3 step 5 does.
func submitFailure(dispatcher string, err error) string {
	var re *pairing.ResolveError
	var ce *pairing.ConnectError
	var pe *tlsx.PinError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("Pairing failed: %v - nothing was sent.\n"+
			"Check that --dispatcher names the control host and that --ca-fingerprint is\n"+
			"what 'ctrl-exec pairing-mode' prints there.", pe)
	case errors.As(err, &re):
		return fmt.Sprintf("Pairing failed: could not resolve ctrl-exec hostname '%s'.\n"+
			"Check the hostname is correct or use an IP address instead.", dispatcher)
	case errors.As(err, &ce):
		return fmt.Sprintf("Pairing failed: could not connect to ctrl-exec at %s.\n"+
			"Check the ctrl-exec address is correct and pairing mode is active:\n"+
			"  sudo ctrl-exec pairing-mode", dispatcher)
	}
	return fmt.Sprintf("Pairing failed: %v", err)
}

// storeResult writes an approval to disk and logs pair-complete.
func storeResult(e *env, r pairingRequest, res *pairing.Result, key crypto.Signer) error {
	warns, err := pairing.StoreCerts(e.paths, res, key)
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintln(e.stderr, w)
	}
	e.log.Info().Str("DISPATCHER", r.dispatcher).Str("STATUS", "approved").Msg("pair-complete")
	return nil
}

// startPairingChild runs the background mode's parent side (D-9): a TLS
// session cannot be handed to another process, so a detached copy of this
// program does the whole exchange; it reports the request id on a pipe,
// which is printed here before returning.
func startPairingChild(e *env, r pairingRequest) error {
	exe, err := os.Executable()
	if err != nil {
		return cliapp.Fatalf("Pairing failed: cannot find this program to start the background helper: %v", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return cliapp.Fatalf("Pairing failed: %v", err)
	}
	defer pr.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		pw.Close()
		return cliapp.Fatalf("Pairing failed: %v", err)
	}
	defer devnull.Close()
	cmd := &exec.Cmd{
		Path: exe,
		Args: []string{"ctrl-exec-agent",
			"--config", r.configPath,
			"--dispatcher", r.dispatcher,
			"--port", strconv.Itoa(r.port),
			"--timeout", strconv.Itoa(r.timeout),
			"--key-type", string(r.keyType),
			"--" + caFingerprintFlag + "=" + r.caPin,
			"--" + pairingChildFlag + "=3", // ExtraFiles[0]
			"request-pairing"},
		// Not the caller's stdout: `reqid=$(ctrl-exec-agent … --background)`
		// must not wait for the helper.
		Stdin: devnull, Stdout: devnull, Stderr: devnull,
		ExtraFiles:  []*os.File{pw},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return cliapp.Fatalf("Pairing failed: cannot start the background helper: %v", err)
	}
	pw.Close()
	cmd.Process.Release()

	report, _ := io.ReadAll(pr)
	kind, msg, _ := strings.Cut(string(report), "\n")
	switch kind {
	case "reqid":
		fmt.Fprintln(e.stdout, strings.TrimSpace(msg))
		return nil
	case "error":
		return cliapp.Fatalf("%s", strings.TrimSuffix(msg, "\n"))
	}
	return cliapp.Fatalf("Pairing failed: the background helper ended without submitting the request")
}

// pairingHostname is the name this agent pairs under, refused here when the
// control host would refuse it (say too long for its registry file name),
// before a key is made or a request sent.
func pairingHostname() (string, error) {
	host, err := paths.Hostname()
	if err != nil {
		return "", fmt.Errorf("Cannot determine this host's name: %w", err)
	}
	if err := registry.CheckHostname(host); err != nil {
		return "", fmt.Errorf("Cannot pair: %w", err)
	}
	return host, nil
}

// pairingChild is the detached helper: submit, report the id, wait, store.
func pairingChild(e *env, c *cli.Context) error {
	fd, err := strconv.Atoi(c.String(pairingChildFlag))
	if err != nil || fd < 3 {
		return cliapp.Fatalf("--%s is internal to request-pairing --background", pairingChildFlag)
	}
	pipe := os.NewFile(uintptr(fd), "pairing-report")
	reported := false
	report := func(kind, msg string) {
		if !reported {
			reported = true
			fmt.Fprintf(pipe, "%s\n%s\n", kind, msg)
			pipe.Close()
		}
	}
	defer report("error", "Pairing failed: the background helper stopped before submitting the request")

	r, err := pairingOptions(e, c)
	if err != nil {
		report("error", err.Error())
		return err
	}
	host, err := pairingHostname()
	if err != nil {
		report("error", err.Error())
		return cliapp.Exit(255, "")
	}
	key, csr, err := keyAndCSR(host, r.keyType)
	if err != nil {
		report("error", err.Error())
		return cliapp.Exit(255, "")
	}
	p, err := (&pairing.Client{CAFingerprint: r.caPin}).Submit(context.Background(), r.dispatcher, r.port,
		pairing.Submission{Hostname: host, CSR: string(csr), Port: r.servePort, Tags: r.tags})
	if err != nil {
		report("error", submitFailure(r.dispatcher, err))
		return cliapp.Exit(255, "")
	}
	report("reqid", p.ReqID)

	ctx := context.Background()
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(r.timeout)*time.Second)
		defer cancel()
	}
	res, err := p.Await(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		e.log.Warn().Str("REQID", p.ReqID).Msg("pair-timeout")
		return cliapp.Exit(exitPairTimeout, "")
	}
	if err == nil {
		err = storeResult(e, r, res, key)
	}
	if err != nil {
		e.log.Warn().Str("REQID", p.ReqID).Str("REASON", err.Error()).Msg("pair-denied")
		return cliapp.Exit(exitPairDenied, "")
	}
	return nil
}
