package pairing

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// DefaultCertDays is the lifetime of a pairing certificate when ctrl-exec.conf
// sets no cert_days (D-18): upstream's fixed 825 days.
const DefaultCertDays = 825

// Approver approves and denies queued requests (§11.6), for the approve and
// deny commands and for interactive pairing-mode alike.
type Approver struct {
	Queue        *Queue
	CA           pki.CAFiles // normally pki.CAFilesIn("/etc/ctrl-exec")
	CtrlExecCert string      // its serial is delivered to the agent
	Registry     *registry.Registry
	Serials      pki.SerialCounter // shared serial counter (etcd); nil: ca.serial alone
	CertDays     int               // lifetime of issued certs; <= 0 means DefaultCertDays
	Now          func() time.Time
	Log          zerolog.Logger
}

// Approval is the outcome of a successful Approve.
type Approval struct {
	ReqID    string
	Hostname string
	Cert     *x509.Certificate
}

// NoRequestError is the §3.7 failure for an unknown reqid.
type NoRequestError struct{ ReqID string }

func (e *NoRequestError) Error() string { return fmt.Sprintf("No pending request '%s'", e.ReqID) }

// Approve signs the request's CSR and leaves the approval for the server
// holding the agent's connection: the registry record first, then
// {reqid}.approved, so an agent that has its certificate is always listed.
// If the approval file cannot be written, the registry is put back.
//
// Approvals and denials of one queue are serialised with a lock on the
// queue directory, so a request is never signed twice.
func (a *Approver) Approve(reqid string) (*Approval, error) {
	if !a.Queue.has(reqid) {
		return nil, &NoRequestError{ReqID: reqid}
	}
	var out *Approval
	err := a.Queue.lock(func() error {
		var err error
		out, err = a.approveLocked(reqid)
		return err
	})
	return out, err
}

func (a *Approver) approveLocked(reqid string) (*Approval, error) {
	req, err := a.Queue.Get(reqid)
	if errors.Is(err, errNoRequest) {
		return nil, &NoRequestError{ReqID: reqid}
	}
	if err != nil {
		return nil, err
	}
	if what, done := a.Queue.answered(reqid); done {
		if !a.Queue.held(reqid) {
			return nil, fmt.Errorf("request '%s' was %s, but the pairing-mode holding its agent stopped before delivering the answer: "+
				"deny it to clear it, then have the agent request pairing again", reqid, what)
		}
		return nil, fmt.Errorf("request '%s' is already %s; its answer waits for delivery to the agent", reqid, what)
	}
	// A Perl pairing server queues whatever it is sent; re-check here
	// what the Go server checks on receipt (B-14).
	if err := registry.CheckHostname(req.Hostname); err != nil {
		return nil, fmt.Errorf("request '%s': %w; deny it", reqid, err)
	}
	if err := checkCSR([]byte(req.CSR), req.Hostname); err != nil {
		return nil, fmt.Errorf("request '%s': %w; deny it", reqid, err)
	}
	if _, err := os.Stat(a.CA.Serial); err != nil {
		return nil, fmt.Errorf("Cannot open serial file for locking: %w", err)
	}
	ca, err := pki.LoadCA(a.CA)
	if err != nil {
		return nil, err
	}
	ca.Serials = a.Serials
	days := a.CertDays
	if days <= 0 {
		days = DefaultCertDays
	}
	now := a.now()
	cert, err := ca.SignCSR([]byte(req.CSR), days, now, pki.SignOptions{}) // under flock(ca.serial)
	if err != nil {
		return nil, err
	}
	dispSerial := ""
	if c, err := pki.LoadCert(a.CtrlExecCert); err == nil {
		dispSerial = pki.SerialHex(c)
	}

	rec := registry.Record{
		registry.FieldHostname:         req.Hostname,
		registry.FieldIP:               req.IP,
		registry.FieldPaired:           pki.ISOTime(now),
		registry.FieldExpiry:           pki.FormatOpenSSLDate(cert.NotAfter),
		registry.FieldReqID:            reqid,
		registry.FieldDispatcherSerial: dispSerial,
		registry.FieldSerialStatus:     registry.StatusUnknown,
		registry.FieldSerialBroadcast:  "",
		registry.FieldSerialConfirmed:  "",
		registry.FieldAgentSerial:      pki.SerialHex(cert),
		// Until a server hands the certificate over (then the mark goes),
		// list-agents shows this agent as not confirmed.
		registry.FieldCertDelivery: registry.DeliveryPending,
	}
	if dispSerial != "" {
		rec[registry.FieldSerialStatus] = registry.StatusCurrent
		rec[registry.FieldSerialConfirmed] = pki.ISOTime(now)
	}
	if req.Port > 0 {
		rec[registry.FieldPort] = fmt.Sprint(req.Port)
	}
	if req.Tags != nil { // targeting by tag works before any ping or discover
		tags := make(map[string]any, len(req.Tags))
		for k, v := range req.Tags {
			tags[k] = v
		}
		rec[registry.FieldTags] = tags
		rec[registry.FieldTagsUpdated] = pki.ISOTime(now)
	}
	previous, prevErr := a.Registry.Get(req.Hostname)
	if err := a.Registry.Put(rec); err != nil {
		return nil, err
	}
	body := wire.JSON(Approved{
		Status:           "approved",
		Cert:             string(pki.CertPEM(cert)),
		CA:               string(ca.CertPEM),
		Nonce:            req.Nonce,
		DispatcherSerial: dispSerial,
	})
	if err := a.Queue.writeAnswer(reqid, extApproved, body); err != nil {
		err = fmt.Errorf("write approval for '%s': %w", reqid, err)
		if rerr := a.restoreRegistry(req.Hostname, previous, prevErr); rerr != nil {
			err = fmt.Errorf("%w; %w", err, rerr)
		}
		return nil, err
	}
	a.Log.Info().Str("AGENT", req.Hostname).Str("REQID", reqid).Msg("pair-approve")
	return &Approval{ReqID: reqid, Hostname: req.Hostname, Cert: cert}, nil
}

