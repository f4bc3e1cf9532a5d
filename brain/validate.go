package brain

import (
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/l2span/l2span/internal/macaddr"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func checkID(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if !idPattern.MatchString(v) {
		return invalid(field, "%s must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", echo(v))
	}
	return nil
}

// normalizeMAC parses a unicast Ethernet MAC and returns it lowercase with colons.
func normalizeMAC(field, v string) (string, error) {
	hw, err := macaddr.Parse(v)
	if err != nil {
		return "", invalid(field, "%s is not a 48-bit MAC address", echo(v))
	}
	if macaddr.IsMulticast(hw) {
		return "", invalid(field, "%s is a multicast MAC address; a unicast MAC is required", echo(v))
	}
	if macaddr.IsZero(hw) {
		return "", invalid(field, "the all-zero MAC address is reserved")
	}
	return hw.String(), nil
}

// normalizeDVRBaseMAC accepts `aa:bb:cc:dd:ee:ff/len` (len 8..48, a multiple
// of 8 is not required) or a bare MAC meaning macaddr's default /24, and
// returns it as "aa:bb:cc:dd:ee:ff/len" with the host bits cleared, so equal
// prefixes compare equal.
func normalizeDVRBaseMAC(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	macPart, lenPart, hasLen := strings.Cut(v, "/")
	bits := macaddr.DefaultPrefixBits
	if hasLen {
		n, err := strconv.Atoi(lenPart)
		if err != nil || n < 8 || n > 48 {
			return "", invalid("dvr_base_mac", "%s: prefix length must be a number from 8 to 48", echo(v))
		}
		bits = n
	}
	hw, err := macaddr.Parse(macPart)
	if err != nil {
		return "", invalid("dvr_base_mac", "%s is not a MAC prefix like fa:16:3f:00:00:00/24", echo(v))
	}
	// DVR MACs are source MACs of routed frames: the group bit must be clear.
	if macaddr.IsMulticast(hw) {
		return "", invalid("dvr_base_mac", "%s is a multicast MAC prefix; DVR MACs are unicast", echo(v))
	}
	p, err := macaddr.PrefixFrom(hw, bits)
	if err != nil {
		return "", invalid("dvr_base_mac", "%s is not a MAC prefix like fa:16:3f:00:00:00/24", echo(v))
	}
	return p.String(), nil
}

func checkURL(field, v string) error {
	if v == "" {
		return nil
	}
	if err := checkText(field, v, MaxURLLen); err != nil {
		return err
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(field, "%s is not an http(s) URL", echo(v))
	}
	return nil
}

func parsePrefix(field, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, invalid(field, "%s is not a CIDR", echo(v))
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, invalid(field, "%s must not carry a zone", echo(v))
	}
	// Port IPs are unmapped (::ffff:a.b.c.d is a.b.c.d), so a mapped prefix
	// could never hold one: ask for the IPv4 form.
	if p.Addr().Is4In6() {
		return netip.Prefix{}, invalid(field, "%s is an IPv4-mapped IPv6 prefix; write it as IPv4", echo(v))
	}
	return p.Masked(), nil
}

func parseAddr(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, invalid(field, "%s is not an IP address", echo(v))
	}
	return a.Unmap(), nil
}
