package linux

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/vtep"
)

// TestRootPodSide: pod1 is a real VXLAN mesh (a compute host with a VXLAN
// device on port 8472 and segment 77, as Neutron's Linux bridge agent makes
// it) whose host points the remote VM's MAC at the pod VTEP G, as L2
// population does for a shadow port. The gateway holds G, bridges its
// pod-side device (segment 77, port 8472, local G) to the overlay, and a
// VM on the compute host pings a VM in pod2 over IPv4 and IPv6. With no pod
// side left, G and the pod-side device go.
func TestRootPodSide(t *testing.T) {
	netns.RequireRoot(t)
	r := netns.NewRig(t)
	gwA := r.AddGateway("pod1", "gwa")
	host := r.AddGateway("pod1", "h1")
	gwB := r.AddGateway("pod2", "gwb")
	segB := r.AddSegment(gwB, "seg0")
	vmB := r.AddVM("pod2", segB, "b", netns.MustMAC("02:00:00:00:02:02"),
		netip.MustParsePrefix("203.0.113.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	g := netip.MustParsePrefix("198.51.100.250/24")

	// The compute host: vxlan-77 on 8472 with learning, as the agent makes it.
	vmA := netns.New(t, "vma")
	macA := netns.MustMAC("02:00:00:00:01:01")
	for _, c := range [][]string{
		{"ip", "link", "add", "vxlan-77", "type", "vxlan", "id", "77", "dstport", "8472", "local", host.VTEP.String(), "dev", "ul0"},
		{"ip", "link", "add", "brq", "type", "bridge"},
		{"ip", "link", "set", "vxlan-77", "master", "brq"},
		{"ip", "link", "add", "tapa", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "mtu", "1450", "netns", vmA.Name()},
		{"ip", "link", "set", "tapa", "master", "brq"},
		{"ip", "link", "set", "tapa", "up"},
		{"ip", "link", "set", "vxlan-77", "up"},
		{"ip", "link", "set", "brq", "up"},
		{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan-77", "dst", g.Addr().String()},
		{"bridge", "fdb", "add", vmB.MAC.String(), "dev", "vxlan-77", "dst", g.Addr().String()},
	} {
		host.MustExec(c...)
	}
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"},
		{"ip", "link", "set", "eth0", "address", macA.String()},
		{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"},
		{"ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
	} {
		vmA.MustExec(c...)
	}

	bA, err := New(Options{NetnsPath: gwA.Path(), LocalVTEP: gwA.VTEP, UnderlayDev: gwA.UnderlayDev, Pod: PodOptions{VTEP: g}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bA.Close() })
	bB := newGWBackend(t, gwB)
	const vni = 5000
	cfgA := vtep.Config{Networks: []vtep.Network{{
		VNI: vni, Flood: []netip.Addr{gwB.VTEP},
		MACs:      []vtep.MACEntry{{MAC: vmB.MAC, VTEP: gwB.VTEP}},
		Neighbors: []vtep.Neighbor{{IP: vmB.IPv4.Addr(), MAC: vmB.MAC}, {IP: vmB.IPv6.Addr(), MAC: vmB.MAC}},
		PodSide:   &vtep.PodSide{Segment: 77, Flood: []netip.Addr{host.VTEP}, MACs: []vtep.MACEntry{{MAC: macA, VTEP: host.VTEP}}},
	}}}
	mustSet(t, bA, cfgA)
	mustSet(t, bB, vtep.Config{Networks: []vtep.Network{{VNI: vni, LocalInterface: "seg0", Flood: []netip.Addr{gwA.VTEP},
		MACs: []vtep.MACEntry{{MAC: macA, VTEP: gwA.VTEP}}}}})

	if dst, err := netns.FDBDst(gwA.NS, bA.PodSideName(vni), macA.String()); err != nil || dst != host.VTEP {
		t.Fatalf("pod-side fdb of %s: %s, %v; want %s", macA, dst, err, host.VTEP)
	}
	if !holds(t, gwA, g) {
		t.Fatalf("gateway does not hold %s", g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ip := range []netip.Addr{vmB.IPv4.Addr(), vmB.IPv6.Addr()} {
		if err := netns.Ping(ctx, vmA, ip); err != nil {
			t.Fatal(err)
		}
	}
	// Idempotent: the same config again changes nothing.
	if res := mustSet(t, bA, cfgA); res != (vtep.Result{}) {
		t.Errorf("second Set changed %+v", res)
	}

	// Standby (no network forwarded): G and the pod-side device go.
	mustSet(t, bA, vtep.Config{})
	if holds(t, gwA, g) {
		t.Errorf("gateway still holds %s with no pod side", g)
	}
	if _, err := gwA.Handle().LinkByName(bA.PodSideName(vni)); err == nil {
		t.Errorf("%s still there", bA.PodSideName(vni))
	}
}

func holds(t *testing.T, gw *netns.Gateway, p netip.Prefix) bool {
	t.Helper()
	out := string(gw.MustExec("ip", "-o", "addr", "show", "dev", gw.UnderlayDev))
	return containsWord(out, p.String())
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w && (i+len(w) == len(s) || s[i+len(w)] == ' ') {
			return true
		}
	}
	return false
}
