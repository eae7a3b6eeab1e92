package collector

import (
	"net"
	"net/http"
	"strings"
)

// clientIPs finds a request's client address.
type clientIPs struct {
	trusted []*net.IPNet
}

func (c clientIPs) isTrusted(ip net.IP) bool {
	for _, n := range c.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// of returns the client address of r: the peer, or, when the peer is a
// trusted proxy, the rightmost X-Forwarded-For hop that is not a trusted
// proxy (the hops left of it were written by whoever the client is, and
// can be anything). nil when there is none.
func (c clientIPs) of(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || !c.isTrusted(ip) {
		return ip
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			hop := net.ParseIP(strings.TrimSpace(parts[j]))
			if hop == nil {
				return ip // garbage: go no further left than the last proxy we trust
			}
			if !c.isTrusted(hop) {
				return hop
			}
			ip = hop
		}
	}
	return ip
}

// truncateIP keeps the network part: IPv4 /24, IPv6 /48 (the address of a
// neighbourhood, not a household).
func truncateIP(ip net.IP) string {
	if ip == nil {
		return ""
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String()
}
