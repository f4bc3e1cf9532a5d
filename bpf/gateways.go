package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// Gateway IPs live in one value per interface (struct gw_val in l2span.c):
// at most MaxGatewayIPv4 IPv4 and MaxGatewayIPv6 IPv6 addresses, compared
// inline by the programs after a single lookup. Interfaces whose ifindex is
// below the size of the l2s_gwip array (GW_DIRECT) use that array, whose
// lookup the verifier inlines; higher ifindexes use the l2s_gwip_hi hash.
//
// Array elements are overwritten in place, and a frame racing the update may
// read a byte-wise mix of old and new. So gwLayout never moves an address
// that stays: its bytes never change and it is never missed. Removed
// addresses leave all-ones holes (255.255.255.255 and ffff:...:ffff, which
// no ARP or ND worth keeping in the pod carries) that new addresses fill.

// The programs compare a frame's addresses with an interface's gateway IPs
// inline, so their number is bounded.
const (
	MaxGatewayIPv4 = 8 // MAX_GW4 in l2span.c
	MaxGatewayIPv6 = 8 // MAX_GW6 in l2span.c
)

var (
	hole4 = [4]byte{0xff, 0xff, 0xff, 0xff}
	hole6 = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// gwEmpty is what a removed interface's array element holds: no addresses
// (n4 = n6 = 0), every position a hole.
func gwEmpty() l2spanGwVal {
	var v l2spanGwVal
	for i := range v.V4 {
		v.V4[i] = hole4
	}
	for i := range v.V6 {
		v.V6[i] = hole6
	}
	return v
}

// splitGateways returns the distinct IPv4 (IPv4-mapped IPv6 included) and
// IPv6 addresses of ips, each sorted. Zones are dropped: the programs
// compare bare addresses.
func splitGateways(ips []netip.Addr) (v4, v6 []netip.Addr) {
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if !ip.IsValid() || seen[ip] {
			continue
		}
		seen[ip] = true
		if ip.Is4() {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	return v4, v6
}

func validateGatewayIPs(ips []netip.Addr) error {
	for _, ip := range ips {
		if !ip.IsValid() {
			return errors.New("invalid gateway ip")
		}
		if u := ip.Unmap(); (u.Is4() && u.As4() == hole4) || (u.Is6() && u.As16() == hole6) {
			return fmt.Errorf("invalid gateway ip %s", ip)
		}
	}
	v4, v6 := splitGateways(ips)
	if len(v4) > MaxGatewayIPv4 {
		return fmt.Errorf("%d distinct IPv4 gateway ips, at most %d per interface", len(v4), MaxGatewayIPv4)
	}
	if len(v6) > MaxGatewayIPv6 {
		return fmt.Errorf("%d distinct IPv6 gateway ips, at most %d per interface", len(v6), MaxGatewayIPv6)
	}
	return nil
}

// gwAddrs lists the addresses a value holds, sorted (IPv4 first).
func gwAddrs(v l2spanGwVal) []netip.Addr {
	var out []netip.Addr
	for i := 0; i < int(min(v.N4, uint32(len(v.V4)))); i++ {
		if v.V4[i] != hole4 {
			out = append(out, netip.AddrFrom4(v.V4[i]))
		}
	}
	for i := 0; i < int(min(v.N6, uint32(len(v.V6)))); i++ {
		if v.V6[i] != hole6 {
			out = append(out, netip.AddrFrom16(v.V6[i]))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// gwLayout is the value holding want (validated, from splitGateways) that
// keeps every address of old that stays at its position.
func gwLayout(old l2spanGwVal, want []netip.Addr) l2spanGwVal {
	v := gwEmpty()
	v4, v6 := splitGateways(want)
	v.N4 = layout(v.V4[:], old.V4[:min(old.N4, uint32(len(old.V4)))], v4, hole4, netip.Addr.As4)
	v.N6 = layout(v.V6[:], old.V6[:min(old.N6, uint32(len(old.V6)))], v6, hole6, netip.Addr.As16)
	return v
}

func layout[T [4]byte | [16]byte](dst, old []T, want []netip.Addr, hole T, as func(netip.Addr) T) uint32 {
	wanted := map[T]bool{}
	for _, ip := range want {
		wanted[as(ip)] = true
	}
	placed := map[T]bool{}
	used := make([]bool, len(dst))
	for i, a := range old {
		if a != hole && wanted[a] && !placed[a] {
			dst[i], used[i], placed[a] = a, true, true
		}
	}
	for _, ip := range want {
		a := as(ip)
		if placed[a] {
			continue
		}
		i := slices.Index(used, false)
		if i < 0 {
			panic("gwLayout: more gateway ips than validate allows")
		}
		dst[i], used[i], placed[a] = a, true, true
	}
	n := 0
	for i, u := range used {
		if u {
			n = i + 1
		}
	}
	return uint32(n)
}

func sameAddrs(a, b []netip.Addr) bool { return slices.Equal(a, b) }

func fmtGWEntry(ifindex uint32, ips []netip.Addr) string {
	return fmt.Sprintf("if%d %v", ifindex, ips)
}

// gwDirect is the first ifindex kept in the hash instead of the array.
func (m *Manager) gwDirect() uint32 { return m.objs.L2sGwip.MaxEntries() }

func (m *Manager) putGateways(ifindex uint32, v l2spanGwVal) error {
	return putGatewayVal(&m.objs, ifindex, v)
}

func putGatewayVal(objs *l2spanObjects, ifindex uint32, v l2spanGwVal) error {
	if ifindex < objs.L2sGwip.MaxEntries() {
		return objs.L2sGwip.Put(ifindex, v)
	}
	return objs.L2sGwipHi.Put(ifindex, v)
}

func (m *Manager) deleteGateways(ifindex uint32) error {
	if ifindex < m.gwDirect() {
		return m.objs.L2sGwip.Put(ifindex, gwEmpty())
	}
	err := m.objs.L2sGwipHi.Delete(ifindex)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// readGateways returns what the programs consult (see gwHeld).
func (m *Manager) readGateways() (map[uint32]l2spanGwVal, error) {
	n := m.gwDirect()
	keys := make([]uint32, n)
	vals := make([]l2spanGwVal, n)
	var cursor ebpf.MapBatchCursor
	got, err := m.objs.L2sGwip.BatchLookup(&cursor, keys, vals, nil)
	switch {
	case err == nil || errors.Is(err, ebpf.ErrKeyNotExist):
		keys, vals = keys[:got], vals[:got]
	case errors.Is(err, ebpf.ErrNotSupported):
		keys, vals = keys[:0], vals[:0]
		var v l2spanGwVal
		for k := uint32(0); k < n; k++ {
			if err := m.objs.L2sGwip.Lookup(k, &v); err != nil {
				return nil, fmt.Errorf("read gateway ip array: %w", err)
			}
			keys, vals = append(keys, k), append(vals, v)
		}
	default:
		return nil, fmt.Errorf("read gateway ip array: %w", err)
	}
	hi := map[uint32]l2spanGwVal{}
	var k uint32
	var v l2spanGwVal
	it := m.objs.L2sGwipHi.Iterate()
	for it.Next(&k, &v) {
		hi[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read gateway ip hash: %w", err)
	}
	return gwHeld(n, keys, vals, hi), nil
}

// gwHeld is, per ifindex, the value the programs look up when it holds any
// address: the array element below direct, the hash entry from direct on.
// Whatever else the maps hold is never consulted, so it is left out: a hash
// entry below direct must not shadow the array element (Set would then
// compare against the wrong value), and an element is empty only when both
// counts are zero (a sum may wrap).
func gwHeld(direct uint32, keys []uint32, vals []l2spanGwVal, hi map[uint32]l2spanGwVal) map[uint32]l2spanGwVal {
	gw := map[uint32]l2spanGwVal{}
	for i, k := range keys {
		if k < direct && (vals[i].N4 > 0 || vals[i].N6 > 0) {
			gw[k] = vals[i]
		}
	}
	for k, v := range hi {
		if k >= direct {
			gw[k] = v
		}
	}
	return gw
}

// gwUpdate is the value to write so that an interface whose entry reads
// back as old (held false: none) holds exactly want (validated, from
// splitGateways), and false when it already does.
func gwUpdate(old l2spanGwVal, held bool, want []netip.Addr) (l2spanGwVal, bool) {
	if held && sameAddrs(gwAddrs(old), want) {
		return old, false
	}
	return gwLayout(old, want), true
}
