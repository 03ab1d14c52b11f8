package tlsx

import (
	"bytes"
	"crypto/tls"
	"slices"
	"sync/atomic"
)

// ResumePolicy says whether a session whose client certificate has the
// canonical serial peerSerial may be resumed now. It is asked at every
// resumption attempt, so it answers from the current revocation list and
// stored serial: a ticket issued before a revocation or a rotation is
// declined and the client falls back to a full handshake.
type ResumePolicy func(peerSerial string) bool

// ticketSerialTag marks the SessionState.Extra entry that records the
// serial of the client certificate a ticket was issued to.
var ticketSerialTag = []byte("ctrl-exec/peer-serial=")

// ResumingAgentServerConfig is AgentServerConfig with TLS 1.3 session
// tickets on, so a control host that keeps sessions skips both signatures
// on a repeat contact.
//
// A resumed handshake gets every check a full one gets: VerifyConnection
// verifies the session's client chain (with expiry) against the CA loaded
// now, as on a full handshake (Go calls VerifyConnection, not
// VerifyPeerCertificate, on resumption); mayResume is asked first and can
// decline the ticket; and the caller's per-connection revocation and
// stored-serial checks read the session's certificate from
// ConnectionState.PeerCertificates as they would a presented one.
//
// Tickets are encrypted under keys made at random by this config (Go rotates
// them daily and accepts them for at most 7 days), never written anywhere,
// so a restarted agent accepts no ticket from before the restart. TLS 1.2
// clients get no tickets: TLS 1.2 resumption has no fresh key exchange.
func ResumingAgentServerConfig(id *Identity, mayResume ResumePolicy) *tls.Config {
	keys := &tls.Config{} // holds the ticket keys for the process's lifetime
	type resumable struct {
		st  *identityState
		cfg *tls.Config
	}
	var cur atomic.Pointer[resumable]
	forState := func(st *identityState) *tls.Config {
		if r := cur.Load(); r != nil && r.st == st {
			return r.cfg
		}
		cfg := st.agent.Clone()
		cfg.SessionTicketsDisabled = false
		cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, append(slices.Clip(ticketSerialTag), PeerSerialHex(cs)...))
			return keys.EncryptTicket(cs, ss)
		}
		cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			if cs.Version != tls.VersionTLS13 {
				return nil, nil
			}
			ss, err := keys.DecryptTicket(identity, cs)
			if ss == nil || err != nil {
				return nil, err
			}
			serial, ok := ticketSerial(ss)
			if !ok || !mayResume(serial) {
				return nil, nil // full handshake
			}
			return ss, nil
		}
		cur.Store(&resumable{st: st, cfg: cfg})
		return cfg
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: TLS12CipherSuites(),
		ClientAuth:   tls.RequireAnyClientCert,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			st := id.cur.Load()
			if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
				return st.agent, nil
			}
			return forState(st), nil
		},
	}
}

// ticketSerial reads the serial WrapSession recorded in a ticket.
func ticketSerial(ss *tls.SessionState) (string, bool) {
	for _, e := range ss.Extra {
		if s, ok := bytes.CutPrefix(e, ticketSerialTag); ok && len(s) > 0 {
			return string(s), true
		}
	}
	return "", false
}