// restoreRegistry undoes the registry write of a failed approval and says
// what it could not undo.
func (a *Approver) restoreRegistry(hostname string, previous registry.Record, prevErr error) error {
	switch {
	case prevErr == nil:
		if err := a.Registry.Put(previous); err != nil {
			return fmt.Errorf("restoring the previous registry record for '%s' also failed: %w", hostname, err)
		}
	case errors.Is(prevErr, registry.ErrNotFound):
		if _, err := a.Registry.Delete(hostname); err != nil {
			return fmt.Errorf("removing the registry record for '%s' also failed (it names an agent without a certificate): %w", hostname, err)
		}
	default:
		return fmt.Errorf("the previous registry record for '%s' was unreadable (%v) and has been replaced by the new one", hostname, prevErr)
	}
	return nil
}

// Deny answers the request with a denial and removes it from the queue; the
// server holding the agent's connection delivers the denial. It returns the
// hostname the request named ("?" if unreadable).
func (a *Approver) Deny(reqid string) (string, error) {
	if !a.Queue.has(reqid) {
		return "", &NoRequestError{ReqID: reqid}
	}
	var host string
	err := a.Queue.lock(func() error {
		var err error
		host, err = a.denyLocked(reqid)
		return err
	})
	return host, err
}

func (a *Approver) denyLocked(reqid string) (string, error) {
	if !a.Queue.has(reqid) {
		return "", &NoRequestError{ReqID: reqid}
	}
	host := "?"
	if req, err := a.Queue.Get(reqid); err == nil && req.Hostname != "" {
		host = req.Hostname
	}
	if what, done := a.Queue.answered(reqid); done {
		if a.Queue.held(reqid) {
			return "", fmt.Errorf("request '%s' is already %s; its answer waits for delivery to the agent", reqid, what)
		}
		// Its server is gone (killed before delivering): nobody can be
		// told, so the denial is the clean-up.
		a.Queue.remove(reqid, extRequest, extApproved, extDenied)
		DropUndelivered(a.Registry, host, reqid, a.Log)
		a.Log.Info().Str("AGENT", host).Str("REQID", reqid).Msg("pair-deny")
		return host, nil
	}
	// A record from an approval cut short before its answer was written.
	DropUndelivered(a.Registry, host, reqid, a.Log)
	if err := a.Queue.writeAnswer(reqid, extDenied, deniedBody(ReasonRejected)); err != nil {
		return "", fmt.Errorf("write denial for '%s': %w", reqid, err)
	}
	a.Queue.remove(reqid, extRequest)
	a.Log.Info().Str("AGENT", host).Str("REQID", reqid).Msg("pair-deny")
	return host, nil
}

func (a *Approver) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// DropUndelivered removes hostname's registry record if an approval of reqid
// wrote it and its certificate was never handed over: the agent does not
// have it. A record of any other pairing is left alone.
func DropUndelivered(reg *registry.Registry, hostname, reqid string, log zerolog.Logger) {
	if reg == nil || !registry.ValidHostname(hostname) {
		return
	}
	rec, err := reg.Get(hostname)
	if err != nil || rec.Get(registry.FieldReqID) != reqid || rec.Get(registry.FieldCertDelivery) != registry.DeliveryPending {
		return
	}
	if _, err := reg.Delete(hostname); err != nil {
		log.Error().Str("AGENT", hostname).Str("REQID", reqid).Str("ERROR", err.Error()).Msg("registry-error")
	}
}

// confirmDelivered clears the delivery mark of hostname's record once the
// approval of reqid has been handed to the agent.
func confirmDelivered(reg *registry.Registry, hostname, reqid string, log zerolog.Logger) {
	if reg == nil || !registry.ValidHostname(hostname) {
		return
	}
	errOther := errors.New("not this approval's record")
	_, err := reg.Update(hostname, func(rec registry.Record) error {
		if rec.Get(registry.FieldReqID) != reqid {
			return errOther // missing, or re-paired since
		}
		delete(rec, registry.FieldCertDelivery)
		return nil
	})
	if err != nil && !errors.Is(err, errOther) {
		log.Error().Str("AGENT", hostname).Str("REQID", reqid).Str("ERROR", err.Error()).Msg("registry-error")
	}
}

// RecoverOrphans clears, when pairing-mode starts, the approved requests no
// live server holds: their agents' connections died with the pairing-mode
// that queued them (say it was killed), so the approval can never reach
// them. Their queue files go, and so does the registry record of the
// certificate never delivered. Unanswered requests are left to approve,
// deny or stale expiry, as upstream. It returns how many it cleared.
func RecoverOrphans(q *Queue, reg *registry.Registry, log zerolog.Logger) int {
	n := 0
	q.lock(func() error {
		ids, err := q.requestIDs()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if what, done := q.answered(id); !done || what != "approved" || q.held(id) {
				continue
			}
			host := "?"
			if req, err := q.Get(id); err == nil && req.Hostname != "" {
				host = req.Hostname
			}
			q.remove(id, extRequest, extApproved, extDenied)
			DropUndelivered(reg, host, id, log)
			log.Warn().Str("AGENT", host).Str("REQID", id).Str("REASON", "server-gone").Msg("pair-abandon")
			n++
		}
		return nil
	})
	return n
}
