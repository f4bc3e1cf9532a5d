package bpf

import (
	"bytes"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/l2span/l2span/internal/macaddr"
)

// BPF_PROG_TEST_RUN runs a TC program on the loopback device of the test's
// namespace: skb->ifindex is 1, so the tests key their map entries on 1.
const testIfindex = 1

const (
	retPass = ^uint32(0) // TC_ACT_UNSPEC (-1)
	retDrop = 2          // TC_ACT_SHOT
)

func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN)")
	}
}

// loadUnpinned loads the objects with private maps (no bpffs needed).
func loadUnpinned(t testing.TB) *l2spanObjects {
	t.Helper()
	requireBPF(t)
	spec, err := loadL2span()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var objs l2spanObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

const (
	ownDVR    = "fa:16:3f:aa:bb:01" // this gateway's DVR MAC (pod "a")
	vmMAC     = "fa:16:3e:00:00:01" // an ordinary Neutron port MAC
	routerMAC = "fa:16:3e:00:00:fe"
	bcast     = "ff:ff:ff:ff:ff:ff"
	gw4       = "203.0.113.254"
	gw6       = "2001:db8::fffe"
)

// fill programs the maps as Set would for one interface (loopback).
func fill(t testing.TB, objs *l2spanObjects, prefixes []string, gws []string) {
	t.Helper()
	var v l2spanDvrVal
	copy(v.Mac[:], mustMAC(ownDVR))
	for _, p := range prefixes {
		if err := objs.L2sDvr.Put(dvrKey(testIfindex, macaddr.MustParsePrefix(p)), v); err != nil {
			t.Fatal(err)
		}
	}
	putGateways(t, objs, testIfindex, gws...)
}

// putGateways sets an interface's gateway IPs as Set would.
func putGateways(t testing.TB, objs *l2spanObjects, ifindex uint32, gws ...string) {
	t.Helper()
	var ips []netip.Addr
	for _, g := range gws {
		ips = append(ips, netip.MustParseAddr(g))
	}
	if err := validateGatewayIPs(ips); err != nil {
		t.Fatal(err)
	}
	if err := putGatewayVal(objs, ifindex, gwLayout(l2spanGwVal{}, ips)); err != nil {
		t.Fatal(err)
	}
}

type progCase struct {
	name    string
	egress  bool // l2s_to_pod; else l2s_to_overlay
	frame   []byte
	wantRet uint32
	wantAct string
	wantSrc string // egress: the source MAC after the run ("" = unchanged)
}

func TestPrograms(t *testing.T) {
	objs := loadUnpinned(t)
	fill(t, objs,
		[]string{
			"fa:16:40:00:00:00/24", // pod 1's dvr_base_mac: three octets
			"fa:16:3f:02:00:00/32", // pod 2: four octets (4th octet not 00)
			"fa:16:3f:03:40:00/36", // pod 3: not on a byte boundary
			"02:00:5e:10:00:07/48", // one exact MAC
			"0e:00:00:00:00:00/7",  // a short, odd one
		},
		[]string{gw4, gw6, "198.51.100.1"})
	// An entry for another interface must not apply here.
	var other l2spanDvrVal
	copy(other.Mac[:], mustMAC("fa:16:3f:ee:ee:ee"))
	if err := objs.L2sDvr.Put(dvrKey(testIfindex+1000, macaddr.MustParsePrefix("fa:16:3f:09:00:00/32")), other); err != nil {
		t.Fatal(err)
	}
	putGateways(t, objs, testIfindex+1000, "203.0.113.9")

	ipPayload := ipv4(protoTCP, "203.0.113.1", "203.0.113.2", 0, 0, tcp(40000, 80))
	q := [2]uint16{etQ, 100}
	ad := [2]uint16{etAD, 200}

	cases := []progCase{
		// DVR rewrite (from the overlay toward the pod).
		{name: "dvr /24 match", egress: true, frame: cat(eth(vmMAC, "fa:16:40:01:23:45", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr /24 miss by one bit", egress: true, frame: cat(eth(vmMAC, "fa:16:41:01:23:45", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "dvr /32 match", egress: true, frame: cat(eth(vmMAC, "fa:16:3f:02:00:99", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr /32 miss", egress: true, frame: cat(eth(vmMAC, "fa:16:3f:12:00:99", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "dvr /36 match", egress: true, frame: cat(eth(vmMAC, "fa:16:3f:03:4f:ff", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr /36 miss", egress: true, frame: cat(eth(vmMAC, "fa:16:3f:03:50:00", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "dvr /48 match", egress: true, frame: cat(eth(vmMAC, "02:00:5e:10:00:07", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr /48 miss", egress: true, frame: cat(eth(vmMAC, "02:00:5e:10:00:08", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "dvr /7 match", egress: true, frame: cat(eth(vmMAC, "0f:12:34:56:78:9a", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "ordinary vm mac", egress: true, frame: cat(eth(vmMAC, "fa:16:3e:01:23:45", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "own dvr mac", egress: true, frame: cat(eth(vmMAC, ownDVR, etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "prefix of another interface", egress: true, frame: cat(eth(vmMAC, "fa:16:3f:09:00:01", etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToPod},
		{name: "dvr 802.1Q tagged", egress: true, frame: cat(eth(vmMAC, "fa:16:40:01:00:02", etIPv4, q), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr QinQ tagged", egress: true, frame: cat(eth(vmMAC, "fa:16:40:01:00:02", etIPv4, ad, q), ipPayload), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "dvr arp frame", egress: true, frame: cat(eth(bcast, "fa:16:40:01:00:02", etARP), arp(1, "fa:16:40:01:00:02", "203.0.113.7", "00:00:00:00:00:00", "203.0.113.8")), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "egress bare header", egress: true, frame: eth(vmMAC, "fa:16:40:01:00:02", 0x1234), wantRet: retPass, wantAct: ActionRewritten, wantSrc: ownDVR},
		{name: "egress dhcp is not filtered", egress: true, frame: cat(eth(bcast, vmMAC, etIPv4), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, make([]byte, 32)))), wantRet: retPass, wantAct: ActionPassedToPod},

		// Isolation (from the pod toward the overlay).
		{name: "tcp passes", frame: cat(eth(vmMAC, routerMAC, etIPv4), ipPayload), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "dhcp discover", frame: cat(eth(bcast, vmMAC, etIPv4), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, make([]byte, 240)))), wantRet: retDrop, wantAct: ActionDroppedDHCP},
		{name: "dhcp offer", frame: cat(eth(vmMAC, routerMAC, etIPv4), ipv4(protoUDP, "203.0.113.253", "203.0.113.5", 0, 0, udp(67, 68, make([]byte, 240)))), wantRet: retDrop, wantAct: ActionDroppedDHCP},
		{name: "dhcp with ip options", frame: cat(eth(bcast, vmMAC, etIPv4), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 12, udp(68, 67, nil))), wantRet: retDrop, wantAct: ActionDroppedDHCP},
		{name: "dhcp 802.1Q tagged", frame: cat(eth(bcast, vmMAC, etIPv4, q), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))), wantRet: retDrop, wantAct: ActionDroppedDHCP},
		{name: "dhcp QinQ tagged", frame: cat(eth(bcast, vmMAC, etIPv4, ad, q), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))), wantRet: retDrop, wantAct: ActionDroppedDHCP},
		{name: "three tags are not parsed", frame: cat(eth(bcast, vmMAC, etIPv4, ad, q, q), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "udp 53 passes", frame: cat(eth(vmMAC, routerMAC, etIPv4), ipv4(protoUDP, "203.0.113.1", "203.0.113.2", 0, 0, udp(68, 53, nil))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "dhcp port in a non-first fragment", frame: cat(eth(bcast, vmMAC, etIPv4), ipv4(protoUDP, "203.0.113.1", "203.0.113.2", 100, 0, udp(68, 67, nil))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "dhcpv6 solicit", frame: cat(eth("33:33:00:01:00:02", vmMAC, etIPv6), ipv6(protoUDP, "fe80::1", "ff02::1:2", udp(546, 547, make([]byte, 20)))), wantRet: retDrop, wantAct: ActionDroppedDHCPv6},
		{name: "dhcpv6 advertise", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoUDP, "fe80::2", "fe80::1", udp(547, 546, nil))), wantRet: retDrop, wantAct: ActionDroppedDHCPv6},
		{name: "dhcpv6 behind hop-by-hop and dst opts", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoHop, "fe80::2", "fe80::1", ext6(protoDst, ext6(protoUDP, udp(547, 546, nil))))), wantRet: retDrop, wantAct: ActionDroppedDHCPv6},
		{name: "dhcpv6 in first fragment", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoFrag, "fe80::2", "fe80::1", frag6(protoUDP, 0, udp(547, 546, nil)))), wantRet: retDrop, wantAct: ActionDroppedDHCPv6},
		{name: "dhcpv6 port in later fragment", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoFrag, "fe80::2", "fe80::1", frag6(protoUDP, 10, udp(547, 546, nil)))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "dhcpv6 802.1Q tagged", frame: cat(eth("33:33:00:01:00:02", vmMAC, etIPv6, q), ipv6(protoUDP, "fe80::1", "ff02::1:2", udp(546, 547, nil))), wantRet: retDrop, wantAct: ActionDroppedDHCPv6},
		{name: "udp6 other port", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoUDP, "2001:db8::1", "2001:db8::2", udp(546, 53, nil))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "five ext headers are not followed", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoHop, "fe80::2", "fe80::1", ext6(protoDst, ext6(protoRoute, ext6(protoDst, ext6(protoDst, ext6(protoUDP, udp(547, 546, nil)))))))), wantRet: retPass, wantAct: ActionPassedToOverlay},

		{name: "arp request for gateway", frame: cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", gw4)), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "arp reply from gateway", frame: cat(eth(vmMAC, routerMAC, etARP), arp(2, routerMAC, gw4, vmMAC, "203.0.113.5")), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "arp request from gateway for a vm", frame: cat(eth(bcast, routerMAC, etARP), arp(1, routerMAC, gw4, "00:00:00:00:00:00", "203.0.113.5")), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "gratuitous arp of gateway", frame: cat(eth(bcast, routerMAC, etARP), arp(1, routerMAC, gw4, "00:00:00:00:00:00", gw4)), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "arp for second subnet gateway", frame: cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "198.51.100.5", "00:00:00:00:00:00", "198.51.100.1")), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "arp 802.1Q tagged for gateway", frame: cat(eth(bcast, vmMAC, etARP, q), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", gw4)), wantRet: retDrop, wantAct: ActionDroppedARP},
		{name: "arp for another ip", frame: cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", "203.0.113.6")), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "arp reply from another ip", frame: cat(eth(vmMAC, routerMAC, etARP), arp(2, routerMAC, "203.0.113.6", vmMAC, "203.0.113.5")), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "arp for another interface's gateway", frame: cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", "203.0.113.9")), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "rarp-like op 3 for gateway", frame: cat(eth(bcast, vmMAC, etARP), arp(3, vmMAC, "203.0.113.5", "00:00:00:00:00:00", gw4)), wantRet: retPass, wantAct: ActionPassedToOverlay},

		{name: "ns for gateway", frame: cat(eth("33:33:ff:00:ff:fe", vmMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::5", "ff02::1:ff00:fffe", icmp6(135, gw6))), wantRet: retDrop, wantAct: ActionDroppedND},
		{name: "dad ns for gateway", frame: cat(eth("33:33:ff:00:ff:fe", vmMAC, etIPv6), ipv6(protoICMPv6, "::", "ff02::1:ff00:fffe", icmp6(135, gw6))), wantRet: retDrop, wantAct: ActionDroppedND},
		{name: "na for gateway", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoICMPv6, gw6, "2001:db8::5", icmp6(136, gw6))), wantRet: retDrop, wantAct: ActionDroppedND},
		{name: "ns from gateway for a vm", frame: cat(eth("33:33:ff:00:00:05", routerMAC, etIPv6), ipv6(protoICMPv6, gw6, "ff02::1:ff00:5", icmp6(135, "2001:db8::5"))), wantRet: retDrop, wantAct: ActionDroppedND},
		{name: "ns 802.1Q tagged for gateway", frame: cat(eth("33:33:ff:00:ff:fe", vmMAC, etIPv6, q), ipv6(protoICMPv6, "2001:db8::5", "ff02::1:ff00:fffe", icmp6(135, gw6))), wantRet: retDrop, wantAct: ActionDroppedND},
		{name: "ns for another address", frame: cat(eth("33:33:ff:00:00:06", vmMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::5", "ff02::1:ff00:6", icmp6(135, "2001:db8::6"))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "na for another address", frame: cat(eth(vmMAC, routerMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::6", "2001:db8::5", icmp6(136, "2001:db8::6"))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ra", frame: cat(eth("33:33:00:00:00:01", routerMAC, etIPv6), ipv6(protoICMPv6, "fe80::fe", "ff02::1", icmp6(134, ""))), wantRet: retDrop, wantAct: ActionDroppedRA},
		{name: "ra 802.1Q tagged", frame: cat(eth("33:33:00:00:00:01", routerMAC, etIPv6, q), ipv6(protoICMPv6, "fe80::fe", "ff02::1", icmp6(134, ""))), wantRet: retDrop, wantAct: ActionDroppedRA},
		{name: "rs passes", frame: cat(eth("33:33:00:00:00:02", vmMAC, etIPv6), ipv6(protoICMPv6, "fe80::5", "ff02::2", icmp6(133, ""))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "echo request to gateway passes", frame: cat(eth(routerMAC, vmMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::5", gw6, icmp6(128, ""))), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "icmpv4 to gateway passes", frame: cat(eth(routerMAC, vmMAC, etIPv4), ipv4(protoICMP, "203.0.113.5", gw4, 0, 0, make([]byte, 8))), wantRet: retPass, wantAct: ActionPassedToOverlay},

		// Truncated and malformed: pass unharmed. The kernel's test run
		// refuses an untagged IPv4 (IPv6) frame shorter than its IP header,
		// so those cases hide behind a tag the program skips.
		{name: "bare ethernet header ipv4 (tagged)", frame: eth(bcast, vmMAC, etIPv4, q), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "bare ethernet header ipv6 (tagged)", frame: eth(bcast, vmMAC, etIPv6, q), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "bare ethernet header arp", frame: eth(bcast, vmMAC, etARP), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "vlan tag cut short", frame: cat(eth(bcast, vmMAC, etQ), []byte{0, 100}), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "truncated arp for gateway", frame: cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", gw4)[:27]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "arp with wrong hlen", frame: cat(eth(bcast, vmMAC, etARP), func() []byte { a := arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", gw4); a[4] = 8; return a }()), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "truncated ipv4 header (tagged)", frame: cat(eth(bcast, vmMAC, etIPv4, q), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))[:19]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv4 without udp header", frame: cat(eth(bcast, vmMAC, etIPv4), ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))[:24]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv4 ihl too small", frame: cat(eth(bcast, vmMAC, etIPv4), func() []byte {
			p := ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))
			p[0] = 0x43
			return p
		}()), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv4 ihl past the end", frame: cat(eth(bcast, vmMAC, etIPv4), func() []byte {
			p := ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))
			p[0] = 0x4f
			return p
		}()), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv4 wrong version", frame: cat(eth(bcast, vmMAC, etIPv4), func() []byte {
			p := ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, nil))
			p[0] = 0x65
			return p
		}()), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "truncated ipv6 header (tagged)", frame: cat(eth(bcast, vmMAC, etIPv6, q), ipv6(protoUDP, "fe80::1", "ff02::1:2", udp(546, 547, nil))[:39]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv6 without udp header", frame: cat(eth(bcast, vmMAC, etIPv6), ipv6(protoUDP, "fe80::1", "ff02::1:2", udp(546, 547, nil))[:44]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv6 ext header cut short", frame: cat(eth(bcast, vmMAC, etIPv6), ipv6(protoHop, "fe80::1", "ff02::1:2", ext6(protoUDP, udp(546, 547, nil)))[:45]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv6 ext header length past the end", frame: cat(eth(bcast, vmMAC, etIPv6), ipv6(protoHop, "fe80::1", "ff02::1:2", func() []byte { e := ext6(protoUDP, udp(546, 547, nil)); e[1] = 255; return e }())), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ns for gateway cut before target", frame: cat(eth("33:33:ff:00:ff:fe", vmMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::5", "ff02::1:ff00:fffe", icmp6(135, gw6))[:40+20]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "icmpv6 cut to 2 bytes", frame: cat(eth("33:33:00:00:00:01", routerMAC, etIPv6), ipv6(protoICMPv6, "fe80::fe", "ff02::1", icmp6(134, ""))[:42]), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "ipv6 wrong version", frame: cat(eth("33:33:00:00:00:01", routerMAC, etIPv6), func() []byte { p := ipv6(protoICMPv6, "fe80::fe", "ff02::1", icmp6(134, "")); p[0] = 0x40; return p }()), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "unknown ethertype", frame: cat(eth(bcast, vmMAC, 0x88cc), make([]byte, 40)), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "garbage after ipv4 ethertype", frame: cat(eth(bcast, vmMAC, etIPv4), bytes.Repeat([]byte{0xff}, 64)), wantRet: retPass, wantAct: ActionPassedToOverlay},
		{name: "garbage after ipv6 ethertype", frame: cat(eth(bcast, vmMAC, etIPv6), bytes.Repeat([]byte{0x6f}, 64)), wantRet: retPass, wantAct: ActionPassedToOverlay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runCase(t, objs, c) })
	}
}

func runCase(t *testing.T, objs *l2spanObjects, c progCase) {
	t.Helper()
	prog := objs.L2sToOverlay
	if c.egress {
		prog = objs.L2sToPod
	}
	before, err := readCounters(objs.L2sCounters)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(c.frame)+256)
	opts := &ebpf.RunOptions{Data: c.frame, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if ret != c.wantRet {
		t.Errorf("return %d, want %d", int32(ret), int32(c.wantRet))
	}
	out = opts.DataOut
	if len(out) != len(c.frame) {
		t.Fatalf("frame length %d after run, want %d", len(out), len(c.frame))
	}
	want := append([]byte(nil), c.frame...)
	if c.wantSrc != "" {
		copy(want[6:12], mustMAC(c.wantSrc))
	}
	if !bytes.Equal(out, want) {
		t.Errorf("frame after run:\n got %x\nwant %x", out, want)
	}
	after, err := readCounters(objs.L2sCounters)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		d := after[a] - before[a]
		switch {
		case a == c.wantAct && d != 1:
			t.Errorf("counter %s went up by %d, want 1", a, d)
		case a != c.wantAct && d != 0:
			t.Errorf("counter %s went up by %d, want 0", a, d)
		}
	}
}

// TestVerifierLoad loads the objects exactly as the Manager does but with
// private maps, proving the committed .o passes this kernel's verifier.
func TestVerifierLoad(t *testing.T) {
	objs := loadUnpinned(t)
	for name, p := range map[string]*ebpf.Program{"l2s_to_overlay": objs.L2sToOverlay, "l2s_to_pod": objs.L2sToPod} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != name {
			t.Errorf("program name %q, want %q", info.Name, name)
		}
	}
}
