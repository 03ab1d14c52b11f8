package ctrlexec

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

const defaultPairingPort = 7444

func pairingModeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "pairing-mode",
		Usage: "accept agents' pairing requests on port 7444 (or --port)",
		Description: `Listens on all interfaces with the ctrl-exec certificate (cert and key from
ctrl-exec.conf) for agents running 'ctrl-exec-agent request-pairing'. Each
request is queued in /var/lib/ctrl-exec/pairing (at most pairing_max_queue,
default 10) and its agent waits up to 10 minutes on the open connection for
an answer from 'ctrl-exec approve|deny <reqid>', from any terminal, or from
the prompt shown here when stdin is a terminal:

  a, d, s          approve, deny or skip the only pending request
  a<N>, d<N>       approve or deny the N-th request of the list
  list, quit       show the pending requests again; stop

The banner shows the CA fingerprint for 'request-pairing --ca-fingerprint'; the
listener sends the CA certificate after its own so a pinned agent can check it.
The certificate rotation check loop runs while pairing-mode runs.
Ctrl-C, SIGTERM or 'quit' stop it; agents still waiting are told so.

Exit status: 0 when stopped; 255 if the config cannot be loaded or the port
cannot be opened.`,
		Action: func(c *cli.Context) error { return runPairingMode(e, c) },
	}
}

func listRequestsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list-requests",
		Usage: "list pending pairing requests",
		Description: `Removes requests older than 10 minutes that nobody answered, then lists the
pending ones by arrival: ID, HOSTNAME, IP, the pairing CODE to compare with the
agent's display, and when it was RECEIVED. With --json prints a JSON array of
{"id","hostname","ip","code","received"} ([] when there are none). Requests
approved but not yet delivered to their agent are still listed.

Exit status: 0; 255 if the queue directory cannot be read.`,
		Action: func(c *cli.Context) error { return listRequests(e, c) },
	}
}

func approveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "approve a pairing request: sign the agent's certificate and register it",
		ArgsUsage: "<reqid>",
		Description: `Signs the request's CSR with the CA (cert_days from ctrl-exec.conf, else 825
days), records the agent in /var/lib/ctrl-exec/agents and leaves the
certificate for pairing-mode to deliver on the agent's open connection.
Works whether or not pairing-mode runs; delivery needs it running.

Exit status: 0; 255 if there is no such request or signing fails.`,
		Action: func(c *cli.Context) error { return approveRequest(e, c) },
	}
}

func denyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "deny",
		Usage:     "deny a pairing request",
		ArgsUsage: "<reqid>",
		Description: `Removes the request from the queue; a running pairing-mode tells the waiting
agent it was rejected by the operator.

Exit status: 0; 255 if there is no such request.`,
		Action: func(c *cli.Context) error { return denyRequest(e, c) },
	}
}

// approver is the approve/deny machinery over the standard paths and the
// state backend's registry and serial counter. The CA directory is fixed
// at /etc/ctrl-exec, as upstream's approve.
func (e *env) approver(c *cli.Context) (*pairing.Approver, error) {
	a := &pairing.Approver{
		CA:           pki.CAFilesIn(e.paths.ConfDir()),
		CtrlExecCert: e.paths.CtrlExecCert(),
		CertDays:     pairingCertDays(c.String("config"), e),
		Now:          e.now,
		Log:          e.log,
	}
	reg, err := e.registry(c.String("config"))
	if err != nil {
		return nil, err
	}
	a.Registry = reg
	a.Queue = e.state.Queue(e.paths.PairingDir(), e.now) // e.state nil: the files
	if e.state != nil {
		a.Serials = e.state.Serials
	}
	return a, nil
}

// pairingCertDays is D-18: cert_days from ctrl-exec.conf when the file is
// readable and sets it, else the upstream 825 days.
func pairingCertDays(path string, e *env) int {
	conf, _, err := config.ReadControlOptional(path, e.paths)
	if err != nil || conf.CertDays <= 0 {
		return pairing.DefaultCertDays
	}
	return conf.CertDays
}

