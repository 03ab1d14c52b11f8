package dispatch

import (
	"net"
	"strconv"
	"strings"
)

// DefaultPort is the agent port when neither the host argument nor the
// caller names one.
const DefaultPort = 7443

// Target is one host argument resolved to the address to contact.
type Target struct {
	Arg  string // as the caller gave it, e.g. "web-01:7443"; locks and crash fallbacks use it
	Host string // without the port: what results call "host"
	Port string // decimal digits as given ("07443" stays "07443")

	// Agents are the registry names of the agent that must answer here
	// (D-31): its certificate's CN must be one of them, checked in the
	// handshake. nil: not checked. The client's Identity policy fills it
	// in; a caller that knows the agent (renewal) may set it.
	Agents []string
	// Unregistered marks a target the registry does not know under
	// agent_identity = strict: it is refused without connecting.
	Unregistered bool
}

// ParseTarget splits a host argument (SPEC §2.4, D-3):
//
//	[v6addr]:port, [v6addr]   bracketed IPv6, with or without a port
//	name:port                 ^(.+):(\d+)$, greedy: "fe80::1" is host "fe80:" port "1"
//	name                      defaultPort (DefaultPort when defaultPort <= 0)
func ParseTarget(arg string, defaultPort int) Target {
	if defaultPort <= 0 {
		defaultPort = DefaultPort
	}
	def := strconv.Itoa(defaultPort)
	if strings.HasPrefix(arg, "[") {
		if end := strings.IndexByte(arg, ']'); end > 1 {
			inner, rest := arg[1:end], arg[end+1:]
			switch {
			case rest == "":
				return Target{Arg: arg, Host: inner, Port: def}
			case rest[0] == ':' && allDigits(rest[1:]):
				return Target{Arg: arg, Host: inner, Port: rest[1:]}
			}
		}
	}
	if i := strings.LastIndexByte(arg, ':'); i > 0 && allDigits(arg[i+1:]) {
		return Target{Arg: arg, Host: arg[:i], Port: arg[i+1:]}
	}
	return Target{Arg: arg, Host: arg, Port: def}
}

// allDigits reports whether s is one or more ASCII digits (Perl's \d+ on the
// command line, where non-ASCII digits do not occur in host names).
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Addr is the dial address, IPv6 literals bracketed.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// String is the TARGET of log lines and the name in connect errors:
// "host:port" as upstream prints it, brackets added for an IPv6 literal.
func (t Target) String() string {
	if strings.Contains(t.Host, ":") && net.ParseIP(t.Host) != nil {
		return "[" + t.Host + "]:" + t.Port
	}
	return t.Host + ":" + t.Port
}
