// Package cliargs normalises a command line the way Perl's Getopt::Long did
// for the original tools, so urfave/cli (which stops at the first positional
// word) sees a tidy argv.
//
// Options may appear anywhere before a literal "--"; they accept "--name v",
// "--name=v", a single dash, any letter case and unambiguous prefixes. An
// unknown option is a usage error (Perl's control CLI passed it on as a
// positional word, so a mistyped option became a host name). The result is:
// options, mode, then "--" and the positional words, so urfave/cli hands every
// positional word (and any later "--" and the words after it) to the command
// untouched.
package cliargs

import (
	"fmt"
	"strings"
)

// Option describes one known option.
type Option struct {
	Name      string // long name without dashes, e.g. "config"
	TakesArg  bool   // "--config <path>"; false for flags like "--json"
	Alias     string // another accepted name, e.g. "ctrl-exec" for "dispatcher"
	ShortName string // optional one-letter form, e.g. "s"
}

// Spec is the option table of one command line.
type Spec struct {
	Options []Option
	// DefaultMode is used when no positional word names a mode ("" = none).
	DefaultMode string
}

// Parsed is a normalised command line.
type Parsed struct {
	Options []string // canonical "--name=value" / "--name", in order given
	Mode    string
	Help    bool     // --help / -h was given
	Version bool     // --version was given
	Rest    []string // positional words after the mode, then "--" and what followed it
}

// Argv renders the urfave/cli argv: prog, options, mode, [--help], "--", rest.
func (p Parsed) Argv(prog string) []string {
	argv := append([]string{prog}, p.Options...)
	if p.Version {
		return append(argv, "--version")
	}
	if p.Mode == "" {
		if p.Help {
			argv = append(argv, "--help")
		}
		return argv
	}
	argv = append(argv, p.Mode)
	if p.Help {
		return append(argv, "--help")
	}
	return append(append(argv, "--"), p.Rest...)
}

// Parse normalises args (without the program name).
func Parse(spec Spec, args []string) (Parsed, error) {
	var p Parsed
	var positional []string
	var tail []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			tail = append([]string{"--"}, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch strings.ToLower(name) {
		case "help", "h":
			p.Help = true
			continue
		case "version", "v":
			p.Version = true
			continue
		}
		opt, err := spec.lookup(name)
		if err != nil {
			return p, err
		}
		if opt == nil {
			return p, fmt.Errorf("Unknown option: %s", strings.TrimLeft(name, "-"))
		}
		if !opt.TakesArg {
			if hasValue {
				return p, fmt.Errorf("Option %s does not take an argument", opt.Name)
			}
			p.Options = append(p.Options, "--"+opt.Name)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return p, fmt.Errorf("Option %s requires an argument", opt.Name)
			}
			i++
			value = args[i]
		}
		p.Options = append(p.Options, "--"+opt.Name+"="+value)
	}
	if len(positional) > 0 {
		p.Mode, positional = positional[0], positional[1:]
	} else if !p.Help && (len(tail) == 0 || spec.DefaultMode != "") {
		p.Mode = spec.DefaultMode
	}
	if rest := append(positional, tail...); len(rest) > 0 {
		p.Rest = rest
	}
	return p, nil
}

// lookup resolves an option name: exact (case-insensitive), alias, short
// name, then unique prefix. nil means unknown.
func (s Spec) lookup(name string) (*Option, error) {
	lname := strings.ToLower(name)
	for i, o := range s.Options {
		if lname == o.Name || (o.Alias != "" && lname == o.Alias) || (o.ShortName != "" && name == o.ShortName) {
			return &s.Options[i], nil
		}
	}
	var match *Option
	for i, o := range s.Options {
		if strings.HasPrefix(o.Name, lname) || (o.Alias != "" && strings.HasPrefix(o.Alias, lname)) {
			if match != nil && match.Name != o.Name {
				return nil, fmt.Errorf("Option %s is ambiguous (%s, %s)", name, match.Name, o.Name)
			}
			match = &s.Options[i]
		}
	}
	return match, nil
}
