package linux

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/vtep"
)

// twoPods is the rig of the root tests: pod1 and pod2, one gateway and one
// VM each; the gateways' segment interface is "seg0".
type twoPods struct {
	r        *netns.Rig
	gwA, gwB *netns.Gateway
	vmA, vmB *netns.VM
	bA, bB   *Backend
}

func newTwoPods(t *testing.T) *twoPods {
	t.Helper()
	netns.RequireRoot(t)
	p := &twoPods{r: netns.NewRig(t)}
	p.gwA = p.r.AddGateway("pod1", "gwa")
	p.gwB = p.r.AddGateway("pod2", "gwb")
	segA := p.r.AddSegment(p.gwA, "seg0")
	segB := p.r.AddSegment(p.gwB, "seg0")
	p.vmA = p.r.AddVM("pod1", segA, "a", netns.MustMAC("02:00:00:00:01:01"),
		netip.MustParsePrefix("203.0.113.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	p.vmB = p.r.AddVM("pod2", segB, "b", netns.MustMAC("02:00:00:00:02:02"),
		netip.MustParsePrefix("203.0.113.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	p.bA = newGWBackend(t, p.gwA)
	p.bB = newGWBackend(t, p.gwB)
	return p
}

func newGWBackend(t testing.TB, gw *netns.Gateway) *Backend {
	t.Helper()
	b, err := New(Options{NetnsPath: gw.Path(), LocalVTEP: gw.VTEP, UnderlayDev: gw.UnderlayDev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// populated is the config of a gateway for one remote VM.
func populated(vni uint32, remote *netns.Gateway, vm *netns.VM) vtep.Config {
	return vtep.Config{Networks: []vtep.Network{{
		VNI:            vni,
		LocalInterface: "seg0",
		Flood:          []netip.Addr{remote.VTEP},
		MACs:           []vtep.MACEntry{{MAC: vm.MAC, VTEP: remote.VTEP}},
		Neighbors: []vtep.Neighbor{
			{IP: vm.IPv4.Addr(), MAC: vm.MAC},
			{IP: vm.IPv6.Addr(), MAC: vm.MAC},
		},
	}}}
}

func mustSet(t testing.TB, b *Backend, cfg vtep.Config) vtep.Result {
	t.Helper()
	res, err := b.Set(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	return res
}

func pingBoth(t *testing.T, from *netns.VM, to *netns.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ip := range []netip.Addr{to.IPv4.Addr(), to.IPv6.Addr()} {
		if err := netns.Ping(ctx, from.NS, ip); err != nil {
			t.Fatal(err)
		}
	}
}

// countWrites counts kernel writes that are done through the seam.
type countWrites struct {
	kernel
	n atomic.Int64
}

func (c *countWrites) AddBridge(name string, mtu int) error {
	c.n.Add(1)
	return c.kernel.AddBridge(name, mtu)
}
func (c *countWrites) AddVXLAN(name string, a vxlanAttrs, mtu int) error {
	c.n.Add(1)
	return c.kernel.AddVXLAN(name, a, mtu)
}
func (c *countWrites) DelLink(name string) error { c.n.Add(1); return c.kernel.DelLink(name) }
func (c *countWrites) SetUp(name string) error   { c.n.Add(1); return c.kernel.SetUp(name) }
func (c *countWrites) SetMTU(name string, mtu int) error {
	c.n.Add(1)
	return c.kernel.SetMTU(name, mtu)
}
func (c *countWrites) SetMaster(name, master string) error {
	c.n.Add(1)
	return c.kernel.SetMaster(name, master)
}
func (c *countWrites) SetPortFlags(name string, l, s bool) error {
	c.n.Add(1)
	return c.kernel.SetPortFlags(name, l, s)
}
func (c *countWrites) AddFDB(dev string, es []fdbEntry) []error {
	c.n.Add(int64(len(es)))
	return c.kernel.AddFDB(dev, es)
}
func (c *countWrites) DelFDB(dev string, es []fdbEntry) []error {
	c.n.Add(int64(len(es)))
	return c.kernel.DelFDB(dev, es)
}
func (c *countWrites) AddNeighs(dev string, es []neighEntry) []error {
	c.n.Add(int64(len(es)))
	return c.kernel.AddNeighs(dev, es)
}
func (c *countWrites) DelNeighs(dev string, es []neighEntry) []error {
	c.n.Add(int64(len(es)))
	return c.kernel.DelNeighs(dev, es)
}

// watch records netlink notifications about links and neighbors of the
// gateway's namespace on devices whose name starts with the backend prefix:
// the kernel's own proof that nothing was written.
type watch struct {
	done   chan struct{}
	events atomic.Int64
	log    chan string
}

func watchNS(t *testing.T, gw *netns.Gateway) *watch {
	t.Helper()
	w := &watch{done: make(chan struct{}), log: make(chan string, 64)}
	ns := gw.NsHandle()
	lch := make(chan netlink.LinkUpdate, 64)
	nch := make(chan netlink.NeighUpdate, 64)
	if err := netlink.LinkSubscribeAt(ns, lch, w.done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighSubscribeAt(ns, nch, w.done); err != nil {
		t.Fatal(err)
	}
	ours := func(idx int) bool {
		l, err := gw.Handle().LinkByIndex(idx)
		return err == nil && strings.HasPrefix(l.Attrs().Name, DefaultPrefix)
	}
	go func() {
		for {
			select {
			case u, ok := <-lch:
				if !ok {
					return
				}
				if strings.HasPrefix(u.Attrs().Name, DefaultPrefix) {
					w.events.Add(1)
					select {
					case w.log <- "link " + u.Attrs().Name:
					default:
					}
				}
			case u, ok := <-nch:
				if !ok {
					return
				}
				if ours(u.LinkIndex) {
					w.events.Add(1)
					select {
					case w.log <- "neigh " + u.String():
					default:
					}
				}
			}
		}
	}()
	t.Cleanup(func() { close(w.done) })
	return w
}

func (w *watch) quiet(t *testing.T, what string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // notifications are async
	if n := w.events.Load(); n != 0 {
		var msgs []string
		for len(w.log) > 0 {
			msgs = append(msgs, <-w.log)
		}
		t.Fatalf("%s: %d netlink notifications on owned devices: %v", what, n, msgs)
	}
}

func TestRootPopulatedPing(t *testing.T) {
	p := newTwoPods(t)
	cfgA := populated(100, p.gwB, p.vmB)
	cfgB := populated(100, p.gwA, p.vmA)
	res := mustSet(t, p.bA, cfgA)
	want := vtep.Result{Added: vtep.Counts{Networks: 1, MACs: 1, Flood: 1, Neighbors: 2}}
	if res != want {
		t.Fatalf("first Set: %+v, want %+v", res, want)
	}
	mustSet(t, p.bB, cfgB)
	pingBoth(t, p.vmA, p.vmB)
	pingBoth(t, p.vmB, p.vmA)

	// The entries are really in the kernel, marked as ours.
	h := p.gwA.Handle()
	vx, err := h.LinkByName("l2sv100")
	if err != nil {
		t.Fatal(err)
	}
	if v := vx.(*netlink.Vxlan); v.Port != DefaultPort || v.Learning || v.VxlanId != 100 {
		t.Fatalf("vxlan attrs: port %d learning %v vni %d", v.Port, v.Learning, v.VxlanId)
	}
	fdb, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	var self, master, flood int
	for _, n := range fdb {
		if n.LinkIndex != vx.Attrs().Index || n.Flags&unix.NTF_EXT_LEARNED == 0 {
			continue
		}
		switch {
		case n.Flags&unix.NTF_SELF == 0 && bytes.Equal(n.HardwareAddr, p.vmB.MAC):
			master++
		case n.Flags&unix.NTF_SELF != 0 && bytes.Equal(n.HardwareAddr, p.vmB.MAC) && n.IP.Equal(p.gwB.VTEP.AsSlice()):
			self++
		case n.Flags&unix.NTF_SELF != 0 && bytes.Equal(n.HardwareAddr, zeroMAC) && n.IP.Equal(p.gwB.VTEP.AsSlice()):
			flood++
		}
	}
	if self != 1 || master != 1 || flood != 1 {
		t.Fatalf("fdb: self %d master %d flood %d, want 1 each: %v", self, master, flood, fdb)
	}
	pi, err := h.LinkGetProtinfo(vx)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.NeighSuppress || pi.Learning {
		t.Fatalf("port flags of l2sv100: %s", pi.String())
	}
	br, err := h.LinkByName("l2sb100")
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := h.NeighList(br.Attrs().Index, 0)
	if err != nil {
		t.Fatal(err)
	}
	var perm int
	for _, n := range neighs {
		if n.State&unix.NUD_PERMANENT != 0 && n.Flags&unix.NTF_EXT_LEARNED != 0 && bytes.Equal(n.HardwareAddr, p.vmB.MAC) {
			perm++
		}
	}
	if perm != 2 {
		t.Fatalf("want 2 permanent owned neighbors on l2sb100, got %v", neighs)
	}

	// A second Set with the same config writes nothing: no write through
	// the seam, and the kernel sends no notification.
	w := watchNS(t, p.gwA)
	cw := &countWrites{kernel: p.bA.k}
	p.bA.k = cw
	if res := mustSet(t, p.bA, cfgA); res != (vtep.Result{}) {
		t.Fatalf("second Set: %+v", res)
	}
	if n := cw.n.Load(); n != 0 {
		t.Fatalf("second Set made %d writes", n)
	}
	// Restart: a fresh backend over the programmed namespace changes nothing.
	b2 := newGWBackend(t, p.gwA)
	if res := mustSet(t, b2, cfgA); res != (vtep.Result{}) {
		t.Fatalf("Set after restart: %+v", res)
	}
	w.quiet(t, "idempotent Set and restart")

	// The watch does see writes: a repair after drift shows up.
	if err := h.NeighDel(&netlink.Neigh{LinkIndex: br.Attrs().Index, IP: p.vmB.IPv4.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}
	if res := mustSet(t, b2, cfgA); res != (vtep.Result{Added: vtep.Counts{Neighbors: 1}}) {
		t.Fatalf("repair: %+v", res)
	}
	deadline := time.Now().Add(2 * time.Second)
	for w.events.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("netlink watch saw no notification for a real write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pingBoth(t, p.vmA, p.vmB)
}

func TestRootDriftAndRemoval(t *testing.T) {
	p := newTwoPods(t)
	cfgA := populated(100, p.gwB, p.vmB)
	mustSet(t, p.bB, populated(100, p.gwA, p.vmA))
	mustSet(t, p.bA, cfgA)
	pingBoth(t, p.vmA, p.vmB)
	h := p.gwA.Handle()
	vx, err := h.LinkByName("l2sv100")
	if err != nil {
		t.Fatal(err)
	}
	idx := vx.Attrs().Index

	// Entries deleted behind the backend's back come back.
	if err := h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, HardwareAddr: p.vmB.MAC, IP: p.gwB.VTEP.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	res := mustSet(t, p.bA, cfgA)
	if res != (vtep.Result{Added: vtep.Counts{MACs: 1}}) {
		t.Fatalf("repair: %+v", res)
	}

	// Entries the backend does not own are left alone: a hand-made static
	// entry on its device and a kernel neighbor.
	foreign := netns.MustMAC("02:00:00:00:0f:0f")
	if err := h.NeighAppend(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_PERMANENT, HardwareAddr: foreign, IP: net.ParseIP("198.51.100.200")}); err != nil {
		t.Fatal(err)
	}

	// Removing one MAC removes only that MAC.
	extra := netns.MustMAC("02:00:00:00:0e:0e")
	cfg2 := populated(100, p.gwB, p.vmB)
	cfg2.Networks[0].MACs = append(cfg2.Networks[0].MACs, vtep.MACEntry{MAC: extra, VTEP: p.gwB.VTEP})
	if res := mustSet(t, p.bA, cfg2); res != (vtep.Result{Added: vtep.Counts{MACs: 1}}) {
		t.Fatalf("add extra: %+v", res)
	}
	if res := mustSet(t, p.bA, cfgA); res != (vtep.Result{Removed: vtep.Counts{MACs: 1}}) {
		t.Fatalf("remove extra: %+v", res)
	}
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	var sawForeign, sawVM bool
	for _, n := range fdb {
		if n.LinkIndex != idx {
			continue
		}
		switch {
		case bytes.Equal(n.HardwareAddr, extra):
			t.Fatalf("removed MAC still there: %v flags %#x", n, n.Flags)
		case bytes.Equal(n.HardwareAddr, foreign):
			sawForeign = true
		case bytes.Equal(n.HardwareAddr, p.vmB.MAC) && n.Flags&unix.NTF_SELF != 0:
			sawVM = true
		}
	}
	if !sawForeign || !sawVM {
		t.Fatalf("foreign entry kept %v, vm entry kept %v", sawForeign, sawVM)
	}
	pingBoth(t, p.vmA, p.vmB)

	// Removing the network deletes its devices and releases seg0.
	res, err = p.bA.Set(context.Background(), vtep.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if res != (vtep.Result{Removed: vtep.Counts{Networks: 1}}) {
		t.Fatalf("remove network: %+v", res)
	}
	for _, name := range []string{"l2sb100", "l2sv100"} {
		if _, err := h.LinkByName(name); err == nil {
			t.Fatalf("%s still exists", name)
		}
	}
	seg, err := h.LinkByName("seg0")
	if err != nil {
		t.Fatalf("seg0 was deleted: %v", err)
	}
	if seg.Attrs().MasterIndex != 0 {
		t.Fatalf("seg0 still enslaved to %d", seg.Attrs().MasterIndex)
	}
}

func TestRootFloodAndLearn(t *testing.T) {
	p := newTwoPods(t)
	learn := func(remote *netns.Gateway) vtep.Config {
		return vtep.Config{Networks: []vtep.Network{{VNI: 200, LocalInterface: "seg0", Flood: []netip.Addr{remote.VTEP}, Learn: true}}}
	}
	mustSet(t, p.bA, learn(p.gwB))
	mustSet(t, p.bB, learn(p.gwA))
	pingBoth(t, p.vmA, p.vmB)
	// The kernel learned the remote MAC (not ours), and a resync keeps it.
	if res := mustSet(t, p.bA, learn(p.gwB)); res != (vtep.Result{}) {
		t.Fatalf("resync: %+v", res)
	}
	vx, err := p.gwA.Handle().LinkByName("l2sv200")
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := p.gwA.Handle().NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	learned := false
	for _, n := range fdb {
		if n.LinkIndex == vx.Attrs().Index && n.Flags&unix.NTF_SELF != 0 && bytes.Equal(n.HardwareAddr, p.vmB.MAC) && n.Flags&unix.NTF_EXT_LEARNED == 0 {
			learned = true
		}
	}
	if !learned {
		t.Fatalf("vxlan device did not learn %s: %v", p.vmB.MAC, fdb)
	}
	// Switching population on makes the learned entry ours.
	cfg := populated(200, p.gwB, p.vmB)
	if res := mustSet(t, p.bA, cfg); res.Added.MACs != 1 {
		t.Fatalf("switch to population: %+v", res)
	}
	if res := mustSet(t, p.bA, cfg); res != (vtep.Result{}) {
		t.Fatalf("resync after switch: %+v", res)
	}
	pingBoth(t, p.vmA, p.vmB)
}

// TestRootNeighSuppress asks for an address that no machine has, but that
// the gateway's bridge holds a neighbor entry for: only the bridge's ARP/ND
// suppression can answer, so the VM learning the MAC proves it.
func TestRootNeighSuppress(t *testing.T) {
	p := newTwoPods(t)
	ghostMAC := netns.MustMAC("02:00:00:00:09:99")
	ghost4 := netip.MustParseAddr("203.0.113.99")
	ghost6 := netip.MustParseAddr("2001:db8::99")
	cfg := populated(300, p.gwB, p.vmB)
	n := &cfg.Networks[0]
	n.MACs = append(n.MACs, vtep.MACEntry{MAC: ghostMAC, VTEP: p.gwB.VTEP})
	n.Neighbors = append(n.Neighbors, vtep.Neighbor{IP: ghost4, MAC: ghostMAC}, vtep.Neighbor{IP: ghost6, MAC: ghostMAC})
	mustSet(t, p.bA, cfg)

	for _, ip := range []netip.Addr{ghost4, ghost6} {
		_ = netns.PingOnce(p.vmA.NS, ip, 300*time.Millisecond) // no one answers the ping itself
		deadline := time.Now().Add(5 * time.Second)
		for {
			neighs, err := p.vmA.Handle().NeighList(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, nb := range neighs {
				if nb.IP.Equal(ip.AsSlice()) && bytes.Equal(nb.HardwareAddr, ghostMAC) {
					found = true
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s was not resolved to %s by the gateway bridge: %v", ip, ghostMAC, neighs)
			}
			_ = netns.PingOnce(p.vmA.NS, ip, 100*time.Millisecond)
		}
	}
}
