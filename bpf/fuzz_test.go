package bpf

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
	"testing"
)

// fuzzDirect stands in for GW_DIRECT: small, so fuzz keys land on both sides.
const fuzzDirect = 8

// gwModel is the two pinned gateway maps as the kernel holds them: the array
// (every key below fuzzDirect exists, zero unless written) and the hash.
type gwModel struct {
	arr [fuzzDirect]l2spanGwVal
	hi  map[uint32]l2spanGwVal
}

// read is what readGateways makes of the maps.
func (g *gwModel) read() map[uint32]l2spanGwVal {
	keys := make([]uint32, fuzzDirect)
	for i := range keys {
		keys[i] = uint32(i)
	}
	return gwHeld(fuzzDirect, keys, g.arr[:], maps.Clone(g.hi))
}

// put and del are putGatewayVal and deleteGateways.
func (g *gwModel) put(k uint32, v l2spanGwVal) {
	if k < fuzzDirect {
		g.arr[k] = v
	} else {
		g.hi[k] = v
	}
}

func (g *gwModel) del(k uint32) {
	if k < fuzzDirect {
		g.arr[k] = gwEmpty()
	} else {
		delete(g.hi, k)
	}
}

// kernel is the value the programs look up for ifindex k, if any.
func (g *gwModel) kernel(k uint32) (l2spanGwVal, bool) {
	if k < fuzzDirect {
		return g.arr[k], true
	}
	v, ok := g.hi[k]
	return v, ok
}

// matched lists, by position, the addresses is_gateway4/6 compare a frame
// with (holes left out: all-ones is never an address worth keeping).
func matched(v l2spanGwVal) (v4 map[int]netip.Addr, v6 map[int]netip.Addr) {
	v4, v6 = map[int]netip.Addr{}, map[int]netip.Addr{}
	for i := 0; i < MaxGatewayIPv4 && uint32(i) < v.N4; i++ {
		if v.V4[i] != hole4 {
			v4[i] = netip.AddrFrom4(v.V4[i])
		}
	}
	for i := 0; i < MaxGatewayIPv6 && uint32(i) < v.N6; i++ {
		if v.V6[i] != hole6 {
			v6[i] = netip.AddrFrom16(v.V6[i])
		}
	}
	return v4, v6
}

