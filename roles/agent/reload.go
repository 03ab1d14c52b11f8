package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/ratelimit"
)

// runtime is everything a connection reads from the agent's configuration.
// A reload builds a new one and swaps it in whole; each connection takes one
// snapshot when it is accepted, so a request in flight finishes with the
// settings it started with and no request is lost to a reload.
type runtime struct {
	cfg       *config.Agent
	allowlist config.Allowlist
	revoked   *pki.RevocationList
	ipAllow   ratelimit.IPAllowlist
	limiter   *ratelimit.Limiter // fresh per runtime: a reload clears rate state
}

func (s *Server) newRuntime(cfg *config.Agent, list config.Allowlist) *runtime {
	return &runtime{
		cfg:       cfg,
		allowlist: list,
		revoked:   loadRevoked(cfg.RevokedSerials, s.log, s.stderr),
		ipAllow:   ratelimit.NewIPAllowlist(cfg.AllowedIPs),
		limiter:   ratelimit.New(rateConfig(cfg), func() int64 { return s.now().Unix() }, s.log),
	}
}

func rateConfig(cfg *config.Agent) ratelimit.Config {
	spec := func(r config.RateSpec) ratelimit.Spec {
		return ratelimit.Spec{Limit: int64(r.Limit), Window: int64(r.Window), Block: int64(r.Block)}
	}
	return ratelimit.Config{Disabled: cfg.RateLimitDisable, Volume: spec(cfg.RateVolume), Probe: spec(cfg.RateProbe)}
}

// Reload is the SIGHUP handler (SPEC §6.4, D-12). It re-reads agent.conf and
// keeps the previous configuration when the new one does not load; re-reads
// the allowlist and leaves it empty when that fails (fail closed, B-13);
// re-reads the revoked serials and the stored ctrl-exec serial; starts a
// fresh rate limiter; and loads cert, key and CA for new handshakes, keeping
// the old identity if they do not load. The port cannot change without a
// restart.
func (s *Server) Reload() {
	fmt.Fprintln(s.stderr, "Reloading allowlist, revocation list, and ctrl-exec serial...")
	old := s.rt.Load()
	cfg := old.cfg
	next, warns, err := config.LoadAgent(s.configPath, s.paths)
	if err != nil {
		fmt.Fprintf(s.stderr, "Config reload failed: %v - keeping the previous configuration\n", err)
	} else {
		config.LogWarnings(s.log, warns)
		if next.Port != cfg.Port {
			fmt.Fprintf(s.stderr, "Config reload: port changed from %d to %d - restart the agent to listen on the new port\n", cfg.Port, next.Port)
		}
		cfg = next
	}

	list, skipped, err := config.LoadAllowlist(s.allowlistPath, cfg.ScriptDirs)
	s.warnSkipped(skipped)
	if err != nil {
		fmt.Fprintf(s.stderr, "Allowlist reload failed: %v\n", err)
		list = config.Allowlist{}
	}

	if err := s.reloadIdentity(cfg); err != nil {
		fmt.Fprintf(s.stderr, "Certificate reload failed: %v - new connections keep the previous certificate\n", err)
	}
	rt := s.newRuntime(cfg, list)
	s.serial.reload(cfg.SerialPath)
	s.rt.Store(rt)
}

// reloadIdentity loads cert, key and CA for new handshakes under the same
// locks as a renewal's store (the cert directory's flock, then identityMu),
// so a renewal never lands between this reload's reading of the files and
// its swap: the identity served is always the newest on disk.
func (s *Server) reloadIdentity(cfg *config.Agent) error {
	reload := func() error {
		s.identityMu.Lock()
		defer s.identityMu.Unlock()
		return s.identity.Reload(cfg.Cert, cfg.Key, cfg.CA)
	}
	dir := filepath.Dir(cfg.Cert)
	if _, err := os.Stat(dir); err != nil {
		return reload() // no directory to lock; the load reports the missing file
	}
	return atomicfile.WithLock(dir, reload)
}

// warnSkipped reports the allowlist entries that were dropped, on stderr as
// upstream does and as config-warn log lines, so that an entry refused for
// script_dirs shows in the agent's log and not only as "script not
// permitted" on the control host.
func (s *Server) warnSkipped(skipped []config.Warning) {
	printWarnings(s.stderr, skipped)
	config.LogWarnings(s.log, skipped)
}

func printWarnings(w io.Writer, warns []config.Warning) {
	for _, warn := range warns {
		fmt.Fprintln(w, warn.Msg)
	}
}
