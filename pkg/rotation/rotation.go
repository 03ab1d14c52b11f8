// Package rotation replaces the control host's own certificate before it
// expires and tells every agent the new serial (SPEC §15.2).
//
// Agents only accept requests from the ctrl-exec certificate whose serial
// they store, so a new certificate alone would lock the whole fleet out
// (B-2). Rotate therefore keeps the previous key pair as ctrl-exec.key.prev
// and ctrl-exec.crt.prev (D-25), and Broadcast reaches each agent still on
// the old serial with that pair to run update-ctrl-exec-serial there. Once no
// agent is pending, or the overlap window has passed, the .prev pair is
// deleted.
//
//	r := rotation.New(conf, dispatch.NewClient(conf, log), log, time.Now)
//	res, err := r.Rotate(ctx, false)   // ctrl-exec rotate-cert
//	report, err := r.Broadcast(ctx)
//	stop := rotation.Start(ctx, rotation.Loop{Rotator: r, Interval: 4 * time.Hour})
package rotation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Defaults (SPEC §6.1, §15.2).
const (
	DefaultCertDays = 825 // ctrl-exec cert lifetime when cert_days is unset (B-16)
	// SerialScript is the allowlisted agent script that stores a new serial.
	SerialScript = "update-ctrl-exec-serial"
	// prevSuffix marks the previous key pair kept for the overlap (D-25).
	prevSuffix = ".prev"
)

// Rotator rotates the ctrl-exec certificate and brings agents up to date.
// Build it with New; every field may be set directly in tests.
type Rotator struct {
	// CADir holds ca.key, ca.crt, ca.serial and ctrl-exec.key/.crt (ca_dir,
	// default /etc/ctrl-exec); the .prev pair is kept beside them.
	CADir     string
	StateFile string // rotation.json
	// Store keeps the rotation state (nil: FileStore{StateFile}); a shared
	// one (etcd) also takes the new identity with it, for every node.
	Store    Store
	Registry *registry.Registry
	Serials  pki.SerialCounter // shared serial counter (etcd); nil: ca.serial alone

	CertDays    int // lifetime of a new ctrl-exec cert; <= 0 means DefaultCertDays
	RenewalDays int // rotate when this many days or fewer remain (cert_renewal_days)
	OverlapDays int // how long agents on the previous serial are retried (cert_overlap_days)
	KeyBits     int // RSA size of the new key; <= 0 means pki.KeyBitsFromEnv()

	// Client dispatches the broadcasts. Its Cert/Key/CA are the current
	// identity; copies of it carry the previous one.
	Client *dispatch.Client
	// Lookup resolves agent names for registry.AddressWith (nil: the
	// system resolver).
	Lookup func(ctx context.Context, host string) ([]string, error)

	// AfterRotate, if set, runs after each successful rotation: the roles
	// drop their TLS session caches there, since sessions made with the old
	// certificate must not be offered again.
	AfterRotate func()

	Log zerolog.Logger
	Now func() time.Time
}

// New builds a Rotator from ctrl-exec.conf.
func New(conf *config.Control, client *dispatch.Client, log zerolog.Logger, now func() time.Time) *Rotator {
	return &Rotator{
		CADir:       conf.CADir,
		StateFile:   conf.RotationFile,
		Registry:    registry.New(conf.RegistryDir),
		CertDays:    conf.CertDays,
		RenewalDays: conf.CertRenewalDays,
		OverlapDays: conf.CertOverlapDays,
		Client:      client,
		Log:         log,
		Now:         now,
	}
}