func approveRequest(e *env, c *cli.Context) error {
	reqid := c.Args().First()
	if reqid == "" {
		return cliapp.Fatalf("Usage: ctrl-exec approve <reqid>")
	}
	a, err := e.approver(c)
	if err != nil {
		return err
	}
	if err := approveAndPrint(a, e.stdout, reqid); err != nil {
		return cliapp.Fatalf("%v", err)
	}
	return nil
}

func denyRequest(e *env, c *cli.Context) error {
	reqid := c.Args().First()
	if reqid == "" {
		return cliapp.Fatalf("Usage: ctrl-exec deny <reqid>")
	}
	a, err := e.approver(c)
	if err != nil {
		return err
	}
	if err := denyAndPrint(a, e.stdout, reqid); err != nil {
		return cliapp.Fatalf("%v", err)
	}
	return nil
}

func approveAndPrint(a *pairing.Approver, w io.Writer, reqid string) error {
	ap, err := a.Approve(reqid)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Approved '%s' (%s). Cert delivered on next poll.\n", ap.Hostname, ap.ReqID)
	return nil
}

func denyAndPrint(a *pairing.Approver, w io.Writer, reqid string) error {
	if _, err := a.Deny(reqid); err != nil {
		return err
	}
	fmt.Fprintf(w, "Denied request '%s'.\n", reqid)
	return nil
}

// requestJSON is one entry of list-requests --json.
type requestJSON struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Code     string `json:"code"`
	Received string `json:"received"`
}

