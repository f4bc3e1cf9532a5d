package bpf

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MACPrefix is a MAC address prefix such as a Neutron dvr_base_mac
// (fa:16:3f:00:00:00/24). Bits past the length are zero. The zero value is
// the invalid /0 prefix. MACPrefix is comparable.
type MACPrefix struct {
	addr [6]byte
	bits uint8
}

// MACPrefixFrom returns the prefix of the first bits bits of mac (1..48).
func MACPrefixFrom(mac net.HardwareAddr, bits int) (MACPrefix, error) {
	if len(mac) != 6 {
		return MACPrefix{}, fmt.Errorf("mac prefix %s: not a 48-bit MAC", mac)
	}
	if bits < 1 || bits > 48 {
		return MACPrefix{}, fmt.Errorf("mac prefix %s/%d: length not in 1..48", mac, bits)
	}
	var p MACPrefix
	p.bits = uint8(bits)
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

// ParseMACPrefix parses the brain's "aa:bb:cc:dd:ee:ff/len" form; without
// "/len" the prefix is the whole MAC (/48).
func ParseMACPrefix(s string) (MACPrefix, error) {
	macStr, lenStr, hasLen := strings.Cut(s, "/")
	mac, err := net.ParseMAC(macStr)
	if err != nil {
		return MACPrefix{}, fmt.Errorf("parse mac prefix %q: %w", s, err)
	}
	bits := 48
	if hasLen {
		bits, err = strconv.Atoi(lenStr)
		if err != nil {
			return MACPrefix{}, fmt.Errorf("parse mac prefix %q: length: %w", s, err)
		}
	}
	p, err := MACPrefixFrom(mac, bits)
	if err != nil {
		return MACPrefix{}, fmt.Errorf("parse mac prefix %q: %w", s, err)
	}
	return p, nil
}

// MustParseMACPrefix is ParseMACPrefix that panics on error, for tests and
// constants.
func MustParseMACPrefix(s string) MACPrefix {
	p, err := ParseMACPrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Addr is the prefix's address, zero past Bits.
func (p MACPrefix) Addr() net.HardwareAddr { return append(net.HardwareAddr(nil), p.addr[:]...) }

// Bits is the prefix length; 0 means the zero (invalid) MACPrefix.
func (p MACPrefix) Bits() int { return int(p.bits) }

// IsValid reports whether p has a length (the zero MACPrefix has none).
func (p MACPrefix) IsValid() bool { return p.bits > 0 }

// Contains reports whether mac lies inside the prefix.
func (p MACPrefix) Contains(mac net.HardwareAddr) bool {
	if !p.IsValid() || len(mac) != 6 {
		return false
	}
	q, _ := MACPrefixFrom(mac, int(p.bits))
	return q == p
}

func (p MACPrefix) String() string {
	return fmt.Sprintf("%s/%d", net.HardwareAddr(p.addr[:]), p.bits)
}