func (r *Rotator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// CertPath, KeyPath and their .prev twins are the files rotation replaces.
func (r *Rotator) CertPath() string     { return filepath.Join(r.CADir, "ctrl-exec.crt") }
func (r *Rotator) KeyPath() string      { return filepath.Join(r.CADir, "ctrl-exec.key") }
func (r *Rotator) PrevCertPath() string { return r.CertPath() + prevSuffix }
func (r *Rotator) PrevKeyPath() string  { return r.KeyPath() + prevSuffix }

// Warning is a failure that check_and_rotate reports in its result rather
// than raising (the cert is missing or unreadable, a new one could not be
// made): the check loop logs it as cert-check-warn. Other errors are
// unexpected (state or registry not writable) and logged as cert-check-error.
type Warning struct{ Msg string }

func (w *Warning) Error() string { return w.Msg }

// Result is the outcome of Rotate or CheckAndRotate.
type Result struct {
	Rotated        bool
	DaysLeft       int    // CheckAndRotate: whole days the current cert had left
	Serial         string // new serial, canonical hex
	OldSerial      string // "" when there was no readable previous cert
	OverlapExpires string // ISO time
	AgentsPending  int    // registry agents marked pending
	// Stranded are the agents a forced Rotate left without a certificate
	// they trust (still pending from the rotation before).
	Stranded []string
}

func (r *Rotator) store() Store {
	if r.Store != nil {
		return r.Store
	}
	return FileStore{Path: r.StateFile}
}

// locked runs fn so that a rotation, a broadcast and a clean-up never
// interleave: Store.Exclusive.
func (r *Rotator) locked(fn func() error) error { return r.store().Exclusive(fn) }

// CheckAndRotate is check_and_rotate (§15.2.2): log how many days the
// ctrl-exec cert has left and rotate when that is cert_renewal_days or fewer.
func (r *Rotator) CheckAndRotate(ctx context.Context) (Result, error) {
	var res Result
	err := r.locked(func() error {
		_, rev, err := r.store().Load(r.Log)
		if err != nil {
			return err
		}
		path := r.CertPath()
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return &Warning{Msg: "ctrl-exec cert not found at " + path}
		}
		cert, err := pki.LoadCert(path)
		if err != nil {
			return &Warning{Msg: "cannot read cert expiry from " + path}
		}
		// Perl's int() truncates toward zero: -0.5 days is 0.
		res.DaysLeft = int(cert.NotAfter.Sub(r.now()).Seconds() / 86400)
		r.Log.Info().Int("DAYS_LEFT", res.DaysLeft).Int("THRESHOLD", r.RenewalDays).Msg("cert-check")
		if res.DaysLeft > r.RenewalDays {
			return nil
		}
		r.Log.Info().Int("DAYS_LEFT", res.DaysLeft).Msg("cert-renewal-start")
		days := res.DaysLeft
		res, err = r.rotateLocked(rev)
		res.DaysLeft = days
		return err
	})
	return res, err
}

// Rotate is rotate (§15.2.3, ctrl-exec rotate-cert): a new ctrl-exec key and
// cert whatever the old one's expiry, the previous pair kept as .prev,
// rotation.json written and every registry agent marked pending.
//
// Only one previous pair is kept, so agents still pending from the last
// rotation (they trust only that pair) would be stranded by another one: Rotate
// refuses with a *StrandError naming them, unless force is set; then it
// rotates and lists them in Result.Stranded.
func (r *Rotator) Rotate(ctx context.Context, force bool) (Result, error) {
	var res Result
	err := r.locked(func() error {
		state, rev, err := r.store().Load(r.Log)
		if err != nil {
			return err
		}
		stranded, err := r.wouldStrand(state)
		if err != nil {
			return err
		}
		if len(stranded) > 0 && !force {
			return &StrandError{Hosts: stranded}
		}
		res, err = r.rotateLocked(rev)
		if err == nil && len(stranded) > 0 {
			res.Stranded = stranded
			r.Log.Warn().Str("AGENTS", strings.Join(stranded, ",")).
				Str("REASON", "forced rotation while agents were pending - they must be re-paired").Msg("cert-rotation-strand")
		}
		return err
	})
	return res, err
}

// StrandError is Rotate's refusal: Hosts are still pending from the last
// rotation and would lose the only certificate they trust.
type StrandError struct{ Hosts []string }

func (e *StrandError) Error() string {
	return fmt.Sprintf("%d agent(s) still pending from the last rotation trust only the previous certificate, which a new rotation would replace: %s",
		len(e.Hosts), strings.Join(e.Hosts, ", "))
}

// wouldStrand lists the registry agents still pending from the last rotation
// (state) that have not been seen on its serial.
func (r *Rotator) wouldStrand(state *State) ([]string, error) {
	current := ""
	if state != nil {
		current = state.CurrentSerial
	}
	agents, err := r.listAgents()
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, rec := range agents {
		if status(rec) == registry.StatusPending && (current == "" || rec.Get(registry.FieldDispatcherSerial) != current) {
			hosts = append(hosts, rec.Hostname())
		}
	}
	return hosts, nil
}

// saved is a file's content before rotation touched it (nil = absent).
type saved struct {
	path string
	data []byte
	mode os.FileMode // 0 = a ctrl-exec key: pki.WriteCtrlExecKey's mode and group
}

