// Package spawn is the one way ctrl-exec starts a process (SPEC §12.2, §13.1).
//
// A child is executed directly — no shell, no PATH search — in its own
// process group, with an explicit environment. Its stdin is fed from a byte
// slice while stdout and stderr are drained at the same time, so a child that
// writes megabytes to either stream never blocks (SPEC §20 B-11).
package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Exit values that do not come from the child's own exit status (SPEC §12.2).
const (
	ExitSignaled   = 126 // killed by a signal
	ExitExecFailed = 127 // the path could not be executed
	ExitNoStart    = -1  // pipe or fork failure in this process
)

// cancelGrace is how long the output pipes may still deliver buffered data
// after a cancelled child's group was killed; a descendant that escaped the
// group (setsid) and holds a pipe open must not hold Run forever.
const cancelGrace = time.Second

// Cmd describes one child process.
type Cmd struct {
	// Path is the absolute path executed; it is also argv[0].
	Path string
	// Args are argv[1:], passed byte-for-byte.
	Args []string
	// Env is the complete environment (nil means empty). Callers pass
	// os.Environ() plus their extras; a later entry overrides an earlier one
	// with the same name.
	Env []string
	// Stdin is written to the child's stdin, which is then closed (EOF).
	Stdin []byte
	// StdinTimeout bounds the stdin write (0 = none). When it expires the
	// pipe is closed, the unwritten byte count is reported, and Run keeps
	// waiting for the child.
	StdinTimeout time.Duration
	// DiscardOutput sends stdout and stderr to /dev/null (auth hooks).
	DiscardOutput bool
	// MaxOutput bounds what is kept of each of stdout and stderr (0 = all).
	// A longer stream keeps its first and last halves joined by CutMarker,
	// so memory stays bounded whatever the child prints.
	MaxOutput int
}

// Result is the outcome of Run.
type Result struct {
	// Exit is the exit status 0–255, ExitSignaled when Signaled,
	// ExitExecFailed when the path could not be executed, or ExitNoStart
	// when no child could be started.
	Exit int
	// Signaled reports death by Signal (this includes a kill on
	// cancellation, see Canceled).
	Signaled bool
	Signal   syscall.Signal
	// Stdout and Stderr are the raw output (nil with DiscardOutput), cut to
	// MaxOutput. On ExitExecFailed and ExitNoStart, Stderr carries the
	// error text.
	Stdout, Stderr []byte
	// StdoutCut and StderrCut count the bytes MaxOutput cut from each.
	StdoutCut, StderrCut int64
	// StdinTimedOut reports that StdinTimeout cut the write short, leaving
	// StdinUnwritten bytes unwritten. A child that exits without reading
	// (EPIPE) is not a timeout.
	StdinTimedOut  bool
	StdinUnwritten int
	// Canceled reports that ctx ended before the child exited and its
	// process group was killed.
	Canceled bool
	// Err is set when the child never ran (ExitExecFailed, ExitNoStart).
	Err error
}

// Run starts cmd and waits for it to exit and for its output to reach EOF.
//
// When ctx ends before the child exits, the child's whole process group is
// killed with SIGKILL and reaped. Hooks pass a context with their timeout.
// The agent runs scripts with a context that is never cancelled by a client
// disconnect (context.WithoutCancel or a shutdown-only context): SPEC §12.2
// requires a script to run to completion even if the control host gave up.
func Run(ctx context.Context, cmd Cmd) Result {
	if err := ctx.Err(); err != nil {
		return noStart(fmt.Errorf("spawn %s: not started: %w", cmd.Path, err), cmd.DiscardOutput, true)
	}
	if !filepath.IsAbs(cmd.Path) {
		return execFailed(cmd.Path, fmt.Errorf("spawn %q: path is not absolute", cmd.Path))
	}

	var p pipes
	defer p.closeAll()
	if err := p.open(cmd.DiscardOutput); err != nil {
		return noStart(fmt.Errorf("spawn %s: %w", cmd.Path, err), cmd.DiscardOutput, false)
	}

	argv := append([]string{cmd.Path}, cmd.Args...)
	attr := &os.ProcAttr{
		Env:   dedupEnv(cmd.Env),
		Files: []*os.File{p.stdinR, p.stdoutW, p.stderrW},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	proc, err := startTracked(cmd.Path, argv, attr)
	if err != nil {
		if isResourceError(err) {
			return noStart(fmt.Errorf("spawn %s: fork: %w", cmd.Path, err), cmd.DiscardOutput, false)
		}
		return execFailed(cmd.Path, err)
	}
	defer untrack(proc.Pid)
	p.closeChildEnds()

	var res Result
	var wg sync.WaitGroup
	stdout, stderr := &capture{limit: cmd.MaxOutput}, &capture{limit: cmd.MaxOutput}
	if !cmd.DiscardOutput {
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(stdout, p.stdoutR) }()
		go func() { defer wg.Done(); _, _ = io.Copy(stderr, p.stderrR) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.StdinTimedOut, res.StdinUnwritten = writeStdin(p.stdinW, cmd.Stdin, cmd.StdinTimeout)
	}()

	exited := make(chan struct{})
	go func() { waitExited(proc.Pid); close(exited) }()
	select {
	case <-exited:
	case <-ctx.Done():
		select {
		case <-exited: // it finished on its own; leave its descendants be
		default:
			// The leader is not reaped yet, so its pgid cannot have been reused.
			_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			res.Canceled = true
			<-exited
		}
	}
	state, werr := proc.Wait()

	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		p.setDeadlines(time.Now().Add(cancelGrace))
		<-drained
	}

	if !cmd.DiscardOutput {
		res.Stdout, res.StdoutCut = stdout.bytes()
		res.Stderr, res.StderrCut = stderr.bytes()
	}
	switch {
	case werr != nil:
		res.Exit, res.Err = ExitNoStart, fmt.Errorf("spawn %s: wait: %w", cmd.Path, werr)
		res.Stderr = append(res.Stderr, res.Err.Error()...)
	default:
		ws := state.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Exit, res.Signaled, res.Signal = ExitSignaled, true, ws.Signal()
		} else {
			res.Exit = ws.ExitStatus()
		}
	}
	return res
}

