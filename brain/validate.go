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
		return invalid(field, "%q must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", v)
	}
	return nil
}

// normalizeMAC parses a unicast Ethernet MAC and returns it lowercase with colons.
func normalizeMAC(field, v string) (string, error) {
	hw, err := macaddr.Parse(v)
	if err != nil {
		return "", invalid(field, "%q is not a 48-bit MAC address", v)
	}
	if macaddr.IsMulticast(hw) {
		return "", invalid(field, "%q is a multicast MAC address; a port needs a unicast MAC", v)
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
			return "", invalid("dvr_base_mac", "%q: prefix length must be a number from 8 to 48", v)
		}
		bits = n
	}
	hw, err := macaddr.Parse(macPart)
	if err != nil {
		return "", invalid("dvr_base_mac", "%q is not a MAC prefix like fa:16:3f:00:00:00/24", v)
	}
	p, err := macaddr.PrefixFrom(hw, bits)
	if err != nil {
		return "", invalid("dvr_base_mac", "%q is not a MAC prefix like fa:16:3f:00:00:00/24", v)
	}
	return p.String(), nil
}

func checkURL(field, v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(field, "%q is not an http(s) URL", v)
	}
	return nil
}

func parsePrefix(field, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, invalid(field, "%q is not a CIDR", v)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, invalid(field, "%q must not carry a zone", v)
	}
	return p.Masked(), nil
}

func parseAddr(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, invalid(field, "%q is not an IP address", v)
	}
	return a.Unmap(), nil
}
