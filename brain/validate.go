package brain

import (
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
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

// NormalizeMAC parses a unicast Ethernet MAC and returns it lowercase with colons.
func NormalizeMAC(field, v string) (string, error) {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 {
		return "", invalid(field, "%q is not a 48-bit MAC address", v)
	}
	if hw[0]&1 == 1 {
		return "", invalid(field, "%q is a multicast MAC address; a port needs a unicast MAC", v)
	}
	if hw.String() == "00:00:00:00:00:00" {
		return "", invalid(field, "the all-zero MAC address is reserved")
	}
	return hw.String(), nil
}

// normalizeDVRBaseMAC accepts `aa:bb:cc:dd:ee:ff/len` (len 8..48, a multiple
// of 8 is not required) or a bare MAC meaning /24, Neutron's default
// dvr_base_mac convention of three fixed octets.
func normalizeDVRBaseMAC(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	macPart, bits := v, 24
	if i := strings.IndexByte(v, '/'); i >= 0 {
		macPart = v[:i]
		n, err := strconv.Atoi(v[i+1:])
		if err != nil || n < 8 || n > 48 {
			return "", invalid("dvr_base_mac", "%q: prefix length must be a number from 8 to 48", v)
		}
		bits = n
	}
	hw, err := net.ParseMAC(macPart)
	if err != nil || len(hw) != 6 {
		return "", invalid("dvr_base_mac", "%q is not a MAC prefix like fa:16:3f:00:00:00/24", v)
	}
	// Clear host bits so equal prefixes compare equal.
	for i := range hw {
		keep := bits - i*8
		switch {
		case keep <= 0:
			hw[i] = 0
		case keep < 8:
			hw[i] &= byte(0xff << (8 - keep))
		}
	}
	return hw.String() + "/" + strconv.Itoa(bits), nil
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
