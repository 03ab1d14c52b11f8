package cliapp

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliargs"
)

func TestSpecFromFlags(t *testing.T) {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config"},
		&cli.BoolFlag{Name: "json"},
		&cli.IntFlag{Name: "port"},
		&cli.StringSliceFlag{Name: "tag"},
		&cli.StringFlag{Name: "script", Aliases: []string{"s"}},
		&cli.StringFlag{Name: "dispatcher", Aliases: []string{"ctrl-exec"}},
		&cli.StringFlag{Name: "hidden", Hidden: true},
		cli.HelpFlag,
		cli.VersionFlag,
	}
	want := cliargs.Spec{DefaultMode: "serve", Options: []cliargs.Option{
		{Name: "config", TakesArg: true},
		{Name: "json"},
		{Name: "port", TakesArg: true},
		{Name: "tag", TakesArg: true},
		{Name: "script", TakesArg: true, ShortName: "s"},
		{Name: "dispatcher", TakesArg: true, Alias: "ctrl-exec"},
		{Name: "hidden", TakesArg: true},
	}}
	if diff := cmp.Diff(want, Spec(flags, "serve")); diff != "" {
		t.Error(diff)
	}
}

// A flag declared only for urfave/cli is an option, not a host name.
func TestSpecFlagIsNotAPositional(t *testing.T) {
	p, err := cliargs.Parse(Spec([]cli.Flag{&cli.BoolFlag{Name: "new-flag"}}, ""), []string{"run", "--new-flag", "host1", "script"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"--new-flag"}, p.Options); diff != "" {
		t.Error(diff)
	}
}

func TestUsageMismatches(t *testing.T) {
	flags := []cli.Flag{&cli.StringFlag{Name: "config"}, &cli.BoolFlag{Name: "json"}, &cli.StringFlag{Name: "internal", Hidden: true}}
	got := UsageMismatches("Options: --config <path> --jsn --help -- <arg>", flags)
	want := []string{"usage does not name --json", "usage names --jsn, which is not a flag"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}
