// Package cliapp is the edge every role shares between urfave/cli and the
// process: it runs an App and turns the outcome into an exit status.
//
// Exit statuses: 0 success; a command's own codes (documented per command)
// via Exit; 255 for any other fatal error (SPEC §2.2), whose message goes to
// stderr on one line.
package cliapp

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliargs"
)

// ExitError ends the process with Code after printing Message (if any) to stderr.
type ExitError struct {
	Code    int
	Message string
}

func (e *ExitError) Error() string { return e.Message }

// Exit ends the command with code, printing msg to stderr when it is not empty.
func Exit(code int, msg string) error { return &ExitError{Code: code, Message: msg} }

// Fatalf is a generic fatal error: message to stderr, exit 255.
func Fatalf(format string, a ...any) error {
	return &ExitError{Code: 255, Message: fmt.Sprintf(format, a...)}
}

// Run runs app with argv and returns the exit status.
func Run(app *cli.App, argv []string, stderr io.Writer) int {
	app.ExitErrHandler = func(*cli.Context, error) {} // we map errors ourselves
	// A bad option value is a one-line error on stderr (exit 255), never
	// urfave/cli's "Incorrect Usage" plus the whole help text on stdout.
	quiet := func(_ *cli.Context, err error, _ bool) error { return err }
	app.OnUsageError = quiet
	for _, c := range app.Commands {
		c.OnUsageError = quiet
	}
	err := app.Run(argv)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Message != "" {
			fmt.Fprintln(stderr, strings.TrimSuffix(ee.Message, "\n"))
		}
		return ee.Code
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, strings.TrimSuffix(msg, "\n"))
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, strings.TrimSuffix(err.Error(), "\n"))
	return 255
}

// Launch is every role's Main after its env is built: normalise args with
// spec (pkg/cliargs), refuse an unknown mode (or a missing one when
// needMode), let the role pick its logger for the mode, then run app.
func Launch(prog string, args []string, spec cliargs.Spec, usage string, needMode bool,
	app *cli.App, stderr io.Writer, setLog func(mode string)) int {
	parsed, err := cliargs.Parse(spec, args)
	if err != nil {
		io.WriteString(stderr, err.Error()+"\n"+usage)
		return 255
	}
	if needMode && parsed.Mode == "" && !parsed.Help && !parsed.Version {
		io.WriteString(stderr, usage)
		return 255
	}
	if parsed.Mode != "" && app.Command(parsed.Mode) == nil {
		io.WriteString(stderr, "Unknown mode '"+parsed.Mode+"'\n"+usage)
		return 255
	}
	setLog(parsed.Mode)
	return Run(app, parsed.Argv(prog), stderr)
}