func save(path string, mode os.FileMode) (saved, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return saved{path: path, mode: mode}, nil
	}
	if err != nil {
		return saved{}, err
	}
	return saved{path: path, data: data, mode: mode}, nil
}

// write puts data at the saved file's path with its mode (and group).
func (s saved) write(data []byte) error {
	if s.mode == 0 {
		return pki.WriteCtrlExecKey(s.path, data)
	}
	return atomicfile.Write(s.path, data, s.mode)
}

// SavedPair is a ctrl-exec key and certificate as they were before
// something replaced them (setup-ctrl-exec), to put back as they were.
type SavedPair [2]saved

// SavePair reads keyPath and certPath (either may be absent).
func SavePair(keyPath, certPath string) (SavedPair, error) {
	key, err := save(keyPath, 0)
	if err != nil {
		return SavedPair{}, err
	}
	cert, err := save(certPath, 0o644)
	return SavedPair{key, cert}, err
}

// Restore puts both files back as they were: content, mode and group, or
// absent.
func (p SavedPair) Restore() error {
	return errors.Join(p[0].restore(), p[1].restore())
}

// restore puts the file back as it was.
func (s saved) restore() error {
	if s.data == nil {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return s.write(s.data)
}

// rotateLocked rotates from the state at rev (Store.Load's).
func (r *Rotator) rotateLocked(rev int64) (Result, error) {
	now := r.now()
	fail := func(err error) (Result, error) {
		r.Log.Error().Str("ERROR", err.Error()).Msg("cert-rotation-fail")
		return Result{}, &Warning{Msg: "cert generation failed: " + err.Error()}
	}

	// A new identity this store cannot share would be undone by the next
	// sync: change nothing (no serial used, no file touched).
	if err := r.store().Shareable(); err != nil {
		return Result{}, fmt.Errorf("not rotating the ctrl-exec certificate: %w", err)
	}
	// Everything rotation may replace, so a failure can put it all back.
	var files []saved
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{r.KeyPath(), 0}, {r.CertPath(), 0o644}, {r.PrevKeyPath(), 0}, {r.PrevCertPath(), 0o644}} {
		s, err := save(f.path, f.mode)
		if err != nil {
			return fail(fmt.Errorf("read %s: %w", f.path, err))
		}
		files = append(files, s)
	}
	oldKey, oldCert := files[0], files[1]
	restoreAll := func() {
		for _, s := range files {
			if err := s.restore(); err != nil {
				r.Log.Error().Str("ERROR", fmt.Sprintf("restore %s: %v", s.path, err)).Msg("cert-rotation-fail")
			}
		}
	}

	old := ""
	if oldCert.data != nil {
		if c, err := pki.ParseCertPEM(oldCert.data); err == nil {
			old = pki.SerialHex(c)
		}
	}
	ca, err := pki.LoadCA(pki.CAFilesIn(r.CADir))
	if err != nil {
		return fail(err)
	}
	ca.Serials = r.Serials

	// D-25: the old pair stays usable for agents that only trust it.
	if oldKey.data != nil && oldCert.data != nil {
		if err := files[2].write(oldKey.data); err != nil {
			restoreAll()
			return fail(fmt.Errorf("keep the previous key as %s: %w", r.PrevKeyPath(), err))
		}
		if err := files[3].write(oldCert.data); err != nil {
			restoreAll()
			return fail(fmt.Errorf("keep the previous cert as %s: %w", r.PrevCertPath(), err))
		}
	}

	days := r.CertDays
	if days <= 0 {
		days = DefaultCertDays
	}
	bits := r.KeyBits
	if bits <= 0 {
		bits = pki.KeyBitsFromEnv()
	}
	// The new serial is at least 0x01000000, so Perl agents' helper
	// (8 to 40 hex digits) accepts it (B-3).
	cert, err := ca.IssueCtrlExecCert(r.KeyPath(), r.CertPath(), bits, days, now)
	if err != nil {
		restoreAll()
		return fail(err)
	}
	serial := pki.SerialHex(cert)
	if serial == "" {
		return Result{}, &Warning{Msg: "cannot read new cert serial after rotation"}
	}

	overlap := pki.ISOTime(now.Add(time.Duration(r.OverlapDays) * 24 * time.Hour))
	state := &State{
		CurrentSerial:  serial,
		PreviousSerial: old,
		RotatedAt:      pki.ISOTime(now),
		OverlapExpires: overlap,
		OverlapDays:    r.OverlapDays,
	}
	agents, err := r.listAgents()
	if err == nil {
		var id *Identity
		id, err = ReadIdentity(r.CADir)
		if err == nil && id.Serial() != serial {
			err = fmt.Errorf("%s changed while rotating; not publishing it", r.CertPath())
		}
		if err == nil {
			// Never publish a pair that does not belong together.
			if _, perr := tls.X509KeyPair(id.Cert, id.Key); perr != nil {
				err = fmt.Errorf("%s and %s do not match after rotating; not publishing them: %w", r.KeyPath(), r.CertPath(), perr)
			}
		}
		if err == nil {
			err = r.store().Replace(rev, state, id)
		}
	}
	if err != nil {
		// Without rotation state no agent would ever hear of the new
		// serial: put the old certificate back instead; or, when another
		// node rotated first, take its identity, which is now everyone's.
		if errors.Is(err, ErrChanged) {
			if took, serr := r.store().Resync(r.CADir); took && serr == nil {
				return Result{}, err
			} else if serr != nil {
				r.Log.Error().Str("ERROR", serr.Error()).Msg("cert-rotation-fail")
			}
		}
		restoreAll()
		return Result{}, err
	}
	// Mark every agent, even past a failure: an agent left "current" on
	// the old serial would never be broadcast to.
	var markErr error
	for _, rec := range agents {
		if _, err := r.Registry.Merge(rec.Hostname(), map[string]any{
			registry.FieldSerialStatus:    registry.StatusPending,
			registry.FieldSerialBroadcast: pki.ISOTime(now),
		}); err != nil && markErr == nil {
			markErr = err
		}
	}
	if markErr != nil {
		return Result{}, fmt.Errorf("rotated to serial %s, but marking agents pending failed (agents not marked keep the old serial and must be re-paired): %w", serial, markErr)
	}
	r.Log.Info().Str("OLD_SERIAL", old).Str("NEW_SERIAL", serial).Str("OVERLAP_EXPIRES", overlap).
		Int("AGENTS", len(agents)).Msg("cert-rotated")
	if r.AfterRotate != nil {
		r.AfterRotate()
	}
	return Result{Rotated: true, Serial: serial, OldSerial: old, OverlapExpires: overlap, AgentsPending: len(agents)}, nil
}

