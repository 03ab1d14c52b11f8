package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// serve is the role's one command: load the config, listen, answer until a
// signal, stop gracefully.
func serve(ctx context.Context, e *env, configPath string) error {
	// Caught before anything else, so a stop that arrives as soon as the
	// listening line appears (or before it) still ends with a clean stop.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, warns, err := config.LoadControl(configPath, e.paths)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if cfg.LogFormat != "" {
		e.log = logx.NewFormat(logx.IdentAPI, true, cfg.LogFormat)
	}
	config.LogWarnings(e.log, warns)

	tlsConf, err := apiTLS(cfg)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	backend, err := state.Open(cfg, e.paths, e.now)
	if err != nil {
		return cliapp.Fatalf("%s: %v", cfg.Path, err)
	}
	defer backend.Close()
	addr := net.JoinHostPort(cfg.APIBind, strconv.Itoa(cfg.APIPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return cliapp.Fatalf("Cannot start API server on %s: %v", addr, err)
	}

	build := buildinfo.Get()
	// One in-memory TLS session cache for every agent request the API
	// makes, so repeat /run and /ping calls resume.
	var sessions *sessioncache.Cache
	if cfg.SessionCache {
		sessions = sessioncache.New(e.now)
	}
	fleet := newFleet(cfg, backend, e.log, e.now)
	fleet.Sessions = sessions
	srv := newServer(serverDeps{
		conf:    cfg,
		paths:   e.paths,
		log:     e.log,
		now:     e.now,
		fleet:   fleet,
		tls:     tlsConf,
		version: build.Version,
		commit:  build.Commit,
		goVer:   build.Go,
		state:   backend,
	})

	useTLS, mode := "no", "plain HTTP"
	if tlsConf != nil {
		useTLS, mode = "yes", "TLS"
	}
	e.log.Info().Int("PORT", cfg.APIPort).Str("BIND", cfg.APIBind).Str("TLS", useTLS).Msg("api-start")
	fmt.Fprintf(e.stdout, "ctrl-exec API listening on %s:%d (%s)\n", cfg.APIBind, cfg.APIPort, mode)

	stopFollow := followIdentity(ctx, cfg, e, sessions, backend)
	stopRotation := startRotationLoop(ctx, cfg, e, sessions, backend)
	err = srv.Serve(ctx, ln)
	stopRotation()
	stopFollow()

	e.log.Info().Msg("api-stop")
	fmt.Fprint(e.stdout, "\nAPI server stopped.\n")
	if err != nil {
		return cliapp.Fatalf("API server on %s: %v", addr, err)
	}
	return nil
}

// apiTLS returns the listener's TLS configuration, or nil for plain HTTP
// when neither api_cert nor api_key is set. Setting only one of them, or
// naming a file that is missing, is an error: upstream silently served plain
// HTTP instead, which an operator who asked for TLS would not expect (B-18).
func apiTLS(cfg *config.Control) (*tls.Config, error) {
	if cfg.APICert == "" && cfg.APIKey == "" {
		return nil, nil
	}
	if cfg.APICert == "" || cfg.APIKey == "" {
		set, unset := "api_key", "api_cert"
		if cfg.APICert != "" {
			set, unset = "api_cert", "api_key"
		}
		return nil, fmt.Errorf("%s: %s is set but %s is not - set both for TLS, or neither for plain HTTP", cfg.Path, set, unset)
	}
	for _, f := range []struct{ key, path string }{{"api_cert", cfg.APICert}, {"api_key", cfg.APIKey}} {
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %s file '%s' does not exist - install it, or remove api_cert and api_key for plain HTTP", cfg.Path, f.key, f.path)
		}
	}
	id, err := tlsx.LoadIdentity(cfg.APICert, cfg.APIKey, "")
	if err != nil {
		return nil, fmt.Errorf("%s: cannot use api_cert/api_key for TLS: %w", cfg.Path, err)
	}
	return tlsx.APIServerConfig(id), nil
}
