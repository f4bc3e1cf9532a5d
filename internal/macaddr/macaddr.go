// Package macaddr is l2span's one way to read Ethernet MAC addresses and MAC
// prefixes (Neutron dvr_base_mac): every layer normalises the same way, so a
// MAC the brain stored compares equal to one read back from the kernel or
// OVSDB.
package macaddr

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrNot48Bit is returned for a MAC that parses but is not 48 bits long
// (EUI-64, InfiniBand).
var ErrNot48Bit = errors.New("not a 48-bit MAC address")

// Parse reads a 48-bit MAC in any form net.ParseMAC accepts.
func Parse(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("parse mac %q: %w", s, err)
	}
	if len(hw) != 6 {
		return nil, fmt.Errorf("parse mac %q: %w", s, ErrNot48Bit)
	}
	return hw, nil
}

// Normalize returns s as lowercase, colon-separated hex ("fa:16:3e:00:00:01").
func Normalize(s string) (string, error) {
	hw, err := Parse(s)
	if err != nil {
		return "", err
	}
	return hw.String(), nil
}

// Canonical is Normalize for values that are compared but not validated (map
// keys of rows read back from a peer): a MAC that does not parse is returned
// lowercased, so it still compares equal to itself in any case.
func Canonical(s string) string {
	if n, err := Normalize(s); err == nil {
		return n
	}
	return strings.ToLower(s)
}

// IsMulticast reports whether the group bit of the first octet is set
// (broadcast included).
func IsMulticast(hw net.HardwareAddr) bool { return len(hw) > 0 && hw[0]&1 == 1 }

// IsZero reports whether hw is the all-zero MAC, which FDBs use for flooding.
func IsZero(hw net.HardwareAddr) bool {
	for _, b := range hw {
		if b != 0 {
			return false
		}
	}
	return true
}

// DefaultPrefixBits is the length of a prefix written as a bare MAC: Neutron's
// dvr_base_mac convention of three fixed octets ("fa:16:3f:00:00:00").
const DefaultPrefixBits = 24

// Prefix is a MAC address prefix such as a Neutron dvr_base_mac
// (fa:16:3f:00:00:00/24). Bits past the length are zero. The zero value is
// the invalid /0 prefix. Prefix is comparable.
type Prefix struct {
	addr [6]byte
	bits uint8
}

// PrefixFrom returns the prefix of the first bits bits of mac (1..48).
func PrefixFrom(mac net.HardwareAddr, bits int) (Prefix, error) {
	if len(mac) != 6 {
		return Prefix{}, fmt.Errorf("mac prefix %s: %w", mac, ErrNot48Bit)
	}
	if bits < 1 || bits > 48 {
		return Prefix{}, fmt.Errorf("mac prefix %s/%d: length not in 1..48", mac, bits)
	}
	p := Prefix{bits: uint8(bits)}
	copy(p.addr[:], mac)
	for i := range p.addr {
		keep := bits - 8*i
		switch {
		case keep <= 0:
			p.addr[i] = 0
		case keep < 8:
			p.addr[i] &= byte(0xff << (8 - keep))
		}
	}
	return p, nil
}

// ParsePrefix reads "aa:bb:cc:dd:ee:ff/len" (len 1..48); a bare MAC means
// DefaultPrefixBits.
func ParsePrefix(s string) (Prefix, error) {
	macStr, lenStr, hasLen := strings.Cut(s, "/")
	mac, err := Parse(macStr)
	if err != nil {
		return Prefix{}, fmt.Errorf("parse mac prefix %q: %w", s, err)
	}
	bits := DefaultPrefixBits
	if hasLen {
		if bits, err = strconv.Atoi(lenStr); err != nil {
			return Prefix{}, fmt.Errorf("parse mac prefix %q: length: %w", s, err)
		}
	}
	p, err := PrefixFrom(mac, bits)
	if err != nil {
		return Prefix{}, fmt.Errorf("parse mac prefix %q: %w", s, err)
	}
	return p, nil
}

// MustParsePrefix is ParsePrefix that panics on error, for tests and
// constants.
func MustParsePrefix(s string) Prefix {
	p, err := ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Addr is the prefix's address with the bits past its length zeroed.
func (p Prefix) Addr() net.HardwareAddr { return append(net.HardwareAddr(nil), p.addr[:]...) }

// Bits is the prefix length.
func (p Prefix) Bits() int { return int(p.bits) }

// IsValid reports whether p is a parsed prefix (length 1..48).
func (p Prefix) IsValid() bool { return p.bits > 0 }

// Contains reports whether mac starts with the prefix.
func (p Prefix) Contains(mac net.HardwareAddr) bool {
	q, err := PrefixFrom(mac, int(p.bits))
	return err == nil && p.IsValid() && q == p
}

// String is the "aa:bb:cc:dd:ee:ff/len" form ParsePrefix reads.
func (p Prefix) String() string {
	return net.HardwareAddr(p.addr[:]).String() + "/" + strconv.Itoa(int(p.bits))
}
