//go:build linux

package netns

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UnderlayMTU is the MTU of the underlay veths and bridge: large enough
// that a VXLAN device on ul0 (50 bytes of overhead) carries 1500-byte frames.
const UnderlayMTU = 1600

// Rig is a set of pods joined by one underlay L2 segment:
//
//	underlay netns: bridge br0 <- veth -> gateway netns: ul0 (198.51.100.x/24)
//	pod fabric netns: bridge segN <- veth -> gateway netns: <ifname> (unbridged)
//	                              <- veth -> VM netns: eth0 (MAC, 203.0.113.x, 2001:db8::x)
//
// Several gateways may sit in one pod and on one segment (Attach).
type Rig struct {
	t        testing.TB
	Underlay *NS

	mu       sync.Mutex
	fabrics  map[string]*NS
	gateways map[string]*Gateway // pod/name
	nGW      int
	nSeg     int
	nPort    int
}

// Gateway is a gateway host of a pod.
type Gateway struct {
	*NS
	Pod  string
	Host string
	// VTEP is the address of UnderlayDev, from 198.51.100.0/24.
	VTEP        netip.Addr
	UnderlayDev string
}

// Segment is a pod-local L2 segment: a bridge in the pod's fabric netns.
type Segment struct {
	Pod    string
	Bridge string
	Fabric *NS
}

// VM is a tenant machine with eth0 on a segment.
type VM struct {
	*NS
	Host string
	MAC  net.HardwareAddr
	IPv4 netip.Prefix
	IPv6 netip.Prefix
}

// NewRig creates the underlay netns with its bridge br0 (up).
func NewRig(t testing.TB) *Rig {
	t.Helper()
	RequireRoot(t)
	r := &Rig{t: t, fabrics: map[string]*NS{}, gateways: map[string]*Gateway{}}
	r.Underlay = New(t, "ul")
	r.addBridge(r.Underlay, "br0", UnderlayMTU)
	return r
}

func (r *Rig) addBridge(ns *NS, name string, mtu int) netlink.Link {
	r.t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := ns.Handle().LinkAdd(br); err != nil {
		r.t.Fatalf("add bridge %s in %s: %v", name, ns.Name(), err)
	}
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		r.t.Fatalf("bridge %s in %s: %v", name, ns.Name(), err)
	}
	if err := ns.Handle().LinkSetUp(l); err != nil {
		r.t.Fatalf("set %s up in %s: %v", name, ns.Name(), err)
	}
	return l
}

// veth creates name in ns and its peer peerName in peerNS, puts the peer
// into bridge peerMaster (if not empty) and sets the peer up. The ns end is
// left down; it is returned.
func (r *Rig) veth(ns *NS, name string, mac net.HardwareAddr, mtu int, peerNS *NS, peerName, peerMaster string) netlink.Link {
	r.t.Helper()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: mtu},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peerNS.NsHandle())),
	}
	if err := ns.Handle().LinkAdd(v); err != nil {
		r.t.Fatalf("add veth %s (%s) <-> %s (%s): %v", name, ns.Name(), peerName, peerNS.Name(), err)
	}
	peer, err := peerNS.Handle().LinkByName(peerName)
	if err != nil {
		r.t.Fatalf("veth peer %s in %s: %v", peerName, peerNS.Name(), err)
	}
	if peerMaster != "" {
		br, err := peerNS.Handle().LinkByName(peerMaster)
		if err != nil {
			r.t.Fatalf("bridge %s in %s: %v", peerMaster, peerNS.Name(), err)
		}
		if err := peerNS.Handle().LinkSetMaster(peer, br); err != nil {
			r.t.Fatalf("enslave %s to %s in %s: %v", peerName, peerMaster, peerNS.Name(), err)
		}
	}
	if err := peerNS.Handle().LinkSetUp(peer); err != nil {
		r.t.Fatalf("set %s up in %s: %v", peerName, peerNS.Name(), err)
	}
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		r.t.Fatalf("veth %s in %s: %v", name, ns.Name(), err)
	}
	return l
}