func listRequests(e *env, c *cli.Context) error {
	if _, err := e.registry(c.String("config")); err != nil { // opens the backend
		return err
	}
	reqs, err := e.state.Queue(e.paths.PairingDir(), e.now).List()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if c.Bool("json") {
		out := []requestJSON{}
		for _, r := range reqs {
			out = append(out, requestJSON{ID: r.ID, Hostname: r.Hostname, IP: r.IP, Code: r.Code, Received: r.Received})
		}
		return writeJSONLine(e.stdout, out)
	}
	if len(reqs) == 0 {
		fmt.Fprintln(e.stdout, "No pending pairing requests.")
		return nil
	}
	fmt.Fprintf(e.stdout, "%-10s  %-30s  %-16s  %-8s  %s\n", "ID", "HOSTNAME", "IP", "CODE", "RECEIVED")
	fmt.Fprintln(e.stdout, strings.Repeat("-", 85))
	for _, r := range reqs {
		fmt.Fprintf(e.stdout, "%-10s  %-30s  %-16s  %-8s  %s\n",
			or(r.ID, "?"), or(r.Hostname, "?"), or(r.IP, "?"), or(r.Code, "??????"), or(r.Received, "?"))
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// syncWriter serialises the prompt and the handlers' "queued" lines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func runPairingMode(e *env, c *cli.Context) error {
	conf, warns, err := config.LoadControl(c.String("config"), e.paths)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	config.LogWarnings(e.log, warns)
	backend, err := e.stateBackend(conf.Path, conf)
	if err != nil {
		return err
	}
	// Caught from the start, so a stop is always clean and logged once (B-9).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	port := c.Int("port")
	if port == 0 {
		port = defaultPairingPort
	}

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	stopCheckLoop := startCheckLoop(ctx, e, conf)
	defer stopCheckLoop()

	queue := backend.Queue(e.paths.PairingDir(), e.now)
	if err := os.MkdirAll(e.paths.PairingDir(), 0o770); err != nil {
		return cliapp.Fatalf("Cannot create pairing queue directory: %v", err)
	}
	queue.ExpireStale()
	// Requests left by a pairing-mode that died (killed, say) can no longer
	// be answered: clear them, and any registry record of an approval it
	// never delivered.
	reg := backend.Registry
	pairing.RecoverOrphans(queue, reg, e.log)

	// The CA approvals deliver goes out after the ctrl-exec certificate, so
	// an agent pinning its fingerprint checks the chain before it sends
	// anything.
	caFile := pki.CAFilesIn(e.paths.ConfDir()).Cert
	fingerprint := ""
	id, err := tlsx.LoadChainIdentity(conf.Cert, conf.Key, caFile)
	if err == nil {
		if ca, cerr := pki.LoadCert(caFile); cerr == nil {
			fingerprint = pki.Fingerprint(ca)
		}
	} else {
		fmt.Fprintf(e.stderr, "Warning: %v - agents cannot pin the CA (request-pairing --ca-fingerprint)\n", err)
		id, err = tlsx.LoadIdentity(conf.Cert, conf.Key, "")
	}
	if err != nil {
		return cliapp.Fatalf("Cannot start pairing server: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return cliapp.Fatalf("Cannot start pairing server: %v", err)
	}
	e.log.Info().Int("PORT", port).Msg("pairing-mode-start")

	out := &syncWriter{w: e.stdout}
	f, isFile := e.stdin.(*os.File)
	interactive := isFile && isTerminal(f)
	if interactive {
		fmt.Fprintf(out, "Pairing mode active on port %d. Ctrl-C or 'quit' to stop.\n", port)
		fmt.Fprintln(out, "Waiting for pairing requests...")
	} else {
		fmt.Fprintf(out, "Pairing mode active on port %d. Ctrl-C to stop.\n", port)
		fmt.Fprintln(out, "Use 'ctrl-exec list-requests' to see pending requests.")
	}
	if fingerprint != "" {
		fmt.Fprintf(out, "CA fingerprint: %s (agents pin it with request-pairing --ca-fingerprint)\n", fingerprint)
	}

	answered := make(chan struct{}, 1)
	// Only a test build (pkg/testknobs) lets the end-to-end tests shorten
	// the poll and the agent's wait window.
	srv := &pairing.Server{
		Queue:        queue,
		Registry:     reg,
		MaxQueue:     conf.PairingMaxQueue,
		PollInterval: testknobs.Duration(testknobs.PairingPoll, pairing.DefaultPollInterval),
		Window:       testknobs.Duration(testknobs.PairingWindow, pairing.DefaultWindow),
		Now:          e.now,
		Log:          e.log,
		Out:          out,
		Notify: func() {
			select {
			case answered <- struct{}{}:
			default:
			}
		},
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx, tls.NewListener(ln, tlsx.PairingServerConfig(id))) }()

	// The reader of an interactive stdin is left blocked at exit: a read
	// from a terminal cannot be cancelled without changing the terminal's
	// mode under the shell that shares it.
	var lines <-chan string
	if interactive {
		lines = readLines(e.stdin)
	}
	approver, err := e.approver(c)
	if err != nil {
		return err
	}
	console := &pairingConsole{out: out, queue: queue, approver: approver}

	stop := func(msg string) error {
		e.log.Info().Msg("pairing-mode-stop")
		cancel()
		serveErr := <-serveDone
		stopCheckLoop()
		fmt.Fprintln(out, msg)
		if serveErr != nil {
			return cliapp.Fatalf("%v", serveErr)
		}
		return nil
	}
	for {
		select {
		case <-sigs:
			return stop("\nPairing mode stopped.")
		case err := <-serveDone:
			serveDone <- err // for stop
			return stop("Pairing mode stopped.")
		case <-answered:
			if interactive {
				console.prompt()
			}
		case line, ok := <-lines:
			if !ok {
				lines, interactive = nil, false // stdin closed: carry on without a console
				continue
			}
			if console.command(line) {
				return stop("Pairing mode stopped.")
			}
		}
	}
}

// readLines delivers stdin lines until EOF, then closes the channel.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// pairingConsole is the interactive prompt of pairing-mode (§3.8).
type pairingConsole struct {
	out      io.Writer
	queue    *pairing.Queue
	approver *pairing.Approver
}

var (
	approveNthRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^a(\d+)$`) })
	denyNthRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^d(\d+)$`) })
)

