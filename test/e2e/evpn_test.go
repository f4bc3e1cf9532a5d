package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/frrtest"
	"github.com/l2span/l2span/test/netns"
)

// evpnRig is pod1 with an EVPN fabric (FRR route reflector "rr" and FRR
// client "leaf", each a VTEP with a VM) joined by an l2span EVPN gateway,
// and pod2 with a Linux l2span gateway and a VM. All on one underlay.
type evpnRig struct {
	*lab
	vni      uint32
	net      api.Network
	rr, leaf *frrtest.Router
	gw1, gw2 *netns.Gateway
	agent1   *proc
	bgpd1    *proc // l2span-bgpd: gw1's BGP sessions
	vmRR     *netns.VM
	vmLeaf   *netns.VM
	vmPod2   *netns.VM
	seg2     *netns.Segment
	ports    map[string]api.Port // by VM host name
}

const overlayPort = "4790" // the inter-pod overlay; the fabric uses 4789

func evpnArgs(rr netip.Addr, speakerSocket string) agentOpt {
	return func(a *[]string) {
		*a = append(*a, "--vxlan-port", overlayPort, "--backend", "evpn", "--evpn-asn", "65000",
			"--evpn-neighbors", rr.String()+":65000", "--evpn-hold-time", "9s", "--evpn-import-wait", "10s",
			"--evpn-speaker-socket", speakerSocket)
	}
}

func overlay4790(a *[]string) { *a = append(*a, "--vxlan-port", overlayPort) }

func newEVPNRig(t *testing.T) *evpnRig {
	frrtest.Require(t)
	l := newLab(t)
	ctx := context.Background()
	r := &evpnRig{lab: l, ports: map[string]api.Port{}}
	l.mkPod("pod1", "az1")
	l.mkPod("pod2", "az2")
	var err error
	r.net, err = l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "evpn", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	r.vni = uint32(r.net.SegmentationID)
	for _, sn := range []api.Subnet{{CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}, {CIDR: "2001:db8::/64", GatewayIP: "2001:db8::1"}} {
		sn.NetworkID = r.net.ID
		if _, err := l.client.CreateSubnet(ctx, sn); err != nil {
			t.Fatal(err)
		}
	}
	// The fabric's hosts sit on the underlay like gateways (not agents).
	rrHost := l.rig.AddGateway("pod1", "rr")
	leafHost := l.rig.AddGateway("pod1", "leaf")
	r.gw1 = l.addGateway("pod1", "gw")
	r.gw2 = l.addGateway("pod2", "gw")
	r.rr = frrtest.Start(t, rrHost.NS, frrtest.Config{ASN: 65000, RouterID: rrHost.VTEP, VNIs: []uint32{r.vni},
		Neighbors: []netip.Addr{leafHost.VTEP, r.gw1.VTEP}, Clients: map[netip.Addr]bool{leafHost.VTEP: true, r.gw1.VTEP: true}})
	r.leaf = frrtest.Start(t, leafHost.NS, frrtest.Config{ASN: 65000, RouterID: leafHost.VTEP, VNIs: []uint32{r.vni},
		Neighbors: []netip.Addr{rrHost.VTEP}})
	br := fmt.Sprintf("br%d", r.vni)
	r.vmRR = l.rig.AddVM("pod1", &netns.Segment{Pod: "pod1", Bridge: br, Fabric: rrHost.NS}, "e-rr",
		netns.MustMAC("fa:16:3e:00:0e:01"), netip.MustParsePrefix("203.0.113.21/24"), netip.MustParsePrefix("2001:db8::21/64"))
	r.vmLeaf = l.rig.AddVM("pod1", &netns.Segment{Pod: "pod1", Bridge: br, Fabric: leafHost.NS}, "e-leaf",
		netns.MustMAC("fa:16:3e:00:0e:02"), netip.MustParsePrefix("203.0.113.22/24"), netip.MustParsePrefix("2001:db8::22/64"))
	r.seg2 = l.rig.AddSegment(r.gw2, fmt.Sprintf("seg%d", r.vni))
	r.vmPod2 = l.rig.AddVM("pod2", r.seg2, "e-p2",
		netns.MustMAC("fa:16:3e:00:0e:03"), netip.MustParsePrefix("203.0.113.23/24"), netip.MustParsePrefix("2001:db8::23/64"))
	for _, vm := range []struct {
		vm  *netns.VM
		pod string
	}{{r.vmRR, "pod1"}, {r.vmLeaf, "pod1"}, {r.vmPod2, "pod2"}} {
		p, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: r.net.ID, PodID: vm.pod, MAC: vm.vm.MAC.String(),
			IPs: []string{vm.vm.IPv4.Addr().String(), vm.vm.IPv6.Addr().String()}})
		if err != nil {
			t.Fatal(err)
		}
		r.ports[vm.vm.Host] = p
	}
	sock := filepath.Join(t.TempDir(), "bgpd", "bgpd.sock")
	r.bgpd1 = startProc(t, r.gw1.NS, "bgpd-pod1-gw", l.bin+"/l2span-bgpd", "--socket", sock, "--log-level", "debug")
	r.agent1 = l.startAgent(r.gw1, evpnArgs(rrHost.VTEP, sock))
	l.startAgent(r.gw2, overlay4790)
	return r
}

