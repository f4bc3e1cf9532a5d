// Package e2e runs the real l2span-brain and l2span-agent binaries in
// network-namespace rigs and asserts on what crosses the overlay.
package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// spanned builds nPods pods, each with one gateway running an agent and
// one VM on the pod-local segment of one shared_vxlan network. Ports are
// not yet in the brain.
type spanned struct {
	*lab
	net   api.Network
	vms   []*netns.VM
	gws   []*netns.Gateway
	ports []api.PortCreate
}

func newSpanned(t *testing.T, nPods int, opts ...agentOpt) *spanned {
	l := newLab(t)
	ctx := context.Background()
	s := &spanned{lab: l}
	for i := 1; i <= nPods; i++ {
		l.mkPod(fmt.Sprintf("pod%d", i), fmt.Sprintf("az%d", i))
	}
	var err error
	s.net, err = l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range []api.Subnet{{CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}, {CIDR: "2001:db8::/64", GatewayIP: "2001:db8::1"}} {
		sn.NetworkID = s.net.ID
		if _, err := l.client.CreateSubnet(ctx, sn); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= nPods; i++ {
		pod := fmt.Sprintf("pod%d", i)
		gw := l.addGateway(pod, "gw")
		seg := l.rig.AddSegment(gw, fmt.Sprintf("seg%d", s.net.SegmentationID))
		mac := fmt.Sprintf("fa:16:3e:00:00:%02x", i)
		vm := l.rig.AddVM(pod, seg, fmt.Sprintf("%s-vm", pod), netns.MustMAC(mac),
			netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/24", 10+i)), netip.MustParsePrefix(fmt.Sprintf("2001:db8::%d/64", 10+i)))
		s.vms = append(s.vms, vm)
		s.gws = append(s.gws, gw)
		s.ports = append(s.ports, api.PortCreate{NetworkID: s.net.ID, PodID: pod, MAC: mac,
			IPs: []string{vm.IPv4.Addr().String(), vm.IPv6.Addr().String()}})
	}
	for _, gw := range s.gws {
		l.startAgent(gw, opts...)
	}
	return s
}

func (s *spanned) createPorts(t *testing.T) []api.Port {
	t.Helper()
	ports, err := s.client.CreatePorts(context.Background(), s.ports)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// Scenario 1: three pods, one shared_vxlan network, a VM in each; every pair
// pings over IPv4 and IPv6, and only once the brain knows the ports.
// Scenario 2 follows: a deleted port's entries go from every remote gateway.
func TestSpanPingAndPortDelete(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 3)
	// Agents are up but the network has no port: nothing crosses.
	time.Sleep(500 * time.Millisecond)
	if err := netns.PingOnce(s.vms[0].NS, s.vms[1].IPv4.Addr(), 300*time.Millisecond); err == nil {
		t.Fatal("ping crossed pods before the brain knew any port")
	}
	start := time.Now()
	ports := s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	t.Logf("all pairs ping over IPv4 and IPv6 %s after the ports were created", time.Since(start).Round(time.Millisecond))

	vni := s.net.SegmentationID
	mac3 := s.ports[2].MAC
	for _, gw := range s.gws[:2] {
		dst, err := fdbDst(gw, vni, mac3)
		if err != nil || dst != s.gws[2].VTEP {
			t.Fatalf("%s: fdb %s -> %v (%v), want %s", gw.Name(), mac3, dst, err, s.gws[2].VTEP)
		}
	}
	// Only ports of other pods are populated.
	if _, err := fdbDst(s.gws[2], vni, mac3); err == nil {
		t.Fatalf("pod3's gateway holds an fdb entry for its own VM")
	}
	if err := s.client.DeletePort(context.Background(), ports[2].ID); err != nil {
		t.Fatal(err)
	}
	for _, gw := range s.gws[:2] {
		eventually(t, 5*time.Second, "fdb entry of the deleted port removed from "+gw.Name(), func() error {
			if _, err := fdbDst(gw, vni, mac3); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})
	}
	// The other two pods still talk.
	if err := netns.PingOnce(s.vms[0].NS, s.vms[1].IPv4.Addr(), time.Second); err != nil {
		t.Fatal(err)
	}
}

// Scenario 3: kill -9 an agent and restart it: a continuous ping across pods
// loses nothing, because nothing is flushed, neither by the restarted agent
// nor by the remote agents that saw it die.
func TestAgentKill9KeepsTraffic(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2, func(a *[]string) { *a = append(*a, "--metrics-listen", "127.0.0.1:9697") })
	s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	p, err := netns.StartPinger(s.vms[0].NS, s.vms[1].IPv4.Addr(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitPings(t, p, 15)
	agent := s.agents["pod2-gw"]
	agent.kill(syscall.SIGKILL)
	vni := strconv.Itoa(s.net.SegmentationID)
	eventually(t, 15*time.Second, "pod1's agent sees pod2's gateway dead in gossip", func() error {
		v, err := agentDataplane(s.gws[0])
		if err != nil || !slices.Contains(v.Unreachable[vni], "pod2") {
			return fmt.Errorf("unreachable %v (%v)", v.Unreachable, err)
		}
		return nil
	})
	agent.restart()
	eventually(t, 15*time.Second, "pod2's restarted agent forwards the network and pod1's agent sees it alive", func() error {
		v, err := agentDataplane(s.gws[1])
		if err != nil || !slices.ContainsFunc(v.Networks, func(n api.AgentNetwork) bool { return int(n.VNI) == s.net.SegmentationID }) {
			return fmt.Errorf("pod2 forwards %v (%v)", v.Networks, err)
		}
		if v, err = agentDataplane(s.gws[0]); err != nil || len(v.Unreachable[vni]) > 0 {
			return fmt.Errorf("pod1 finds unreachable %v (%v)", v.Unreachable, err)
		}
		return nil
	})
	// A second of pings through the restarted agent's dataplane.
	sent, _ := p.Stats()
	waitPings(t, p, max(100, sent+50))
	sent, got := p.Stop(500 * time.Millisecond)
	t.Logf("continuous ping across kill -9 and restart: %d sent, %d received", sent, got)
	if sent < 100 || got != sent {
		t.Fatalf("lost %d of %d pings across an agent kill -9 and restart", sent-got, sent)
	}
}

// waitPings waits until p has sent n pings.
func waitPings(t *testing.T, p *netns.Pinger, n int) {
	t.Helper()
	eventually(t, time.Duration(n)*100*time.Millisecond, fmt.Sprintf("%d pings sent", n), func() error {
		if sent, _ := p.Stats(); sent < n {
			return fmt.Errorf("%d sent", sent)
		}
		return nil
	})
}

// Scenario 4: with the brain stopped the dataplane keeps working; a port
// created after the brain is back converges.
func TestBrainDownKeepsDataplane(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2)
	s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	s.brain.kill(syscall.SIGKILL)
	p, err := netns.StartPinger(s.vms[0].NS, s.vms[1].IPv4.Addr(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// A resync (5s) happens while the brain is away: nothing is withdrawn.
	time.Sleep(6 * time.Second)
	sent, got := p.Stop(500 * time.Millisecond)
	if sent < 100 || got != sent {
		t.Fatalf("with the brain down: lost %d of %d pings", sent-got, sent)
	}
	// An agent restarted while the brain is down keeps its cached state.
	s.agents["pod1-gw"].kill(syscall.SIGKILL)
	s.agents["pod1-gw"].restart()
	time.Sleep(time.Second)
	if err := netns.PingOnce(s.vms[0].NS, s.vms[1].IPv4.Addr(), time.Second); err != nil {
		t.Fatalf("after an agent restart with the brain down: %v", err)
	}
	s.brain.restart()
	s.waitBrain()
	// A new VM in pod2 converges into pod1's gateway.
	mac := "fa:16:3e:00:00:99"
	if _, err := s.client.CreatePort(context.Background(), api.PortCreate{NetworkID: s.net.ID, PodID: "pod2", MAC: mac, IPs: []string{"203.0.113.99"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "new port's fdb entry in pod1's gateway", func() error {
		dst, err := fdbDst(s.gws[0], s.net.SegmentationID, mac)
		if err == nil && dst != s.gws[1].VTEP {
			return fmt.Errorf("points at %s", dst)
		}
		return err
	})
}

// Scenario 5: a local network never leaves its pod.
func TestLocalNetworkStaysInPod(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	ctx := context.Background()
	l.mkPod("pod1", "az1")
	l.mkPod("pod2", "az2")
	gw1, gw2 := l.addGateway("pod1", "gw"), l.addGateway("pod2", "gw")
	l.startAgent(gw1)
	l.startAgent(gw2)
	n, err := l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "loc", Type: api.TypeLocal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	_, err = l.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"})
	if !api.IsStatus(err, 409) {
		t.Fatalf("second pod of a local network: %v", err)
	}
	st, err := l.client.PodState(ctx, "pod1")
	if err != nil || len(st.Networks) != 0 {
		t.Fatalf("pod1's desired state holds a local network: %+v %v", st, err)
	}
	// A spanned network next to it proves the agents are programming.
	vx, err := l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "vx", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	for i, pod := range []string{"pod1", "pod2"} {
		if _, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: vx.ID, PodID: pod, MAC: fmt.Sprintf("fa:16:3e:00:01:%02x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "spanned network programmed in both pods", func() error {
		if _, err := fdbDst(gw1, vx.SegmentationID, "fa:16:3e:00:01:01"); err != nil {
			return err
		}
		_, err := fdbDst(gw2, vx.SegmentationID, "fa:16:3e:00:01:00")
		return err
	})
	for _, gw := range []*netns.Gateway{gw1, gw2} {
		links, err := gw.Handle().LinkList()
		if err != nil {
			t.Fatal(err)
		}
		var devs []string
		for _, lk := range links {
			if lk.Type() == "vxlan" {
				devs = append(devs, lk.Attrs().Name)
			}
		}
		if len(devs) != 1 || devs[0] != fmt.Sprintf("l2sv%d", vx.SegmentationID) {
			t.Fatalf("%s: vxlan devices %v, want only the spanned network's", gw.Name(), devs)
		}
	}
}

// Scenario 6: with populate_macs off the gateways flood and learn, and the
// ping still crosses.
func TestFloodAndLearn(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2, noPopulate)
	s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	// No remote MAC was programmed: whatever the VXLAN device knows of the
	// remote VM it learned from traffic.
	link, err := s.gws[0].Handle().LinkByName(fmt.Sprintf("l2sv%d", s.net.SegmentationID))
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := s.gws[0].Handle().NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.HardwareAddr.String() == s.ports[1].MAC && n.Flags&0x10 != 0 /* NTF_EXT_LEARNED */ {
			t.Fatalf("populate off, yet the remote MAC was programmed: %+v", n)
		}
	}
}

// An FDB entry or a whole device removed behind the agent's back comes back
// from a kernel notification, long before the periodic resync (set to 60 s
// here) would have repaired it.
func TestKernelDriftRepairedAtOnce(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2, func(a *[]string) { *a = append(*a, "--resync-interval", "60s", "--metrics-listen", "127.0.0.1:9697") })
	s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	gw, vni, mac := s.gws[0], s.net.SegmentationID, s.ports[1].MAC
	// The agent may put it back before any check here could see it gone:
	// the drift counter below is the proof that it was missing and repaired.
	gw.MustExec("bridge", "fdb", "del", mac, "dev", fmt.Sprintf("l2sv%d", vni), "dst", s.gws[1].VTEP.String(), "self")
	eventually(t, 10*time.Second, "deleted fdb entry restored", func() error {
		_, err := fdbDst(gw, vni, mac)
		return err
	})
	eventually(t, 5*time.Second, "agent's dataplane view: no drift left", func() error {
		v, err := agentDataplane(gw)
		if err != nil {
			return err
		}
		if len(v.Networks) != 1 || v.Networks[0].MACs != 1 || v.Drift == nil || *v.Drift != (api.AgentDrift{}) {
			return fmt.Errorf("view %+v drift %+v", v, v.Drift)
		}
		return nil
	})
	eventually(t, 5*time.Second, "repair counted as drift", func() error {
		if v := agentMetric(t, gw, `l2span_agent_drift_repaired_total{kind="mac"}`); v == "" || v == "0" {
			return fmt.Errorf("drift_repaired{mac} = %q", v)
		}
		return nil
	})
	gw.MustExec("ip", "link", "del", fmt.Sprintf("l2sv%d", vni))
	eventually(t, 10*time.Second, "deleted vxlan device restored with its entries", func() error {
		_, err := fdbDst(gw, vni, mac)
		return err
	})
	if err := netns.PingOnce(s.vms[0].NS, s.vms[1].IPv4.Addr(), 2*time.Second); err != nil {
		t.Fatalf("after repair: %v", err)
	}
}

// A port re-bound in another pod (a VM moved) is repointed on every remote
// gateway, carrying its new mobility sequence.
func TestPortMoveRepoints(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 3)
	ports := s.createPorts(t)
	pingAll(t, s.vms[:2], 10*time.Second)
	vni, mac := s.net.SegmentationID, s.ports[1].MAC
	pod3 := "pod3"
	moved, err := s.client.UpdatePort(context.Background(), ports[1].ID, api.PortUpdate{PodID: &pod3})
	if err != nil || moved.MobilitySeq != 1 {
		t.Fatalf("move: %+v %v", moved, err)
	}
	eventually(t, 10*time.Second, "pod1's gateway points the moved MAC at pod3", func() error {
		dst, err := fdbDst(s.gws[0], vni, mac)
		if err == nil && dst != s.gws[2].VTEP {
			return fmt.Errorf("points at %s", dst)
		}
		return err
	})
	// pod3 now owns the MAC: its own gateway holds no entry for it; pod2,
	// whose only port it was, leaves the network's span altogether.
	eventually(t, 10*time.Second, "pod3's gateway drops its remote entry", func() error {
		if _, err := fdbDst(s.gws[2], vni, mac); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	eventually(t, 10*time.Second, "pod2's gateway drops the network", func() error {
		if _, err := s.gws[1].Handle().LinkByName(fmt.Sprintf("l2sv%d", vni)); err == nil {
			return fmt.Errorf("l2sv%d still there", vni)
		}
		return nil
	})
}