// command runs one operator line and reports whether to quit.
func (p *pairingConsole) command(line string) (quit bool) {
	line = strings.TrimSpace(line)
	switch {
	case line == "":
	case line == "quit" || line == "q":
		return true
	case line == "list" || line == "l":
		p.prompt()
	case approveNthRE().MatchString(line):
		p.nth(approveNthRE().FindStringSubmatch(line)[1], p.approve)
	case denyNthRE().MatchString(line):
		p.nth(denyNthRE().FindStringSubmatch(line)[1], p.deny)
	case line == "a" || line == "A":
		p.only("a", p.approve)
	case line == "d" || line == "D":
		p.only("d", p.deny)
	case line == "s" || line == "skip":
		fmt.Fprintln(p.out, "Skipped. Request remains pending.")
	default:
		fmt.Fprintf(p.out, "Unknown command '%s'. Commands: a/d/s/list/quit or a1/d1 for multiple.\n", line)
	}
	return false
}

func (p *pairingConsole) pending() []pairing.Request {
	reqs, err := p.queue.List()
	if err != nil {
		fmt.Fprintf(p.out, "Cannot read the pairing queue: %v\n", err)
	}
	return reqs
}

// prompt shows the pending requests and what to type.
func (p *pairingConsole) prompt() {
	reqs := p.pending()
	switch len(reqs) {
	case 0:
		fmt.Fprintln(p.out, "No pending pairing requests.")
		fmt.Fprintln(p.out, "Waiting... (Commands: list, quit)")
	case 1:
		r := reqs[0]
		fmt.Fprintf(p.out, "\nPairing request from %s (%s) - ID: %s\n", or(r.Hostname, "?"), or(r.IP, "?"), or(r.ID, "?"))
		fmt.Fprintf(p.out, "  Code:     %s   (verify this matches the agent display)\n", or(r.Code, "??????"))
		fmt.Fprintf(p.out, "  Received: %s\n", or(r.Received, "?"))
		fmt.Fprint(p.out, "Accept, Deny, or Skip? [a/d/s]: ")
	default:
		fmt.Fprintf(p.out, "\n%d pending pairing requests:\n", len(reqs))
		p.printQueue(reqs)
		fmt.Fprint(p.out, "Command (a1/d1/a2/d2/list/quit): ")
	}
}

func (p *pairingConsole) printQueue(reqs []pairing.Request) {
	for i, r := range reqs {
		fmt.Fprintf(p.out, "  [%d] %-30s  %-16s  code: %s  %s\n",
			i+1, or(r.Hostname, "?"), or(r.IP, "?"), or(r.Code, "??????"), or(r.Received, "?"))
	}
}

// nth acts on the request at 1-based position n of the current list.
func (p *pairingConsole) nth(n string, act func(id string)) {
	reqs := p.pending()
	i, err := strconv.Atoi(n)
	if err != nil || i < 1 || i > len(reqs) {
		fmt.Fprintf(p.out, "No request at position %s.\n", n)
		return
	}
	act(reqs[i-1].ID)
}

// only acts on the single pending request.
func (p *pairingConsole) only(letter string, act func(id string)) {
	reqs := p.pending()
	switch len(reqs) {
	case 0:
		fmt.Fprintln(p.out, "No pending requests.")
	case 1:
		act(reqs[0].ID)
	default:
		fmt.Fprintf(p.out, "Multiple requests pending - use %s1, %s2, etc.\n", letter, letter)
		p.printQueue(reqs)
	}
}

func (p *pairingConsole) approve(id string) {
	if err := approveAndPrint(p.approver, p.out, id); err != nil {
		fmt.Fprintf(p.out, "Approve failed: %v\n", err)
		return
	}
	fmt.Fprintln(p.out, "Waiting for next request... (Ctrl-C to exit pairing mode)")
}

func (p *pairingConsole) deny(id string) {
	if err := denyAndPrint(p.approver, p.out, id); err != nil {
		fmt.Fprintf(p.out, "Deny failed: %v\n", err)
		return
	}
	fmt.Fprintln(p.out, "Waiting for next request... (Ctrl-C to exit pairing mode)")
}
