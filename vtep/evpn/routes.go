package evpn

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/vtep"
)

// Route types this backend exchanges (RFC 7432).
const (
	typeMACIP     = "macip"     // type 2
	typeMulticast = "multicast" // type 3
)

// route is one EVPN route of a VNI, ours or the fabric's, reduced to
// what the dataplane needs.
type route struct {
	VNI  uint32
	Type string
	// MAC and IP (type 2; IP invalid for a MAC-only route).
	MAC net.HardwareAddr
	IP  netip.Addr
	// NextHop is the VTEP behind the route (type 3: the flood target).
	NextHop netip.Addr
	// Seq and Sticky are the MAC Mobility extended community (type 2).
	Seq    uint32
	Sticky bool
	// RD and RT (canonical text) are the route's distinguisher and first
	// route target: as read from the RIB, or as the templates make them.
	RD bgp.RouteDistinguisherInterface
	RT string
}

// key names a route within its VNI regardless of its attributes.
type key struct {
	VNI  uint32
	Type string
	MAC  string
	IP   netip.Addr
}

func (r route) key() key {
	return key{VNI: r.VNI, Type: r.Type, MAC: string(r.MAC), IP: r.IP}
}

// community is a route distinguisher or route target in text form
// ("ASN:N", "IPv4:N"), with {vni} and {asn} expanded.
type template string

func (t template) expand(asn, vni uint32) string {
	return strings.NewReplacer("{vni}", strconv.FormatUint(uint64(vni), 10), "{asn}", strconv.FormatUint(uint64(asn), 10)).Replace(string(t))
}

// check validates a template by expanding it for one VNI.
func (t template) check(asn uint32) error {
	_, _, err := parseAdmin(t.expand(asn, 1))
	return err
}

// parseAdmin splits "ADMIN:N" into an administrator (a 2- or 4-byte AS
// number or an IPv4 address) and the assigned number.
func parseAdmin(s string) (admin string, n uint32, err error) {
	a, num, ok := strings.Cut(s, ":")
	if !ok {
		return "", 0, fmt.Errorf("%q: want ADMIN:NUMBER", s)
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("%q: assigned number %q: %w", s, num, err)
	}
	if _, err := netip.ParseAddr(a); err == nil {
		if !strings.Contains(a, ".") {
			return "", 0, fmt.Errorf("%q: administrator must be an IPv4 address or an AS number", s)
		}
		if v > 0xffff {
			return "", 0, fmt.Errorf("%q: with an IPv4 administrator the number must fit 16 bits", s)
		}
		return a, uint32(v), nil
	}
	as, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("%q: administrator %q is neither an AS number nor an IPv4 address", s, a)
	}
	if as > 0xffff && v > 0xffff {
		return "", 0, fmt.Errorf("%q: with a 4-byte AS the number must fit 16 bits", s)
	}
	return a, uint32(v), nil
}

func rd(s string) (bgp.RouteDistinguisherInterface, error) {
	admin, n, err := parseAdmin(s)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		return bgp.NewRouteDistinguisherIPAddressAS(ip.String(), uint16(n)), nil
	}
	as, _ := strconv.ParseUint(admin, 10, 32)
	if as > 0xffff {
		return bgp.NewRouteDistinguisherFourOctetAS(uint32(as), uint16(n)), nil
	}
	return bgp.NewRouteDistinguisherTwoOctetAS(uint16(as), n), nil
}

func rt(s string) (bgp.ExtendedCommunityInterface, error) {
	admin, n, err := parseAdmin(s)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		return bgp.NewIPv4AddressSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, ip.String(), uint16(n), true), nil
	}
	as, _ := strconv.ParseUint(admin, 10, 32)
	if as > 0xffff {
		return bgp.NewFourOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, uint32(as), uint16(n), true), nil
	}
	return bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, uint16(as), n, true), nil
}

// rtString is the canonical text of a route target, for matching.
func rtString(ec bgp.ExtendedCommunityInterface) string { return ec.String() }

// wantExport is what this gateway advertises for cfg: per network one
// type-3 route and, per remote MAC, a MAC-only type-2 route and one per
// IP bound to it, all with next hop self. A MAC the fabric itself
// advertises with a sequence number at least ours, or sticky, is left out:
// the fabric's placement is the newer one (the learner reports it to the
// brain), and GoBGP refuses an older sequence anyway.
func wantExport(cfg vtep.Config, self netip.Addr, fabric map[key]route) map[key]route {
	out := map[key]route{}
	for _, n := range cfg.Networks {
		out[key{VNI: n.VNI, Type: typeMulticast}] = route{VNI: n.VNI, Type: typeMulticast, NextHop: self}
		seqOf := map[string]uint32{}
		for _, m := range n.MACs {
			if len(m.MAC) != 6 || macaddr.IsZero(m.MAC) {
				continue
			}
			if f, ok := fabric[key{VNI: n.VNI, Type: typeMACIP, MAC: string(m.MAC)}]; ok && (f.Sticky || f.Seq >= m.Seq) {
				continue
			}
			seqOf[string(m.MAC)] = m.Seq
			r := route{VNI: n.VNI, Type: typeMACIP, MAC: m.MAC, NextHop: self, Seq: m.Seq}
			out[r.key()] = r
		}
		for _, nb := range n.Neighbors {
			seq, ok := seqOf[string(nb.MAC)]
			if !ok || !nb.IP.IsValid() {
				continue
			}
			r := route{VNI: n.VNI, Type: typeMACIP, MAC: nb.MAC, IP: nb.IP.Unmap(), NextHop: self, Seq: seq}
			out[r.key()] = r
		}
	}
	return out
}

