package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// haLab is three pods with two gateways each on the same pod-local segment,
// a VM per pod, one shared_vxlan network with the VMs' ports.
type haLab struct {
	*lab
	net api.Network
	vms []*netns.VM
	// gws[pod] = the pod's two gateways.
	gws [][2]*netns.Gateway
}

func newHALab(t testing.TB, agentArgs ...string) *haLab {
	l := newLab(t)
	ctx := context.Background()
	h := &haLab{lab: l}
	for i := 1; i <= 3; i++ {
		l.mkPod(fmt.Sprintf("pod%d", i), fmt.Sprintf("az%d", i))
	}
	var err error
	h.net, err = l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "ha", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.client.CreateSubnet(ctx, api.Subnet{NetworkID: h.net.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}); err != nil {
		t.Fatal(err)
	}
	ifname := fmt.Sprintf("seg%d", h.net.SegmentationID)
	var ports []api.PortCreate
	for i := 1; i <= 3; i++ {
		pod := fmt.Sprintf("pod%d", i)
		a, b := l.addGateway(pod, "gwa"), l.addGateway(pod, "gwb")
		seg := l.rig.AddSegment(a, ifname)
		l.rig.Attach(seg, b, ifname)
		mac := fmt.Sprintf("fa:16:3e:00:00:%02x", i)
		vm := l.rig.AddVM(pod, seg, pod+"-vm", netns.MustMAC(mac), netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/24", 10+i)), netip.Prefix{})
		h.vms = append(h.vms, vm)
		h.gws = append(h.gws, [2]*netns.Gateway{a, b})
		ports = append(ports, api.PortCreate{NetworkID: h.net.ID, PodID: pod, MAC: mac, IPs: []string{vm.IPv4.Addr().String()}})
	}
	for _, pair := range h.gws {
		for _, gw := range pair {
			l.startAgent(gw, func(a *[]string) { *a = append(*a, agentArgs...) })
		}
	}
	if _, err := l.client.CreatePorts(ctx, ports); err != nil {
		t.Fatal(err)
	}
	for _, a := range h.vms {
		for _, b := range h.vms {
			if a != b {
				eventually(t, 15*time.Second, fmt.Sprintf("%s pings %s", a.Host, b.IPv4.Addr()), func() error {
					return netns.PingOnce(a.NS, b.IPv4.Addr(), 300*time.Millisecond)
				})
			}
		}
	}
	return h
}

// forwarding reports whether gw bridges the network: its local interface
// is a port of the network's bridge.
func (h *haLab) forwarding(gw *netns.Gateway) bool {
	link, err := gw.Handle().LinkByName(fmt.Sprintf("seg%d", h.net.SegmentationID))
	if err != nil {
		return false
	}
	br, err := gw.Handle().LinkByName(fmt.Sprintf("l2sb%d", h.net.SegmentationID))
	return err == nil && link.Attrs().MasterIndex == br.Attrs().Index
}

// df returns the index (0 or 1) of the pod's gateway that forwards, or -1.
func (h *haLab) df(pod int) int {
	a, b := h.forwarding(h.gws[pod][0]), h.forwarding(h.gws[pod][1])
	switch {
	case a && !b:
		return 0
	case b && !a:
		return 1
	}
	return -1
}

// overlapSampler watches a pod's two gateways and records the longest time
// both bridged the network at once.
type overlapSampler struct {
	stop    chan struct{}
	done    sync.WaitGroup
	longest time.Duration
	samples int
}

func (h *haLab) sampleOverlap(pod int) *overlapSampler {
	s := &overlapSampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		var since time.Time
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			both := h.forwarding(h.gws[pod][0]) && h.forwarding(h.gws[pod][1])
			now := time.Now()
			s.samples++
			switch {
			case both && since.IsZero():
				since = now
			case both:
				s.longest = max(s.longest, now.Sub(since))
			default:
				since = time.Time{}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return s
}

func (s *overlapSampler) Stop() time.Duration {
	close(s.stop)
	s.done.Wait()
	return s.longest
}

// Gateway HA with the brain stopped for the whole failover: kill -9 the
// designated forwarder of pod2 during a continuous ping from pod1; the
// standby takes over and remote pods repoint. The killed gateway comes back
// and the network moves back as the hashing says, with no window where both
// gateways bridge it longer than one probe interval.
func TestGatewayFailover(t *testing.T) {
	t.Parallel()
	h := newHALab(t)
	h.brain.kill(syscall.SIGKILL)
	df := h.df(1)
	if df < 0 {
		t.Fatalf("pod2 has no single forwarder (a=%v b=%v)", h.forwarding(h.gws[1][0]), h.forwarding(h.gws[1][1]))
	}
	victim, standby := h.gws[1][df], h.gws[1][1-df]
	vagent := h.agents[victim.Pod+"-"+victim.Host]

	const interval = 10 * time.Millisecond
	p, err := netns.StartPinger(h.vms[0].NS, h.vms[1].IPv4.Addr(), interval)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	vagent.kill(syscall.SIGKILL)
	// The kernel of a host whose agent died still forwards: to make it a
	// real gateway failure, take its devices down as a dead host would.
	killHost(t, victim, h.net.SegmentationID)
	killed := time.Now()
	eventually(t, 10*time.Second, "standby forwards", func() error {
		if !h.forwarding(standby) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	takeover := time.Since(killed)
	eventually(t, 10*time.Second, "pod1 repointed pod2's port to the standby", func() error {
		dst, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
		if err == nil && dst != standby.VTEP {
			return fmt.Errorf("still %s", dst)
		}
		return err
	})
	time.Sleep(500 * time.Millisecond)
	sent, got := p.Stop(300 * time.Millisecond)
	lossWindow := time.Duration(sent-got) * interval
	t.Logf("kill -9 of pod2's DF: standby forwarding after %s; %d of %d pings lost (loss window ~%s)",
		takeover.Round(time.Millisecond), sent-got, sent, lossWindow)
	if lossWindow > 3*time.Second {
		t.Fatalf("loss window %s", lossWindow)
	}
	if err := netns.PingOnce(h.vms[0].NS, h.vms[1].IPv4.Addr(), time.Second); err != nil {
		t.Fatalf("after failover: %v", err)
	}

	// The victim comes back (brain still down; its cached state suffices).
	reviveHost(t, victim, h.net.SegmentationID)
	sampler := h.sampleOverlap(1)
	p, err = netns.StartPinger(h.vms[0].NS, h.vms[1].IPv4.Addr(), interval)
	if err != nil {
		t.Fatal(err)
	}
	vagent.restart()
	eventually(t, 15*time.Second, "network moved back to the restarted DF", func() error {
		if h.df(1) != df {
			return fmt.Errorf("df is %d", h.df(1))
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	overlap := sampler.Stop()
	sent, got = p.Stop(300 * time.Millisecond)
	t.Logf("move back: longest double-forwarding window %s over %d samples; %d of %d pings lost", overlap, sampler.samples, sent-got, sent)
	if overlap > 200*time.Millisecond {
		t.Fatalf("both gateways of pod2 bridged the network for %s (> one probe interval)", overlap)
	}
	eventually(t, 10*time.Second, "pod1 points back at the DF", func() error {
		dst, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
		if err == nil && dst != victim.VTEP {
			return fmt.Errorf("still %s", dst)
		}
		return err
	})
}

// killHost makes a gateway host look dead: its underlay and segment links
// go down and its l2span devices vanish, as a crashed host that reboots
// loses them. (A host whose agent alone died keeps bridging: see
// docs/ha.md.)
func killHost(t testing.TB, gw *netns.Gateway, vni int) {
	t.Helper()
	for _, name := range []string{fmt.Sprintf("l2sv%d", vni), fmt.Sprintf("l2sb%d", vni)} {
		if link, err := gw.Handle().LinkByName(name); err == nil {
			if err := gw.Handle().LinkDel(link); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range []string{gw.UnderlayDev, fmt.Sprintf("seg%d", vni)} {
		if link, err := gw.Handle().LinkByName(name); err == nil {
			if err := gw.Handle().LinkSetDown(link); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func reviveHost(t testing.TB, gw *netns.Gateway, vni int) {
	t.Helper()
	for _, name := range []string{gw.UnderlayDev, fmt.Sprintf("seg%d", vni)} {
		link, err := gw.Handle().LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Handle().LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the underlay address to be usable again.
	eventually(t, 5*time.Second, "underlay up", func() error {
		link, _ := gw.Handle().LinkByName(gw.UnderlayDev)
		if link == nil || link.Attrs().OperState != netlink.OperUp {
			return fmt.Errorf("down")
		}
		return nil
	})
}

// A gateway alive in gossip that cannot program its dataplane withdraws
// from forwarder election: its pod's standby and the remote pods move off
// it without the brain.
func TestUnhealthyGatewayWithdraws(t *testing.T) {
	t.Parallel()
	h := newHALab(t)
	df := h.df(1)
	if df < 0 {
		t.Fatal("pod2 has no single forwarder")
	}
	sick, standby := h.gws[1][df], h.gws[1][1-df]
	// Break the DF's dataplane under its feet: its local segment interface
	// disappears (renamed), so every reconcile fails.
	ifname := fmt.Sprintf("seg%d", h.net.SegmentationID)
	sick.MustExec("ip", "link", "set", ifname, "down")
	sick.MustExec("ip", "link", "set", ifname, "name", "broken0")
	eventually(t, 15*time.Second, "standby takes over from the unhealthy gateway", func() error {
		if !h.forwarding(standby) {
			return fmt.Errorf("standby not forwarding")
		}
		return nil
	})
	eventually(t, 10*time.Second, "pod1 points at the standby", func() error {
		dst, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
		if err == nil && dst != standby.VTEP {
			return fmt.Errorf("still %s", dst)
		}
		return err
	})
	eventually(t, 10*time.Second, "ping through the standby", func() error {
		return netns.PingOnce(h.vms[0].NS, h.vms[1].IPv4.Addr(), 300*time.Millisecond)
	})
	// Repaired, it becomes healthy again and takes its networks back.
	sick.MustExec("ip", "link", "set", "broken0", "name", ifname)
	eventually(t, 20*time.Second, "repaired gateway forwards again", func() error {
		if h.df(1) != df {
			return fmt.Errorf("df is %d", h.df(1))
		}
		return nil
	})
}

// A gossip partition inside a pod: the two gateways of pod2 cannot reach
// each other on the gossip port while every other gateway reaches both.
// memberlist's indirect probes (through other pods' gateways) keep each one
// alive in the other's view, so nothing changes: one forwarder, remote pods
// keep their entries, no loss. (A gateway cut off from every peer is the
// split-brain case; docs/ha.md says what happens then.)
func TestPartitionInsidePod(t *testing.T) {
	t.Parallel()
	h := newHALab(t)
	df := h.df(1)
	if df < 0 {
		t.Fatal("pod2 has no single forwarder")
	}
	a, b := h.gws[1][0], h.gws[1][1]
	before, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
	if err != nil {
		t.Fatal(err)
	}
	p, err := netns.StartPinger(h.vms[0].NS, h.vms[1].IPv4.Addr(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sampler := h.sampleOverlap(1)
	// Drop gossip between a and b only, in b's namespace, both directions.
	rules := fmt.Sprintf(`table inet l2spart {
	chain in { type filter hook input priority 0; ip saddr %s tcp dport 7946 drop; ip saddr %s udp dport 7946 drop; }
	chain out { type filter hook output priority 0; ip daddr %s tcp dport 7946 drop; ip daddr %s udp dport 7946 drop; }
}`, a.VTEP, a.VTEP, a.VTEP, a.VTEP)
	f := filepath.Join(t.TempDir(), "part.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	b.MustExec("nft", "-f", f)
	// Several failure-detection periods.
	time.Sleep(4 * time.Second)
	if got := h.df(1); got != df {
		t.Fatalf("forwarder of pod2 changed during an in-pod partition: %d -> %d", df, got)
	}
	during, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
	if err != nil || during != before {
		t.Fatalf("remote pod repointed during an in-pod partition: %s -> %s (%v)", before, during, err)
	}
	b.MustExec("nft", "delete", "table", "inet", "l2spart")
	overlap := sampler.Stop()
	sent, got := p.Stop(300 * time.Millisecond)
	t.Logf("in-pod gossip partition: double forwarding %s, %d of %d pings lost", overlap, sent-got, sent)
	if overlap > 0 || sent != got {
		t.Fatalf("in-pod partition: both forwarded for %s; lost %d of %d pings", overlap, sent-got, sent)
	}
}
