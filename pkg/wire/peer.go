package wire

import (
	"net"
	"net/netip"
)

// NormalizeIP turns a remote address ("1.2.3.4:5678", "[::ffff:1.2.3.4]:80",
// "::1") into the bare IP used for every PEER value and hook source_ip:
// port and brackets removed, IPv4-mapped IPv6 written as dotted IPv4, IPv6
// in canonical form. Anything unparsable comes back without its port,
// otherwise unchanged.
func NormalizeIP(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else if len(addr) > 1 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		host = addr[1 : len(addr)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}
