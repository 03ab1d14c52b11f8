package agent

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/spawn"
)

func serveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the mTLS agent server on the port from agent.conf (the default mode)",
		Description: `Loads agent.conf (--config), the script allowlist (--allowlist), the revoked
serials and the stored ctrl-exec serial, then serves /run, /ping and
/capabilities over mutual TLS until SIGTERM or SIGINT.

SIGHUP re-reads agent.conf (the old settings stay if it no longer loads),
the allowlist (left empty if it cannot be read), the revoked serials, the
stored serial and the certificate, and clears the rate limiter. A changed
ctrl-exec-serial file is also noticed without SIGHUP.

Exit status: 0 after SIGTERM/SIGINT (running requests get 10 s to finish);
255 when the configuration, allowlist or certificates cannot be loaded, the
port cannot be opened, or the listener fails.`,
		Action: func(c *cli.Context) error {
			return serve(c.Context, e, c.String("config"), c.String("allowlist"))
		},
	}
}

func serve(ctx context.Context, e *env, configPath, allowlistPath string) error {
	// SIGHUP must be caught before anything else: its default action would
	// end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// log_format is read before the server starts, so every event of this
	// process has one format (NewServer reports a bad file itself).
	if cfg, _, err := config.LoadAgent(configPath, e.paths); err == nil && cfg.LogFormat != "" {
		e.log = logx.NewFormat(logx.IdentAgent, true, cfg.LogFormat)
	}
	hostname, err := paths.Hostname()
	if err != nil {
		return cliapp.Fatalf("Cannot determine hostname: %v", err)
	}
	srv, err := NewServer(ServerOptions{
		ConfigPath:    configPath,
		AllowlistPath: allowlistPath,
		Paths:         e.paths,
		Log:           e.log,
		Now:           e.now,
		Stderr:        e.stderr,
		Hostname:      hostname,
		Version:       buildinfo.Get().Version,
		Timeouts:      DefaultTimeouts(),
	})
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	ln, err := srv.Listen()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hup:
				srv.Reload()
			case <-ctx.Done():
				return
			}
		}
	}()
	if os.Getpid() == 1 {
		// As PID 1 (a container) orphaned grandchildren are ours to reap (§19.2).
		wg.Add(1)
		go func() {
			defer wg.Done()
			spawn.ReapOrphans(ctx, nil)
		}()
	}

	if err := srv.Serve(ctx, ln); err != nil {
		return cliapp.Fatalf("%v", err)
	}
	return nil
}
