package bpf

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/vtep"
	vtlinux "github.com/l2span/l2span/vtep/linux"
)

const scenarioVNI = 100

// pod is one pod of the scenario: a gateway with the vtep backend and the
// bpf Manager, a VM, and a router holding the (anycast) gateway IPs.
type pod struct {
	n      int
	gw     *netns.Gateway
	seg    *netns.Segment
	vm     *netns.VM
	router *netns.VM
	dvr    net.HardwareAddr // the gateway's own DVR MAC
	prefix macaddr.Prefix   // the pod's dvr_base_mac
	vb     *vtlinux.Backend
	bm     *Manager
}

var (
	scenarioGW4 = netip.MustParsePrefix("203.0.113.254/24")
	scenarioGW6 = netip.MustParsePrefix("2001:db8::fffe/64")
)

// threePods builds three pods spanning one network over VXLAN (vtep/linux,
// MACs populated, no neighbor entries so ARP really crosses), with the bpf
// programs on every gateway's seg0.
func threePods(t testing.TB, withBPF bool) (*netns.Rig, []*pod) {
	t.Helper()
	netns.RequireRoot(t)
	r := netns.NewRig(t)
	var pods []*pod
	for i := 1; i <= 3; i++ {
		p := &pod{n: i}
		p.gw = r.AddGateway(fmt.Sprintf("pod%d", i), "gw")
		p.seg = r.AddSegment(p.gw, "seg0")
		p.vm = r.AddVM(p.gw.Pod, p.seg, fmt.Sprintf("v%d", i), mustMAC(fmt.Sprintf("fa:16:3e:00:0%d:01", i)),
			netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/24", i)), netip.MustParsePrefix(fmt.Sprintf("2001:db8::%d/64", i)))
		p.router = r.AddVM(p.gw.Pod, p.seg, fmt.Sprintf("r%d", i), mustMAC(fmt.Sprintf("fa:16:3e:00:0%d:fe", i)), scenarioGW4, scenarioGW6)
		p.dvr = mustMAC(fmt.Sprintf("fa:16:3f:0%d:ff:01", i))
		p.prefix = macaddr.MustParsePrefix(fmt.Sprintf("fa:16:3f:0%d:00:00/32", i))
		vb, err := vtlinux.New(vtlinux.Options{NetnsPath: p.gw.Path(), LocalVTEP: p.gw.VTEP, UnderlayDev: p.gw.UnderlayDev, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vb.Close() })
		p.vb = vb
		pods = append(pods, p)
	}
	for _, p := range pods {
		nw := vtep.Network{VNI: scenarioVNI, LocalInterface: "seg0"}
		for _, o := range pods {
			if o == p {
				continue
			}
			nw.Flood = append(nw.Flood, o.gw.VTEP)
			nw.MACs = append(nw.MACs, vtep.MACEntry{MAC: o.vm.MAC, VTEP: o.gw.VTEP})
		}
		if _, err := p.vb.Set(context.Background(), vtep.Config{Networks: []vtep.Network{nw}}); err != nil {
			t.Fatalf("vtep Set on %s: %v", p.gw.Name(), err)
		}
		if withBPF {
			p.bm = newManager(t, p.gw.NS, privateBPFFS(t), ModeAuto)
			mustSet(t, p.bm, []Attachment{p.attachment(pods)})
		}
	}
	return r, pods
}

func (p *pod) attachment(pods []*pod) Attachment {
	a := Attachment{Interface: "seg0", OwnDVRMAC: p.dvr, GatewayIPs: []netip.Addr{scenarioGW4.Addr(), scenarioGW6.Addr()}}
	for _, o := range pods {
		if o != p {
			a.RemoteDVRPrefixes = append(a.RemoteDVRPrefixes, o.prefix)
		}
	}
	return a
}

func TestScenarioThreePods(t *testing.T) {
	r, pods := threePods(t, true)
	p1, p2, p3 := pods[0], pods[1], pods[2]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A "DVR host" in pod 1 (its MAC inside pod 1's DVR prefix).
	dvrHost := r.AddVM("pod1", p1.seg, "dvr1", mustMAC("fa:16:3f:01:00:05"), netip.Prefix{}, netip.Prefix{})
	dhcp2 := r.AddVM("pod2", p2.seg, "dhcp2", mustMAC("fa:16:3e:00:02:dd"), netip.MustParsePrefix("203.0.113.253/24"), netip.Prefix{})

	t.Run("dvr source mac rewritten", func(t *testing.T) {
		for _, dst := range []*pod{p2, p3} {
			cap := startCapture(t, dst.vm.NS, "eth0")
			marker := []byte(fmt.Sprintf("l2span-dvr-to-pod%d", dst.n))
			routed := cat(eth(dst.vm.MAC.String(), dvrHost.MAC.String(), etIPv4),
				ipv4(protoUDP, "192.0.2.7", dst.vm.IPv4.Addr().String(), 0, 0, udp(5000, 5001, marker)))
			plain := []byte(fmt.Sprintf("l2span-plain-to-pod%d", dst.n))
			switched := cat(eth(dst.vm.MAC.String(), p1.vm.MAC.String(), etIPv4),
				ipv4(protoUDP, p1.vm.IPv4.Addr().String(), dst.vm.IPv4.Addr().String(), 0, 0, udp(5000, 5001, plain)))
			var got, gotPlain []byte
			for got == nil || gotPlain == nil {
				if ctx.Err() != nil {
					t.Fatalf("pod%d VM: routed frame seen %v, switched frame seen %v", dst.n, got != nil, gotPlain != nil)
				}
				sendFrame(t, dvrHost.NS, "eth0", routed)
				sendFrame(t, p1.vm.NS, "eth0", switched)
				got = cap.find(containing(marker), 200*time.Millisecond)
				if gotPlain == nil {
					gotPlain = cap.find(containing(plain), 0)
				}
			}
			if src := net.HardwareAddr(got[6:12]); src.String() != dst.dvr.String() {
				t.Errorf("pod%d VM got the routed frame from %s, want pod%d's gateway DVR MAC %s", dst.n, src, dst.n, dst.dvr)
			}
			if src := net.HardwareAddr(gotPlain[6:12]); src.String() != p1.vm.MAC.String() {
				t.Errorf("pod%d VM got the switched frame from %s, want it untouched (%s)", dst.n, src, p1.vm.MAC)
			}
			c, err := dst.bm.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c[ActionRewritten] == 0 {
				t.Errorf("pod%d gateway counted no rewrite: %v", dst.n, c)
			}
		}
	})

	t.Run("dhcp stays in the pod", func(t *testing.T) {
		srv := startDHCPResponder(t, dhcp2.NS)
		capVM3 := startCapture(t, p3.vm.NS, "eth0")
		// pod 2's VM gets its offer from pod 2's server.
		client2 := openDHCPClient(t, p2.vm.NS)
		var offer []byte
		for offer == nil {
			if ctx.Err() != nil {
				t.Fatal("pod 2's VM got no DHCP offer from pod 2's server")
			}
			client2.discover(t, "xid-pod2")
			offer = client2.recv(300 * time.Millisecond)
		}
		if !bytes.Contains(offer, []byte("offer:xid-pod2")) {
			t.Errorf("pod 2 offer %q", offer)
		}
		// pod 1's discovers never leave pod 1.
		client1 := openDHCPClient(t, p1.vm.NS)
		for range 5 {
			client1.discover(t, "xid-pod1")
			time.Sleep(100 * time.Millisecond)
		}
		// Once pod 1's gateway has dropped them all, none can still arrive.
		var dropped uint64
		for deadline := time.Now().Add(10 * time.Second); dropped < 5 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			c, err := p1.bm.Counters()
			if err != nil {
				t.Fatal(err)
			}
			dropped = c[ActionDroppedDHCP]
		}
		if dropped < 5 {
			t.Errorf("pod 1 gateway dropped_dhcp = %d, want >= 5", dropped)
		}
		if srv.saw("xid-pod1") {
			t.Error("pod 2's DHCP server received pod 1's discover")
		}
		if f := capVM3.find(containing([]byte("xid-pod1")), 0); f != nil {
			t.Error("pod 3's VM saw pod 1's discover")
		}
		if off := client1.recv(100 * time.Millisecond); off != nil {
			t.Errorf("pod 1's VM got an offer from another pod: %q", off)
		}
	})

	t.Run("gateway arp and nd answered inside each pod", func(t *testing.T) {
		caps := map[int]*capture{}
		for _, p := range pods {
			caps[p.n] = startCapture(t, p.router.NS, "eth0")
		}
		for _, p := range pods {
			for _, gw := range []netip.Addr{scenarioGW4.Addr(), scenarioGW6.Addr()} {
				if err := netns.Ping(ctx, p.vm.NS, gw); err != nil {
					t.Fatalf("pod%d VM to its gateway %s: %v", p.n, gw, err)
				}
				if mac := neighMAC(t, p.vm.NS, gw); mac != p.router.MAC.String() {
					t.Errorf("pod%d VM resolved gateway %s to %s, want its own router %s", p.n, gw, mac, p.router.MAC)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
		for _, p := range pods {
			for _, o := range pods {
				if o == p {
					continue
				}
				if f := caps[p.n].find(gatewayResolution(o.vm.MAC), 0); f != nil {
					t.Errorf("pod%d's router saw pod%d's VM resolve the gateway: %x", p.n, o.n, f)
				}
			}
		}
	})

	t.Run("arp and nd for a remote vm cross", func(t *testing.T) {
		for _, dst := range []netip.Addr{p2.vm.IPv4.Addr(), p2.vm.IPv6.Addr(), p3.vm.IPv4.Addr()} {
			if err := netns.Ping(ctx, p1.vm.NS, dst); err != nil {
				t.Fatalf("pod1 VM to %s: %v", dst, err)
			}
		}
		if mac := neighMAC(t, p1.vm.NS, p2.vm.IPv4.Addr()); mac != p2.vm.MAC.String() {
			t.Errorf("pod1 VM resolved %s to %s, want %s", p2.vm.IPv4.Addr(), mac, p2.vm.MAC)
		}
	})
}

func neighMAC(t testing.TB, ns *netns.NS, ip netip.Addr) string {
	t.Helper()
	l, err := ns.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	ns6, err := ns.Handle().NeighList(l.Attrs().Index, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns6 {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// capture collects every frame an AF_PACKET socket sees on an interface.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t testing.TB, ns *netns.NS, ifname string) *capture {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	return c
}

// find waits up to wait for a received frame matching pred.
func (c *capture) find(pred func([]byte) bool, wait time.Duration) []byte {
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		for _, f := range c.frames {
			if pred(f) {
				c.mu.Unlock()
				return f
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containing(b []byte) func([]byte) bool {
	return func(f []byte) bool { return bytes.Contains(f, b) }
}

// gatewayResolution matches an ARP request or IPv6 NS from mac for the
// scenario's gateway IPs.
func gatewayResolution(mac net.HardwareAddr) func([]byte) bool {
	gw4, gw6 := scenarioGW4.Addr().AsSlice(), scenarioGW6.Addr().AsSlice()
	return func(f []byte) bool {
		if len(f) < 14 || !bytes.Equal(f[6:12], mac) {
			return false
		}
		switch uint16(f[12])<<8 | uint16(f[13]) {
		case etARP:
			return len(f) >= 42 && bytes.Equal(f[38:42], gw4)
		case etIPv6:
			return len(f) >= 78 && f[20] == protoICMPv6 && f[54] == 135 && bytes.Equal(f[62:78], gw6)
		}
		return false
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// dhcpResponder stands in for a pod's DHCP server: it answers every
// "discover:<xid>" datagram on UDP 67 with a broadcast "offer:<xid>" to 68.
type dhcpResponder struct {
	mu   sync.Mutex
	seen map[string]bool
}

func startDHCPResponder(t testing.TB, ns *netns.NS) *dhcpResponder {
	t.Helper()
	fd := udpSocket(t, ns, 67)
	d := &dhcpResponder{seen: map[string]bool{}}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 1500)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			msg := string(buf[:n])
			if xid, ok := cutPrefix(msg, "discover:"); ok {
				d.mu.Lock()
				d.seen[xid] = true
				d.mu.Unlock()
				_ = unix.Sendto(fd, []byte("offer:"+xid), 0, &unix.SockaddrInet4{Port: 68, Addr: [4]byte{255, 255, 255, 255}})
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	return d
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func (d *dhcpResponder) saw(xid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[xid]
}

type dhcpClient struct{ fd int }

func openDHCPClient(t testing.TB, ns *netns.NS) *dhcpClient {
	t.Helper()
	c := &dhcpClient{fd: udpSocket(t, ns, 68)}
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

func (c *dhcpClient) discover(t testing.TB, xid string) {
	t.Helper()
	if err := unix.Sendto(c.fd, []byte("discover:"+xid), 0, &unix.SockaddrInet4{Port: 67, Addr: [4]byte{255, 255, 255, 255}}); err != nil {
		t.Fatalf("send discover: %v", err)
	}
}

func (c *dhcpClient) recv(wait time.Duration) []byte {
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if err == nil {
			return append([]byte(nil), buf[:n]...)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// udpSocket opens a broadcast-capable UDP socket bound to port on eth0.
func udpSocket(t testing.TB, ns *netns.NS, port int) int {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
			return err
		}
		for _, o := range []int{unix.SO_BROADCAST, unix.SO_REUSEADDR} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
				return err
			}
		}
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "eth0"); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: port})
	})
	if err != nil {
		t.Fatalf("udp socket :%d: %v", port, err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd
}