// exportDiff is what to withdraw and what to advertise to go from have
// (our routes in the RIB) to want. A route whose sequence went down (a
// port deleted and made again) is withdrawn before it is advertised again:
// GoBGP refuses a lower sequence than the one it holds. A route under
// another RD than want's (the RD template changed across a restart) is
// withdrawn under its own RD: it is another NLRI, which advertising
// want's would leave in place.
func exportDiff(have []route, want map[key]route) (withdraw, advertise []route) {
	current := map[key]route{}
	for _, r := range have {
		k := r.key()
		w, ok := want[k]
		if !ok || w.Seq < r.Seq || rdString(w.RD) != rdString(r.RD) {
			withdraw = append(withdraw, r)
			continue
		}
		current[k] = r
	}
	for k, w := range want {
		if r, ok := current[k]; !ok || !sameRoute(r, w) || w.Seq < r.Seq {
			advertise = append(advertise, w)
		}
	}
	sortRoutes(withdraw)
	sortRoutes(advertise)
	return withdraw, advertise
}

func rdString(d bgp.RouteDistinguisherInterface) string {
	if d == nil {
		return ""
	}
	return d.String()
}

func sameRoute(a, b route) bool {
	return a.key() == b.key() && a.NextHop == b.NextHop && a.Seq == b.Seq && a.Sticky == b.Sticky &&
		rdString(a.RD) == rdString(b.RD) && a.RT == b.RT
}

func sortRoutes(rs []route) {
	slices.SortFunc(rs, func(a, b route) int {
		return cmp.Or(cmp.Compare(a.VNI, b.VNI), cmp.Compare(b.Type, a.Type), bytes.Compare(a.MAC, b.MAC), a.IP.Compare(b.IP))
	})
}

// imported is the fabric's routes as one gateway sees them: per VNI, the
// MACs behind each fabric VTEP and the VTEPs that take flooded traffic.
type imported struct {
	// byKey holds the best fabric route per key (highest sequence, then
	// lowest next hop).
	byKey map[key]route
}

func newImported(rs []route, self netip.Addr) imported {
	im := imported{byKey: map[key]route{}}
	for _, r := range rs {
		if r.NextHop == self || !r.NextHop.IsValid() {
			continue
		}
		k := r.key()
		if r.Type == typeMulticast {
			k.IP = r.NextHop // one per originating VTEP
		}
		if old, ok := im.byKey[k]; ok && (old.Seq > r.Seq || old.Seq == r.Seq && old.NextHop.Less(r.NextHop)) {
			continue
		}
		im.byKey[k] = r
	}
	return im
}

// macs is the fabric's MAC-only view, keyed as wantExport looks it up:
// one entry per (VNI, MAC), the highest sequence of its routes.
func (im imported) macs() map[key]route {
	out := map[key]route{}
	for _, r := range im.byKey {
		if r.Type != typeMACIP {
			continue
		}
		k := key{VNI: r.VNI, Type: typeMACIP, MAC: string(r.MAC)}
		if old, ok := out[k]; ok && old.Seq >= r.Seq && (old.Sticky || !r.Sticky) {
			continue
		}
		out[k] = route{VNI: r.VNI, Type: typeMACIP, MAC: r.MAC, NextHop: r.NextHop, Seq: r.Seq, Sticky: r.Sticky}
	}
	return out
}

// fabricNetwork is the pod-side VXLAN device's desired FDB for one VNI:
// each fabric MAC to the VTEP that advertised it, flooding to every
// VTEP that sent a type-3 route.
func (im imported) fabricNetwork(vni uint32, ifname string) vtep.Network {
	n := vtep.Network{VNI: vni, LocalInterface: ifname}
	for _, r := range im.macs() {
		if r.VNI == vni {
			n.MACs = append(n.MACs, vtep.MACEntry{MAC: r.MAC, VTEP: r.NextHop, Seq: r.Seq})
		}
	}
	for _, r := range im.byKey {
		if r.VNI == vni && r.Type == typeMulticast {
			n.Flood = append(n.Flood, r.NextHop)
		}
	}
	return n
}

// localMACs is what the learner reports: every fabric MAC with its IPs
// (one LocalMAC per IP, or one without IP), sorted.
func (im imported) localMACs() []vtep.LocalMAC {
	macs := im.macs()
	withIP := map[key]bool{}
	var out []vtep.LocalMAC
	for _, r := range im.byKey {
		if r.Type != typeMACIP || !r.IP.IsValid() {
			continue
		}
		m := macs[key{VNI: r.VNI, Type: typeMACIP, MAC: string(r.MAC)}]
		withIP[key{VNI: r.VNI, MAC: string(r.MAC)}] = true
		out = append(out, vtep.LocalMAC{VNI: r.VNI, MAC: r.MAC, IP: r.IP, Locator: m.NextHop, Sequenced: true, Seq: m.Seq, Sticky: m.Sticky})
	}
	for _, m := range macs {
		if !withIP[key{VNI: m.VNI, MAC: string(m.MAC)}] {
			out = append(out, vtep.LocalMAC{VNI: m.VNI, MAC: m.MAC, Locator: m.NextHop, Sequenced: true, Seq: m.Seq, Sticky: m.Sticky})
		}
	}
	slices.SortFunc(out, func(a, b vtep.LocalMAC) int {
		// IPv4 first: the learner keeps the first IP it sees per MAC.
		return cmp.Or(cmp.Compare(a.VNI, b.VNI), bytes.Compare(a.MAC, b.MAC), cmp.Compare(a.IP.BitLen(), b.IP.BitLen()), a.IP.Compare(b.IP))
	})
	return out
}

// counts per route type, for metrics.
func countTypes(rs map[key]route) (macip, multicast int) {
	for _, r := range rs {
		if r.Type == typeMACIP {
			macip++
		} else {
			multicast++
		}
	}
	return macip, multicast
}