// waitRemote waits until router's kernel sends mac to want, as extern_learn.
func (r *evpnRig) waitRemote(t *testing.T, router *frrtest.Router, mac string, want netip.Addr, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%s: %s extern_learn -> %s", router.NS.Name(), mac, want), func() error {
		dst, ext, err := router.RemoteMAC(r.vni, mac)
		if err != nil {
			return err
		}
		if dst != want.String() || !ext {
			return fmt.Errorf("dst %s extern_learn %v", dst, ext)
		}
		return nil
	})
}

func (r *evpnRig) port(t *testing.T, host string) api.Port {
	t.Helper()
	p, err := r.client.GetPort(context.Background(), r.ports[host].ID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// moveVM unplugs vm and plugs it, same MAC and addresses, into bridge in fabric.
func moveVM(t *testing.T, vm *netns.VM, fabric *netns.NS, bridge string) {
	t.Helper()
	h := vm.Handle()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(eth); err != nil {
		t.Fatal(err)
	}
	peer := fmt.Sprintf("m%d", time.Now().UnixNano()%1000000)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: vm.MAC}, PeerName: peer,
		PeerNamespace: netlink.NsFd(int(fabric.NsHandle()))}
	if err := h.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	pl, err := fabric.Handle().LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	brl, err := fabric.Handle().LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := fabric.Handle().LinkSetMaster(pl, brl); err != nil {
		t.Fatal(err)
	}
	if err := fabric.Handle().LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}
	eth, _ = h.LinkByName("eth0")
	vm.MustExec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	for _, p := range []netip.Prefix{vm.IPv4, vm.IPv6} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = syscall.IFA_F_NODAD
		}
		if err := h.AddrAdd(eth, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
}