// listAgents is the registry, with unusable files logged and skipped, and
// records whose hostname cannot name a registry file dropped (they cannot
// be updated either).
func (r *Rotator) listAgents() ([]registry.Record, error) {
	recs, skipped, err := r.Registry.List()
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		r.Log.Warn().Str("PATH", s.Path).Str("ERROR", s.Err.Error()).Msg("registry-skip")
	}
	out := recs[:0]
	for _, rec := range recs {
		if registry.ValidHostname(rec.Hostname()) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// status is a record's serial_status, "unknown" when missing.
func status(rec registry.Record) string {
	if s := rec.Get(registry.FieldSerialStatus); s != "" {
		return s
	}
	return registry.StatusUnknown
}

// Report is one agent's broadcast outcome.
type Report struct {
	Hostname string
	OK       bool
	Error    string // why not, when !OK
}

// identity is one ctrl-exec key pair as a dispatch client.
type identity struct {
	name   string // "current" or "previous", for errors
	client *dispatch.Client
}

// Broadcast is broadcast_serial (§15.2.4): run update-ctrl-exec-serial with
// the current serial on every registry agent whose serial_status is pending
// or unknown, at most dispatch.MaxHosts per call (B-22), and mark those that
// succeed current.
//
// An agent still pending trusts only the previous certificate, so it is
// reached with the .prev pair while that exists; one already on the new
// serial (its record's dispatcher_serial says so) with the current pair.
// An agent that answers "serial mismatch" is tried once more with the other
// pair: the registry can lag behind the agent (a reply lost after the agent
// stored the serial, a re-pairing).
//
// A broadcast that cannot start (no client certificate) is logged as
// serial-broadcast-error and reports nothing, as upstream.
func (r *Rotator) Broadcast(ctx context.Context) ([]Report, error) {
	var reports []Report
	err := r.locked(func() error {
		var err error
		reports, err = r.broadcastLocked(ctx)
		return err
	})
	return reports, err
}

func (r *Rotator) broadcastLocked(ctx context.Context) ([]Report, error) {
	state, _, err := r.store().Load(r.Log)
	if err != nil {
		return nil, err
	}
	if state == nil || state.CurrentSerial == "" {
		return nil, nil
	}
	serial := state.CurrentSerial
	all, err := r.listAgents()
	if err != nil {
		return nil, err
	}
	var targets []registry.Record
	for _, rec := range all {
		if s := status(rec); s == registry.StatusPending || s == registry.StatusUnknown {
			targets = append(targets, rec)
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	names := make([]string, len(targets))
	for i, rec := range targets {
		names[i] = rec.Hostname()
	}
	r.Log.Info().Str("HOSTS", strings.Join(names, ",")).Str("SERIAL", serial).Msg("serial-broadcast")

	current, previous, err := r.identities()
	if err != nil {
		r.Log.Error().Str("ERROR", err.Error()).Msg("serial-broadcast-error")
		return nil, nil
	}

	addrs := registry.Addresses(ctx, targets, r.Lookup)
	reqid := pki.NewReqID()
	// Which pair to try first for each agent, and the other one.
	first := make([]*identity, len(targets))
	second := make([]*identity, len(targets))
	for i, rec := range targets {
		first[i], second[i] = current, previous
		if previous != nil && rec.Get(registry.FieldDispatcherSerial) != serial {
			first[i], second[i] = previous, current
		}
	}
	results := make([]dispatch.RunResult, len(targets))
	r.dispatch(ctx, reqid, serial, addrs, first, results, nil)
	retry := make([]bool, len(targets))
	for i, res := range results {
		retry[i] = second[i] != nil && res.Str("error") == "forbidden: serial mismatch"
	}
	r.dispatch(ctx, reqid, serial, addrs, second, results, retry)

	reports := make([]Report, len(targets))
	for i, rec := range targets {
		host := rec.Hostname()
		reports[i] = Report{Hostname: host}
		if code, ok := results[i].Exit(); ok && code == 0 {
			_, err := r.Registry.Merge(host, map[string]any{
				registry.FieldSerialStatus:     registry.StatusCurrent,
				registry.FieldDispatcherSerial: serial,
				registry.FieldSerialConfirmed:  pki.ISOTime(r.now()),
			})
			if err == nil {
				reports[i].OK = true
				r.Log.Info().Str("AGENT", host).Msg("serial-confirmed")
				continue
			}
			reports[i].Error = "serial stored on the agent, but the registry update failed: " + err.Error()
		} else if results[i].Defined("error") {
			reports[i].Error = results[i].Str("error")
		} else {
			if !ok {
				code = -1
			}
			reports[i].Error = "exit " + strconv.FormatInt(code, 10)
		}
		r.Log.Warn().Str("AGENT", host).Str("ERROR", reports[i].Error).Msg("serial-broadcast-fail")
	}
	return reports, nil
}

// dispatch runs the serial script on the agents whose index is selected
// (nil = all) with each one's identity, a batch of at most MaxHosts per call
// and identity, storing each result at the agent's index.
func (r *Rotator) dispatch(ctx context.Context, reqid, serial string, addrs []string, ids []*identity, results []dispatch.RunResult, selected []bool) {
	groups := map[*identity][]int{}
	var order []*identity
	for i, id := range ids {
		if id == nil || (selected != nil && !selected[i]) {
			continue
		}
		if _, seen := groups[id]; !seen {
			order = append(order, id)
		}
		groups[id] = append(groups[id], i)
	}
	for _, id := range order {
		idx := groups[id]
		for start := 0; start < len(idx); start += dispatch.MaxHosts {
			batch := idx[start:min(start+dispatch.MaxHosts, len(idx))]
			hosts := make([]string, len(batch))
			for j, i := range batch {
				hosts[j] = addrs[i]
			}
			out, err := id.client.Run(ctx, dispatch.RunRequest{
				Hosts: hosts, Script: SerialScript, Args: []string{serial}, ReqID: reqid,
			})
			if err != nil {
				r.Log.Error().Str("ERROR", fmt.Sprintf("%s certificate: %v", id.name, err)).Msg("serial-broadcast-error")
				for _, i := range batch {
					var o wire.Object
					o.Set("exit", -1)
					o.Set("error", err.Error())
					results[i] = dispatch.RunResult{Object: o}
				}
				continue
			}
			for j, i := range batch {
				results[i] = out[j]
			}
		}
	}
}

// identities loads the current pair (required) and the .prev pair (nil
// when absent) once, as dispatch clients that reuse that TLS material for
// every batch, so a clean-up deleting .prev midway changes nothing.
func (r *Rotator) identities() (current, previous *identity, err error) {
	base := r.Client
	if base == nil {
		return nil, nil, errors.New("no dispatch client")
	}
	mk := func(name, cert, key string) (*identity, error) {
		cfg, err := tlsx.LoadClientConfig(cert, key, base.CA)
		if err != nil {
			return nil, err
		}
		c := *base
		c.TLSConfig = func() (*tls.Config, error) { return cfg, nil }
		c.Progress, c.AfterPing = nil, nil
		return &identity{name: name, client: &c}, nil
	}
	current, err = mk("current", base.Cert, base.Key)
	if err != nil {
		return nil, nil, err
	}
	if !r.havePrev() {
		return current, nil, nil
	}
	previous, err = mk("previous", r.PrevCertPath(), r.PrevKeyPath())
	if err != nil {
		// Agents on the old serial stay pending; say why once.
		r.Log.Warn().Str("ERROR", err.Error()).Msg("serial-broadcast-error")
		return current, nil, nil
	}
	return current, previous, nil
}

func (r *Rotator) havePrev() bool {
	for _, p := range []string{r.PrevCertPath(), r.PrevKeyPath()} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// ExpireStale is expire_stale_agents (§15.2.5): once the overlap window has
// passed, every agent still pending becomes stale (it must be re-paired).
func (r *Rotator) ExpireStale(ctx context.Context) error {
	return r.locked(func() error {
		state, _, err := r.store().Load(r.Log)
		if err != nil || state == nil || !r.overlapOver(state) {
			return err
		}
		agents, err := r.listAgents()
		if err != nil {
			return err
		}
		for _, rec := range agents {
			if status(rec) != registry.StatusPending {
				continue
			}
			host := rec.Hostname()
			changed := false
			_, err := r.Registry.Update(host, func(cur registry.Record) error {
				if status(cur) != registry.StatusPending {
					return errUnchanged // confirmed meanwhile
				}
				cur[registry.FieldSerialStatus] = registry.StatusStale
				changed = true
				return nil
			})
			if err != nil && !errors.Is(err, errUnchanged) {
				return err
			}
			if changed {
				r.Log.Warn().Str("AGENT", host).Str("REASON", "overlap window expired without confirmation").Msg("serial-stale")
			}
		}
		return nil
	})
}

var errUnchanged = errors.New("record unchanged")

// overlapOver reports whether now is past overlap_expires (an unreadable
// time never expires anything, as upstream).
func (r *Rotator) overlapOver(state *State) bool {
	if state.OverlapExpires == "" {
		return false
	}
	t, err := pki.ParseISOTime(state.OverlapExpires)
	return err == nil && r.now().After(t)
}

// CleanupPrev deletes the .prev pair once it has no use left: no registry
// agent is pending, or the overlap window is over (D-25). It reports
// whether it deleted anything.
func (r *Rotator) CleanupPrev(ctx context.Context) (bool, error) {
	removed := false
	err := r.locked(func() error {
		if !r.havePrev() {
			if _, err := os.Stat(r.PrevKeyPath()); err == nil {
				// A lone key without its cert is of no use either.
				removed = true
				return os.Remove(r.PrevKeyPath())
			}
			return nil
		}
		state, _, err := r.store().Load(r.Log)
		if err != nil {
			return err
		}
		if state == nil || !r.overlapOver(state) {
			agents, err := r.listAgents()
			if err != nil {
				return err
			}
			for _, rec := range agents {
				if status(rec) == registry.StatusPending {
					return nil
				}
			}
		}
		for _, p := range []string{r.PrevKeyPath(), r.PrevCertPath()} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", p, err)
			}
		}
		removed = true
		// The other nodes' copies go too (a shared store).
		cert, err := os.ReadFile(r.CertPath())
		if err != nil {
			return err
		}
		return r.store().DropPrevious(cert)
	})
	return removed, err
}

// AnyPending reports whether some registry agent is pending.
func (r *Rotator) AnyPending() (bool, error) {
	agents, err := r.listAgents()
	if err != nil {
		return false, err
	}
	for _, rec := range agents {
		if status(rec) == registry.StatusPending {
			return true, nil
		}
	}
	return false, nil
}
