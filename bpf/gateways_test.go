package bpf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/test/netns"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestGatewayLayout: an address that stays keeps its position (a frame
// racing the in-place array update never misses it), removed ones leave
// holes that new ones fill.
func TestGatewayLayout(t *testing.T) {
	v := gwLayout(l2spanGwVal{}, addrs("203.0.113.254", "198.51.100.1", "2001:db8::1", "::ffff:192.0.2.1"))
	if got := fmt.Sprint(gwAddrs(v)); got != "[192.0.2.1 198.51.100.1 203.0.113.254 2001:db8::1]" {
		t.Fatalf("addresses %s", got)
	}
	if v.N4 != 3 || v.N6 != 1 {
		t.Fatalf("n4 %d n6 %d", v.N4, v.N6)
	}
	pos := func(v l2spanGwVal, s string) int {
		a := netip.MustParseAddr(s)
		for i := range v.V4 {
			if a.Is4() && v.V4[i] == a.As4() && i < int(v.N4) {
				return i
			}
			if a.Is6() && v.V6[i] == a.As16() && i < int(v.N6) {
				return i
			}
		}
		return -1
	}
	p203 := pos(v, "203.0.113.254")
	p198 := pos(v, "198.51.100.1")
	// Drop 192.0.2.1, add 10.0.0.1 and a second v6.
	w := gwLayout(v, addrs("203.0.113.254", "198.51.100.1", "10.0.0.1", "2001:db8::1", "2001:db8::2"))
	if pos(w, "203.0.113.254") != p203 || pos(w, "198.51.100.1") != p198 || pos(w, "2001:db8::1") != 0 {
		t.Errorf("kept addresses moved: %+v -> %+v", v, w)
	}
	if pos(w, "10.0.0.1") != pos(v, "192.0.2.1") {
		t.Errorf("new address did not fill the hole: %+v", w)
	}
	// Only a hole left where the last one was: n stays, the hole is all-ones.
	x := gwLayout(w, addrs("203.0.113.254"))
	if got := fmt.Sprint(gwAddrs(x)); got != "[203.0.113.254]" || pos(x, "203.0.113.254") != p203 || x.N6 != 0 {
		t.Errorf("shrunk: %s %+v", got, x)
	}
	for i := range x.V4 {
		if i != p203 && x.V4[i] != hole4 {
			t.Errorf("position %d not a hole: %v", i, x.V4[i])
		}
	}
	for i := range x.V6 {
		if x.V6[i] != hole6 {
			t.Errorf("v6 position %d not a hole: %v", i, x.V6[i])
		}
	}

	var nine4, nine6 []netip.Addr
	for i := 1; i <= 9; i++ {
		nine4 = append(nine4, netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i)))
		nine6 = append(nine6, netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i)))
	}
	if err := validateGatewayIPs(nine4[:8]); err != nil {
		t.Errorf("8 IPv4: %v", err)
	}
	if err := validateGatewayIPs(append(nine4[:8:8], nine4[0], netip.MustParseAddr("::ffff:192.0.2.1"))); err != nil {
		t.Errorf("8 distinct IPv4 with duplicates: %v", err)
	}
	if err := validateGatewayIPs(nine4); err == nil || !strings.Contains(err.Error(), "9 distinct IPv4 gateway ips, at most 8") {
		t.Errorf("9 IPv4: %v", err)
	}
	if err := validateGatewayIPs(nine6); err == nil || !strings.Contains(err.Error(), "9 distinct IPv6 gateway ips, at most 8") {
		t.Errorf("9 IPv6: %v", err)
	}
	for _, bad := range []string{"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if err := validateGatewayIPs(addrs(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestManagerGateways: interfaces below and above the gateway array (an
// ifindex past GW_DIRECT goes to the hash), a changed gateway set written
// in one entry, too many gateways refused, and pinned maps of the old
// layout (one hash entry per ifindex+address) replaced on load.
func TestManagerGateways(t *testing.T) {
	netns.RequireRoot(t)
	pins := privateBPFFS(t)
	ns := netns.New(t, "gw")
	addVeth(t, ns, "lo0")
	hi := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hi0", Index: 70000}, PeerName: "hi0p"}
	if err := ns.Handle().LinkAdd(hi); err != nil {
		t.Fatalf("add veth with ifindex 70000: %v", err)
	}
	for _, n := range []string{"hi0", "hi0p"} {
		l, err := ns.Handle().LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "hi0" && l.Attrs().Index != 70000 {
			t.Fatalf("hi0 has ifindex %d", l.Attrs().Index)
		}
		if err := ns.Handle().LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}

	// An agent of the old layout left its gateway map pinned.
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "l2s_gwip", Type: ebpf.Hash, KeySize: 20, ValueSize: 1, MaxEntries: 16384})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(pins, "l2s_gwip")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	m := newManager(t, ns, pins, ModeTCX)
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pins, "l2s_gwip"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := pinned.Info(); err != nil || info.Type != ebpf.Array {
		t.Errorf("pinned l2s_gwip after load: %v %v, want an array", info, err)
	}
	pinned.Close()

	lo := attachmentFor("lo0", "fa:16:3f:aa:00:01", nil, "203.0.113.254", "2001:db8::fffe")
	hiA := attachmentFor("hi0", "fa:16:3f:aa:00:01", nil, "198.51.100.1", "2001:db8:1::1")
	res := mustSet(t, m, []Attachment{lo, hiA})
	if want := (Result{Attached: 4, EntriesWritten: 2}); res != want {
		t.Errorf("first Set: %+v, want %+v", res, want)
	}
	if res := mustSet(t, m, []Attachment{lo, hiA}); res.Changed() {
		t.Errorf("second Set changed %+v", res)
	}

	arpFor := func(tpa string) []byte {
		return cat(eth(bcast, vmMAC, etARP), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", tpa))
	}
	nsFor := func(target string) []byte {
		return cat(eth("33:33:ff:00:00:01", vmMAC, etIPv6), ipv6(protoICMPv6, "2001:db8::5", "ff02::1:ff00:1", icmp6(135, target)))
	}
	expect := func(ifname string, frame []byte, act string) {
		t.Helper()
		before, err := m.Counters()
		if err != nil {
			t.Fatal(err)
		}
		sendFrame(t, ns, ifname, frame)
		waitCounters(t, m, before, map[string]uint64{act: 1})
		after, err := m.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{ActionDroppedARP, ActionDroppedND} {
			if d != act && after[d] != before[d] {
				t.Errorf("%s: %s went up by %d", ifname, d, after[d]-before[d])
			}
		}
	}
	expect("lo0p", arpFor("203.0.113.254"), ActionDroppedARP)
	expect("lo0p", nsFor("2001:db8::fffe"), ActionDroppedND)
	expect("hi0p", arpFor("198.51.100.1"), ActionDroppedARP)
	expect("hi0p", nsFor("2001:db8:1::1"), ActionDroppedND)
	expect("hi0p", arpFor("203.0.113.254"), ActionPassedToOverlay) // lo0's gateway

	// A changed set: one entry written per interface.
	hiB := hiA
	hiB.GatewayIPs = addrs("198.51.100.1", "192.0.2.1")
	loB := lo
	loB.GatewayIPs = addrs("192.0.2.1", "2001:db8::fffe")
	res = mustSet(t, m, []Attachment{loB, hiB})
	if want := (Result{EntriesWritten: 2}); res != want {
		t.Errorf("changed gateways: %+v, want %+v", res, want)
	}
	expect("lo0p", arpFor("203.0.113.254"), ActionPassedToOverlay)
	expect("lo0p", arpFor("192.0.2.1"), ActionDroppedARP)
	expect("hi0p", nsFor("2001:db8:1::1"), ActionPassedToOverlay)
	expect("hi0p", arpFor("192.0.2.1"), ActionDroppedARP)

	// Too many: a clear error, the interface keeps what it has.
	tooMany := hiB
	for i := 10; i < 20; i++ {
		tooMany.GatewayIPs = append(tooMany.GatewayIPs, netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i)))
	}
	res, err = m.Set(context.Background(), []Attachment{loB, tooMany})
	if err == nil || !strings.Contains(err.Error(), "at most 8 per interface") {
		t.Errorf("Set with 12 IPv4 gateways: err %v", err)
	}
	if res.Changed() {
		t.Errorf("Set with too many gateways changed %+v", res)
	}
	expect("hi0p", arpFor("192.0.2.1"), ActionDroppedARP)

	// Removal empties both maps.
	res = mustSet(t, m, nil)
	if want := (Result{Detached: 4, EntriesDeleted: 2}); res != want {
		t.Errorf("Set(nil): %+v, want %+v", res, want)
	}
	gw, err := m.readGateways()
	if err != nil || len(gw) != 0 {
		t.Errorf("gateway entries left: %v %v", gw, err)
	}
}
