package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Hand-built frames for the program tests. The IPv4 header checksum is
// right (bridges with br_netfilter drop bad ones); L4 checksums are zero.

const (
	etARP  = 0x0806
	etIPv4 = 0x0800
	etIPv6 = 0x86dd
	etQ    = 0x8100
	etAD   = 0x88a8
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// eth builds an Ethernet header; tags are VLAN tags as (TPID, VID) pairs,
// outermost first.
func eth(dst, src string, ethertype uint16, tags ...[2]uint16) []byte {
	b := cat(mustMAC(dst), mustMAC(src))
	for _, t := range tags {
		b = cat(b, be16(t[0]), be16(t[1]))
	}
	return cat(b, be16(ethertype))
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func arp(op uint16, sha string, spa string, tha string, tpa string) []byte {
	return cat(be16(1), be16(etIPv4), []byte{6, 4}, be16(op),
		mustMAC(sha), netip.MustParseAddr(spa).AsSlice(),
		mustMAC(tha), netip.MustParseAddr(tpa).AsSlice())
}

// ipv4 builds an IPv4 header (with optLen bytes of NOP options) + payload.
func ipv4(proto byte, src, dst string, fragOff uint16, optLen int, payload []byte) []byte {
	ihl := (20 + optLen) / 4
	h := []byte{byte(0x40 | ihl), 0}
	h = cat(h, be16(uint16(20+optLen+len(payload))), be16(0), be16(fragOff), []byte{64, proto}, be16(0),
		netip.MustParseAddr(src).AsSlice(), netip.MustParseAddr(dst).AsSlice())
	for range optLen {
		h = append(h, 1) // NOP
	}
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return cat(h, payload)
}

func udp(sport, dport uint16, payload []byte) []byte {
	return cat(be16(sport), be16(dport), be16(uint16(8+len(payload))), be16(0), payload)
}

func tcp(sport, dport uint16) []byte {
	return cat(be16(sport), be16(dport), make([]byte, 16))
}

func ipv6(nh byte, src, dst string, payload []byte) []byte {
	h := []byte{0x60, 0, 0, 0}
	h = cat(h, be16(uint16(len(payload))), []byte{nh, 255},
		netip.MustParseAddr(src).AsSlice(), netip.MustParseAddr(dst).AsSlice())
	return cat(h, payload)
}

// ext6 is an 8-byte IPv6 extension header (hop-by-hop, destination options,
// routing) before a payload whose protocol is nh.
func ext6(nh byte, payload []byte) []byte {
	return cat([]byte{nh, 0, 1, 4, 0, 0, 0, 0}, payload) // PadN
}

func frag6(nh byte, offset uint16, payload []byte) []byte {
	return cat([]byte{nh, 0}, be16(offset<<3), []byte{0, 0, 0, 1}, payload)
}

// icmp6nd builds an NS (135) or NA (136) for target, or an RA (134) / other
// type with target ignored.
func icmp6(typ byte, target string) []byte {
	b := []byte{typ, 0, 0, 0, 0, 0, 0, 0}
	if target != "" {
		b = cat(b, netip.MustParseAddr(target).AsSlice())
	}
	return b
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoHop    = 0
	protoRoute  = 43
	protoFrag   = 44
	protoDst    = 60
	protoICMPv6 = 58
)