// AddGateway creates the netns "<pod>-<host>" with ul0 on the underlay
// bridge, addressed 198.51.100.(10+n)/24, and returns it.
func (r *Rig) AddGateway(pod, host string) *Gateway {
	r.t.Helper()
	r.mu.Lock()
	r.nGW++
	n := r.nGW
	r.mu.Unlock()
	if n > 240 {
		r.t.Fatalf("too many gateways")
	}
	ns := New(r.t, pod+"-"+host)
	// ns names can be long; interfaces must stay within 15 chars.
	ul := r.veth(ns, "ul0", nil, UnderlayMTU, r.Underlay, fmt.Sprintf("gw%d", n), "br0")
	vtep := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + n)})
	addAddr(r.t, ns, ul, netip.PrefixFrom(vtep, 24))
	if err := ns.Handle().LinkSetUp(ul); err != nil {
		r.t.Fatalf("set ul0 up in %s: %v", ns.Name(), err)
	}
	gw := &Gateway{NS: ns, Pod: pod, Host: host, VTEP: vtep, UnderlayDev: "ul0"}
	r.mu.Lock()
	r.gateways[pod+"/"+host] = gw
	r.mu.Unlock()
	return gw
}

// Fabric returns the pod's fabric netns, creating it on first use.
func (r *Rig) Fabric(pod string) *NS {
	r.t.Helper()
	r.mu.Lock()
	f, ok := r.fabrics[pod]
	r.mu.Unlock()
	if ok {
		return f
	}
	f = New(r.t, "fab-"+pod)
	r.mu.Lock()
	r.fabrics[pod] = f
	r.mu.Unlock()
	return f
}

// AddSegment creates a new L2 segment in gw's pod (a bridge in the pod's
// fabric netns) and a veth whose gateway end is ifname in gw's netns, left
// down and unbridged: the code under test bridges it.
func (r *Rig) AddSegment(gw *Gateway, ifname string) *Segment {
	r.t.Helper()
	r.mu.Lock()
	r.nSeg++
	name := fmt.Sprintf("seg%d", r.nSeg)
	r.mu.Unlock()
	fab := r.Fabric(gw.Pod)
	r.addBridge(fab, name, 0)
	seg := &Segment{Pod: gw.Pod, Bridge: name, Fabric: fab}
	r.Attach(seg, gw, ifname)
	return seg
}

// Attach connects one more gateway of the segment's pod to seg, as ifname
// in gw's netns (left down and unbridged).
func (r *Rig) Attach(seg *Segment, gw *Gateway, ifname string) {
	r.t.Helper()
	if gw.Pod != seg.Pod {
		r.t.Fatalf("gateway %s/%s is not in pod %s", gw.Pod, gw.Host, seg.Pod)
	}
	r.veth(gw.NS, ifname, nil, 0, seg.Fabric, r.portName("g"), seg.Bridge)
}

func (r *Rig) portName(prefix string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nPort++
	return fmt.Sprintf("%s%d", prefix, r.nPort)
}

// AddVM creates the netns "vm-<name>" with eth0 on seg: the given MAC, ipv4
// (e.g. 203.0.113.x/24) and ipv6 (e.g. 2001:db8::x/64, DAD off), up.
// Either prefix may be the zero value.
func (r *Rig) AddVM(pod string, seg *Segment, name string, mac net.HardwareAddr, ipv4, ipv6 netip.Prefix) *VM {
	r.t.Helper()
	if seg.Pod != pod {
		r.t.Fatalf("segment %s is in pod %s, not %s", seg.Bridge, seg.Pod, pod)
	}
	ns := New(r.t, "vm-"+name)
	// No DAD anywhere in the VM: addresses are usable at once.
	for _, k := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
		if err := ns.WriteSysctl(k, "0"); err != nil {
			r.t.Fatalf("sysctl %s in %s: %v", k, ns.Name(), err)
		}
	}
	eth := r.veth(ns, "eth0", mac, 0, seg.Fabric, r.portName("v"), seg.Bridge)
	if err := ns.WriteSysctl("net/ipv6/conf/eth0/accept_dad", "0"); err != nil {
		r.t.Fatalf("sysctl accept_dad in %s: %v", ns.Name(), err)
	}
	if ipv4.IsValid() {
		addAddr(r.t, ns, eth, ipv4)
	}
	if ipv6.IsValid() {
		addAddr(r.t, ns, eth, ipv6)
	}
	if err := ns.Handle().LinkSetUp(eth); err != nil {
		r.t.Fatalf("set eth0 up in %s: %v", ns.Name(), err)
	}
	return &VM{NS: ns, Host: name, MAC: mac, IPv4: ipv4, IPv6: ipv6}
}

func addAddr(t testing.TB, ns *NS, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := ns.Handle().AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s in %s: %v", p, l.Attrs().Name, ns.Name(), err)
	}
}

// MustMAC parses a MAC address or panics.
func MustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