func noStart(err error, discard, canceled bool) Result {
	r := Result{Exit: ExitNoStart, Err: err, Canceled: canceled}
	if !discard {
		r.Stdout, r.Stderr = []byte{}, []byte(err.Error())
	}
	return r
}

func execFailed(path string, err error) Result {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = fmt.Errorf("cannot execute %s: %w", path, errno)
	}
	return Result{Exit: ExitExecFailed, Err: err, Stdout: []byte{}, Stderr: []byte(err.Error() + "\n")}
}

// isResourceError tells a fork or descriptor shortage in this process from
// an exec failure in the child (which the child would report as exit 127).
func isResourceError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EAGAIN, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// writeStdin writes data and closes w. EPIPE (the child exited or closed its
// stdin) ends the write silently; Go returns it as an error instead of
// raising SIGPIPE because w is not fd 1 or 2.
func writeStdin(w *os.File, data []byte, timeout time.Duration) (timedOut bool, unwritten int) {
	defer w.Close()
	if len(data) == 0 {
		return false, 0
	}
	if timeout > 0 {
		_ = w.SetWriteDeadline(time.Now().Add(timeout))
	}
	n, err := w.Write(data)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true, len(data) - n
	}
	return false, 0
}

// waitExited blocks until the child pid has exited, leaving it unreaped.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// pipes holds both ends of the child's stdio; closeAll is idempotent.
type pipes struct {
	stdinR, stdinW   *os.File
	stdoutR, stdoutW *os.File
	stderrR, stderrW *os.File
}

func (p *pipes) open(discard bool) error {
	var err error
	if p.stdinR, p.stdinW, err = os.Pipe(); err != nil {
		return fmt.Errorf("pipe(stdin): %w", err)
	}
	if discard {
		if p.stdoutW, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			return fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		p.stderrW = p.stdoutW
		return nil
	}
	if p.stdoutR, p.stdoutW, err = os.Pipe(); err != nil {
		return fmt.Errorf("pipe(stdout): %w", err)
	}
	if p.stderrR, p.stderrW, err = os.Pipe(); err != nil {
		return fmt.Errorf("pipe(stderr): %w", err)
	}
	return nil
}

func (p *pipes) closeChildEnds() {
	for _, f := range []**os.File{&p.stdinR, &p.stdoutW, &p.stderrW} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

func (p *pipes) closeAll() {
	p.closeChildEnds()
	for _, f := range []**os.File{&p.stdinW, &p.stdoutR, &p.stderrR} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// setDeadlines bounds the reads and the stdin write still in flight.
func (p *pipes) setDeadlines(t time.Time) {
	_ = p.stdinW.SetWriteDeadline(t)
	for _, f := range []*os.File{p.stdoutR, p.stderrR} {
		if f != nil {
			_ = f.SetReadDeadline(t)
		}
	}
}

// dedupEnv keeps the last entry for each name, in first-seen order, so
// "os.Environ() plus extras" overrides rather than duplicates.
func dedupEnv(env []string) []string {
	out := make([]string, 0, len(env))
	index := make(map[string]int, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	return out
}

// ValidUTF8 returns b as a string with each byte that is not part of a valid
// UTF-8 sequence replaced by U+FFFD — what encoding/json does to such bytes.
func ValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}