func matchedSet(v l2spanGwVal) []netip.Addr {
	v4, v6 := matched(v)
	out := append(slices.Collect(maps.Values(v4)), slices.Collect(maps.Values(v6))...)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// sync is the gateway half of Manager.Set: write what differs, delete what
// is no longer wanted; kept interfaces (their attachment was invalid) are
// left as they are. It returns the number of writes.
func (g *gwModel) sync(want map[uint32][]netip.Addr, keep map[uint32]bool) int {
	have := g.read()
	n := 0
	for k, ips := range want {
		old, ok := have[k]
		if v, write := gwUpdate(old, ok, ips); write {
			g.put(k, v)
			n++
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok && !keep[k] {
			g.del(k)
			n++
		}
	}
	return n
}

// decodeGwMaps reads records of one key byte (low nibble the ifindex, high
// bit set: the hash) and a raw struct gw_val, decoded as cilium/ebpf decodes
// a map value (host byte order, the generated struct's layout).
func decodeGwMaps(b []byte) *gwModel {
	g := &gwModel{hi: map[uint32]l2spanGwVal{}}
	size := binary.Size(l2spanGwVal{})
	for len(b) >= 1+size {
		k := uint32(b[0] & 0x0f)
		var v l2spanGwVal
		if err := binary.Read(bytes.NewReader(b[1:1+size]), binary.NativeEndian, &v); err != nil {
			panic(err)
		}
		if b[0]&0x80 != 0 {
			g.hi[k] = v
		} else if k < fuzzDirect {
			g.arr[k] = v
		}
		b = b[1+size:]
	}
	return g
}

// decodeGwWant reads records of one key byte (low nibble the ifindex; bit
// 0x10: an IPv6 address of 16 bytes follows, else IPv4 of 4) and returns the
// desired gateway IPs per interface as desiredEntries does, plus the
// interfaces whose set validate refuses (Set keeps those as they are).
func decodeGwWant(b []byte) (map[uint32][]netip.Addr, map[uint32]bool) {
	raw := map[uint32][]netip.Addr{}
	for len(b) >= 5 {
		k := uint32(b[0] & 0x0f)
		if b[0]&0x10 != 0 && len(b) >= 17 {
			raw[k] = append(raw[k], netip.AddrFrom16([16]byte(b[1:17])))
			b = b[17:]
			continue
		}
		raw[k] = append(raw[k], netip.AddrFrom4([4]byte(b[1:5])))
		b = b[5:]
	}
	want, keep := map[uint32][]netip.Addr{}, map[uint32]bool{}
	for k, ips := range raw {
		if validateGatewayIPs(ips) != nil {
			keep[k] = true
			continue
		}
		v4, v6 := splitGateways(ips)
		want[k] = append(v4, v6...)
	}
	return want, keep
}

func gwSeed(n4, n6 uint32, ips ...string) []byte {
	v := gwEmpty()
	v.N4, v.N6 = n4, n6
	i4, i6 := 0, 0
	for _, s := range ips {
		if a := netip.MustParseAddr(s); a.Is4() {
			v.V4[i4], i4 = a.As4(), i4+1
		} else {
			v.V6[i6], i6 = a.As16(), i6+1
		}
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, v); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// FuzzGatewayReadBack: the gateway IPs read back from the pinned maps may be
// anything (an older agent, a crash mid-update, another writer). Whatever
// they hold, one Set pass leaves every interface the programs consult
// matching exactly the desired addresses, moves no address that stays (a
// frame racing the in-place update never misses it), and a second pass
// writes nothing.
func FuzzGatewayReadBack(f *testing.F) {
	rec := func(key byte, val []byte) []byte { return append([]byte{key}, val...) }
	ip4 := func(key byte, s string) []byte {
		a := netip.MustParseAddr(s).As4()
		return append([]byte{key}, a[:]...)
	}
	ip6 := func(key byte, s string) []byte {
		a := netip.MustParseAddr(s).As16()
		return append([]byte{key | 0x10}, a[:]...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

	f.Add([]byte{}, []byte{})
	// Layout kept: 198.51.100.1 stays at position 1, 192.0.2.1 leaves a hole.
	f.Add(rec(2, gwSeed(2, 1, "192.0.2.1", "198.51.100.1", "2001:db8::1")),
		cat(ip4(2, "198.51.100.1"), ip4(2, "203.0.113.9"), ip6(2, "2001:db8::1")))
	// Counts past the arrays, and a pair whose sum wraps to zero.
	f.Add(cat(rec(1, gwSeed(0xffffffff, 9, "192.0.2.7")), rec(3, gwSeed(0x80000000, 0x80000000, "192.0.2.8"))), []byte{})
	// A hash entry below GW_DIRECT (never looked up) beside the array element.
	f.Add(cat(rec(4, gwSeed(1, 0, "192.0.2.1")), rec(0x84, gwSeed(1, 0, "198.51.100.1"))), ip4(4, "192.0.2.1"))
	// High ifindexes in the hash; one stale, one wanted; duplicates and
	// holes within the bounds; a v4-mapped address in a v6 slot.
	f.Add(cat(rec(0x89, gwSeed(3, 2, "192.0.2.1", "192.0.2.1", "255.255.255.255", "::ffff:192.0.2.1", "2001:db8::2")), rec(0x8a, gwSeed(0, 0))),
		cat(ip4(9, "192.0.2.1"), ip6(9, "2001:db8::2")))
	// An invalid set (a hole address) keeps what the interface holds.
	f.Add(rec(5, gwSeed(1, 0, "192.0.2.5")), ip4(5, "255.255.255.255"))

	f.Fuzz(func(t *testing.T, mapBytes, wantBytes []byte) {
		g := decodeGwMaps(mapBytes)
		want, keep := decodeGwWant(wantBytes)

		before := map[uint32]l2spanGwVal{}
		have := g.read()
		for k := range uint32(16) {
			v, ok := g.kernel(k)
			if !ok {
				continue
			}
			before[k] = v
			if _, seen := have[k]; !seen && len(matchedSet(v)) > 0 {
				t.Fatalf("if%d: the programs match %v but the read-back misses it", k, matchedSet(v))
			}
		}
		for k, v := range have {
			_ = gwAddrs(v)
			_ = fmtGWEntry(k, gwAddrs(v))
		}

		g.sync(want, keep)

		for k := range uint32(16) {
			v, _ := g.kernel(k)
			got := matchedSet(v)
			switch ips, wanted := want[k]; {
			case wanted:
				if !slices.Equal(got, ips) {
					t.Fatalf("if%d: programs match %v, want %v (read back %+v)", k, got, ips, before[k])
				}
				o4, o6 := matched(before[k])
				n4, n6 := matched(v)
				for i, a := range o4 {
					if slices.Contains(ips, a) && !slices.ContainsFunc(slices.Collect(maps.Keys(o4)), func(j int) bool { return o4[j] == a && n4[j] == a }) {
						t.Fatalf("if%d: %s moved from position %d: %+v -> %+v", k, a, i, before[k], v)
					}
				}
				for i, a := range o6 {
					if slices.Contains(ips, a) && !slices.ContainsFunc(slices.Collect(maps.Keys(o6)), func(j int) bool { return o6[j] == a && n6[j] == a }) {
						t.Fatalf("if%d: %s moved from position %d: %+v -> %+v", k, a, i, before[k], v)
					}
				}
			case keep[k]:
				if v != before[k] {
					t.Fatalf("if%d: kept interface changed: %+v -> %+v", k, before[k], v)
				}
			default:
				if len(got) > 0 {
					t.Fatalf("if%d: not wanted, programs still match %v (read back %+v)", k, got, before[k])
				}
			}
		}
		if n := g.sync(want, keep); n != 0 {
			t.Fatalf("second pass wrote %d entries", n)
		}
	})
}