func TestEVPN(t *testing.T) {
	r := newEVPNRig(t)
	vms := []*netns.VM{r.vmRR, r.vmLeaf, r.vmPod2}
	rrVTEP := netip.MustParseAddr(strings.Split(r.rr.Cfg.RouterID.String(), "/")[0])
	_ = rrVTEP

	t.Run("ping both ways, remote MACs extern_learn on the fabric", func(t *testing.T) {
		r.waitRemote(t, r.rr, r.vmPod2.MAC.String(), r.gw1.VTEP, 40*time.Second)
		r.waitRemote(t, r.leaf, r.vmPod2.MAC.String(), r.gw1.VTEP, 20*time.Second)
		pingAll(t, vms, 20*time.Second)
		// pod2's gateway sends the fabric's MACs to pod1's EVPN gateway.
		for _, vm := range []*netns.VM{r.vmRR, r.vmLeaf} {
			eventually(t, 10*time.Second, "pod2 fdb "+vm.MAC.String(), func() error {
				dst, err := fdbDst(r.gw2, int(r.vni), vm.MAC.String())
				if err == nil && dst != r.gw1.VTEP {
					err = fmt.Errorf("-> %s", dst)
				}
				return err
			})
		}
	})

	t.Run("move to pod2 and back: sequence numbers advance, nothing stale", func(t *testing.T) {
		before := r.port(t, r.vmLeaf.Host)
		// Out: the VM is re-bound in pod2 (Nova), the brain bumps the sequence.
		moveVM(t, r.vmLeaf, r.seg2.Fabric, r.seg2.Bridge)
		pod2 := "pod2"
		seq := before.MobilitySeq + 1
		if _, err := r.client.UpdatePort(context.Background(), before.ID, api.PortUpdate{PodID: &pod2, MobilitySeq: &seq}); err != nil {
			t.Fatal(err)
		}
		r.waitRemote(t, r.leaf, r.vmLeaf.MAC.String(), r.gw1.VTEP, 20*time.Second)
		r.waitRemote(t, r.rr, r.vmLeaf.MAC.String(), r.gw1.VTEP, 20*time.Second)
		eventually(t, 10*time.Second, "leaf's remote sequence", func() error {
			_, remote, kind, err := r.leaf.MACSeq(r.vni, r.vmLeaf.MAC.String())
			if err == nil && (kind != "remote" || int64(remote) != seq) {
				err = fmt.Errorf("%s, remote seq %d, want remote %d", kind, remote, seq)
			}
			return err
		})
		pingAll(t, vms, 20*time.Second)
		if p := r.port(t, r.vmLeaf.Host); p.PodID != "pod2" || p.MobilitySeq != seq {
			t.Fatalf("port after the move out: pod %s seq %d, want pod2 %d (a stale fabric route moved it back?)", p.PodID, p.MobilitySeq, seq)
		}

		// Back: FRR learns it locally with a newer sequence; the EVPN
		// gateway's learner moves the port with that sequence.
		moveVM(t, r.vmLeaf, r.leaf.NS, fmt.Sprintf("br%d", r.vni))
		stop := make(chan struct{})
		go func() { // the VM talks, so its leaf learns it
			for {
				netns.PingOnce(r.vmLeaf.NS, r.vmRR.IPv4.Addr(), 200*time.Millisecond)
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		defer close(stop)
		eventually(t, 30*time.Second, "port moved back by the learner", func() error {
			p := r.port(t, r.vmLeaf.Host)
			if p.PodID != "pod1" || p.MobilitySeq <= seq {
				return fmt.Errorf("pod %s seq %d", p.PodID, p.MobilitySeq)
			}
			return nil
		})
		eventually(t, 20*time.Second, "no stale entry toward the gateway", func() error {
			dst, _, err := r.rr.RemoteMAC(r.vni, r.vmLeaf.MAC.String())
			if err == nil && dst != r.leaf.Cfg.RouterID.String() {
				err = fmt.Errorf("rr sends it to %s", dst)
			}
			if err != nil {
				return err
			}
			if d, err := fdbDst(r.gw2, int(r.vni), r.vmLeaf.MAC.String()); err != nil || d != r.gw1.VTEP {
				return fmt.Errorf("pod2 gateway: %v %v", d, err)
			}
			return nil
		})
		pingAll(t, vms, 20*time.Second)
	})

	t.Run("agent kill -9: l2span-bgpd keeps the session, the fabric keeps our routes", func(t *testing.T) { r.agentKillKeepsRoutes(t, vms) })
	t.Run("l2span-bgpd kill -9: the agent sets the fresh speaker up again", func(t *testing.T) { r.bgpdKillSetsUpAgain(t, vms) })

	t.Run("session flap", func(t *testing.T) {
		if _, err := r.rr.Vtysh("clear bgp l2vpn evpn " + r.gw1.VTEP.String()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "session back", func() error {
			st, err := r.rr.PeerState(r.gw1.VTEP)
			if err == nil && st != "Established" {
				err = fmt.Errorf("%s", st)
			}
			return err
		})
		r.waitRemote(t, r.rr, r.vmPod2.MAC.String(), r.gw1.VTEP, 20*time.Second)
		r.waitRemote(t, r.leaf, r.vmPod2.MAC.String(), r.gw1.VTEP, 20*time.Second)
		pingAll(t, vms, 20*time.Second)
		g, err := r.client.GetGateway(context.Background(), "pod1-gw")
		if err != nil {
			t.Fatal(err)
		}
		if g.Status == nil || len(g.Status.BGPSessions) != 1 {
			t.Fatalf("gateway status has no BGP session: %+v", g.Status)
		}
	})
}

// agentKillKeepsRoutes: with l2span-bgpd, an agent kill -9 leaves the
// session, FRR's kernel entries and the traffic as they are.
func (r *evpnRig) agentKillKeepsRoutes(t *testing.T, vms []*netns.VM) {
	r.waitRemote(t, r.rr, r.vmPod2.MAC.String(), r.gw1.VTEP, 10*time.Second)
	before, err := r.rr.Peer(r.gw1.VTEP)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	r.agent1.kill(syscall.SIGKILL)
	// While the agent is gone (past the 9 s hold time's third, a
	// keepalive or two): the session stays up, FRR's kernel keeps
	// the MAC toward our VTEP, and traffic crosses.
	until := time.Now().Add(4 * time.Second)
	for time.Now().Before(until) {
		if dst, ext, err := r.rr.RemoteMAC(r.vni, r.vmPod2.MAC.String()); err != nil || dst != r.gw1.VTEP.String() || !ext {
			out, _ := r.rr.Vtysh("show bgp l2vpn evpn route")
			t.Fatalf("agent down: rr lost the MAC toward the gateway (dst %q extern_learn %v: %v); its table:\n%s", dst, ext, err, out)
		}
		if err := netns.PingOnce(r.vmRR.NS, r.vmPod2.IPv4.Addr(), 2*time.Second); err != nil {
			t.Fatalf("agent down: traffic stopped: %v", err)
		}
	}
	restarted := time.Now()
	r.agent1.restart()
	// The restarted agent finds its routes in l2span-bgpd: nothing
	// withdrawn, nothing re-learnt, the session never dropped.
	eventually(t, 20*time.Second, "gateway status from the restarted agent", func() error {
		g, err := r.client.GetGateway(context.Background(), "pod1-gw")
		if err != nil {
			return err
		}
		if g.LastSeen.Before(restarted) || g.Status == nil || len(g.Status.BGPSessions) != 1 {
			return fmt.Errorf("last seen %s, status %+v", g.LastSeen, g.Status)
		}
		if s := g.Status.BGPSessions[0]; s.State != "established" || s.Since == nil || s.Since.After(killed) {
			return fmt.Errorf("session %+v: want established since before the kill", s)
		}
		return nil
	})
	pingAll(t, vms, 20*time.Second)
	after, err := r.rr.Peer(r.gw1.VTEP)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "Established" || after.Dropped != before.Dropped || after.Established != before.Established {
		t.Fatalf("rr's session to the gateway: before %+v, after %+v: it dropped", before, after)
	}
}

// bgpdKillSetsUpAgain: l2span-bgpd killed and restarted starts empty; the
// agent sets it up again and the fabric re-learns our routes.
func (r *evpnRig) bgpdKillSetsUpAgain(t *testing.T, vms []*netns.VM) {
	before, err := r.rr.Peer(r.gw1.VTEP)
	if err != nil {
		t.Fatal(err)
	}
	r.bgpd1.kill(syscall.SIGKILL)
	eventually(t, 20*time.Second, "rr sees the session drop", func() error {
		p, err := r.rr.Peer(r.gw1.VTEP)
		if err == nil && p.Dropped == before.Dropped {
			err = fmt.Errorf("not dropped: %+v", p)
		}
		return err
	})
	r.bgpd1.restart()
	eventually(t, 30*time.Second, "session back", func() error {
		p, err := r.rr.Peer(r.gw1.VTEP)
		if err == nil && (p.State != "Established" || p.Established == before.Established) {
			err = fmt.Errorf("%+v", p)
		}
		return err
	})
	r.waitRemote(t, r.rr, r.vmPod2.MAC.String(), r.gw1.VTEP, 20*time.Second)
	r.waitRemote(t, r.leaf, r.vmPod2.MAC.String(), r.gw1.VTEP, 20*time.Second)
	pingAll(t, vms, 20*time.Second)
}
