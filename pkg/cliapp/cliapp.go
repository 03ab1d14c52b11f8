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
	"regexp"
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

// Spec is the option table of a role, made from its app's flags so that an
// option is declared once: a flag cliargs did not know would be read as a
// host name. A one-letter alias is the short form, a longer one the alias.
func Spec(flags []cli.Flag, defaultMode string) cliargs.Spec {
	spec := cliargs.Spec{DefaultMode: defaultMode}
	for _, f := range flags {
		names := f.Names()
		if names[0] == "help" || names[0] == "version" {
			continue // cliargs handles these itself
		}
		o := cliargs.Option{Name: names[0]}
		if v, ok := f.(cli.DocGenerationFlag); ok {
			o.TakesArg = v.TakesValue()
		}
		for _, a := range names[1:] {
			if len(a) == 1 {
				o.ShortName = a
			} else {
				o.Alias = a
			}
		}
		spec.Options = append(spec.Options, o)
	}
	return spec
}

// Launch is every role's Main after its env is built: normalise args with
// the app's options (Spec, defaultMode when no mode is given), refuse an
// unknown mode (or a missing one when needMode), let the role pick its
// logger for the mode, then run app.
func Launch(prog string, args []string, defaultMode string, usage string, needMode bool,
	app *cli.App, stderr io.Writer, setLog func(mode string)) int {
	parsed, err := cliargs.Parse(Spec(app.Flags, defaultMode), args)
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

var longOption = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)

// UsageMismatches lists the disagreements between a role's usage text and
// its flags: a visible flag the text never names, or an option the text
// names that is not a flag. Each role's tests call it.
func UsageMismatches(usage string, flags []cli.Flag) []string {
	known := map[string]bool{"help": true, "version": true}
	var out []string
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		if !strings.Contains(usage, "--"+f.Names()[0]) {
			out = append(out, "usage does not name --"+f.Names()[0])
		}
	}
	for _, m := range longOption.FindAllStringSubmatch(usage, -1) {
		if !known[m[1]] {
			out = append(out, "usage names --"+m[1]+", which is not a flag")
		}
	}
	return out
}
