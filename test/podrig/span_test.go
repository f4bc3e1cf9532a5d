package podrig

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/macaddr"
)

var bins struct {
	once sync.Once
	dir  string
	err  error
}

// buildBin builds the l2span binaries once per test binary and returns the
// path of name.
func buildBin(t *testing.T, name string) string {
	t.Helper()
	bins.once.Do(func() {
		if bins.dir, bins.err = os.MkdirTemp("", "l2span-podrig-bin-"); bins.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", bins.dir+"/", "github.com/l2span/l2span/cmd/l2span-brain",
			"github.com/l2span/l2span/cmd/l2span-agent").CombinedOutput()
		if err != nil {
			bins.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

// spanLab is a brain, the l2span gateways of the pods and their agents.
type spanLab struct {
	t      *testing.T
	r      *Rig
	c      *api.Client
	dir    string
	key    string
	gws    []*Gateway
	agents map[*Gateway]*daemon
	ids    map[*Gateway]string
}

// startAgent runs the real l2span-agent in gw with an agent token of its
// own, the shared gossip key, shrunken failure detection and the pod's
// shadow tunnel IP as its pod VTEP.
func (l *spanLab) startAgent(gw *Gateway, pod *Pod) {
	t := l.t
	t.Helper()
	id := l.ids[gw]
	tok, err := l.c.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleAgent, PodID: pod.ID, GatewayID: id})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(l.dir, id+".token")
	if err := os.WriteFile(tokFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, g := range l.gws {
		seeds = append(seeds, g.IP.String()+":7946")
	}
	d, err := start(gw.NS, filepath.Join(l.dir, id+".log"), nil, buildBin(t, "l2span-agent"),
		"--pod", pod.ID, "--gateway-id", id, "--brain-url", "http://"+BrainIP.String()+":9797", "--brain-token-file", tokFile,
		"--vtep", gw.IP.String(), "--underlay-dev", gw.UnderlayDev, "--pod-vtep", netip.PrefixFrom(pod.ShadowIP, 24).String(),
		"--gossip-bind", gw.IP.String()+":7946", "--gossip-seeds", strings.Join(seeds, ","), "--gossip-key-file", l.key,
		"--gossip-probe-interval", "200ms", "--gossip-probe-timeout", "100ms", "--gossip-suspicion-mult", "2",
		"--state-dir", filepath.Join(l.dir, id), "--metrics-listen", "", "--bpf=false", "--fence-lease", "0",
		"--resync-interval", "5s", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	l.agents[gw] = d
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", id, logTail(filepath.Join(l.dir, id+".log")))
		}
		d.stop()
	})
}

func newSpanLab(t *testing.T, r *Rig) *spanLab {
	l := &spanLab{t: t, r: r, dir: t.TempDir(), agents: map[*Gateway]*daemon{}, ids: map[*Gateway]string{}}
	// Its own VNI range: the shared rig's Neutrons keep other tests' networks.
	// The top Neutron (viaTopNeutron) allocates from 4600:4699.
	l.c = brainFor(t, r, "--vni-ranges", "4500:4599,4600:4699", "--bottom-resync", "1s")
	b := make([]byte, 32)
	rand.Read(b)
	l.key = filepath.Join(l.dir, "gossip.key")
	if err := os.WriteFile(l.key, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *spanLab) addGateway(pod *Pod, name string) *Gateway {
	gw, err := l.r.AddGateway(pod, name)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(gw.Remove)
	l.gws = append(l.gws, gw)
	l.ids[gw] = pod.ID + "-" + name
	return gw
}

// holdsVIP reports whether gw holds ip on its underlay device.
func holdsVIP(gw *Gateway, ip netip.Addr) bool {
	out, err := gw.Run("ip", "-o", "-4", "addr", "show", "dev", gw.UnderlayDev)
	return err == nil && strings.Contains(string(out), " "+ip.String()+"/")
}

// bootVM creates a port at the top in pod, waits for its bottom port,
// binds it to h (as Nova would) and plugs a VM namespace into h.
func bootVM(t *testing.T, c *api.Client, r *Rig, p *Pod, h *Host, netID, mac string, ips ...netip.Prefix) (*VM, api.Port) {
	t.Helper()
	ctx := context.Background()
	var addrs []string
	for _, ip := range ips {
		addrs = append(addrs, ip.Addr().String())
	}
	top, err := c.CreatePort(ctx, api.PortCreate{NetworkID: netID, PodID: p.ID, MAC: mac, IPs: addrs, DeviceOwner: "compute:nova"})
	if err != nil {
		t.Fatal(err)
	}
	return plugBottom(t, r, p, h, top.ID, mac, ips...), top
}

// plugBottom waits for the brain's bottom port of top port topID in p,
// binds it to h (as Nova would) and plugs a VM namespace into h.
func plugBottom(t *testing.T, r *Rig, p *Pod, h *Host, topID, mac string, ips ...netip.Prefix) *VM {
	t.Helper()
	ctx := context.Background()
	var bottom JSON
	if err := waitFor(60*time.Second, "bottom port of "+mac+" in "+p.ID, func() error {
		var err error
		if bottom, err = portNamed(ctx, p, "l2span-"+topID); err == nil && bottom == nil {
			err = fmt.Errorf("not there")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	id := bottom["id"].(string)
	if err := p.UpdatePort(ctx, id, JSON{"binding:host_id": h.Name, "device_id": "vm-" + mac}); err != nil {
		t.Fatal(err)
	}
	hw, _ := macaddr.Parse(mac)
	vm, err := r.PlugVM(h, id, bottom["network_id"].(string), hw, ips...)
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, p, id)
	return vm
}

// shadowRevisions maps each l2span shadow port of the pod to its Neutron
// revision_number.
func shadowRevisions(t *testing.T, p *Pod) map[string]float64 {
	t.Helper()
	ps, err := p.Ports(context.Background(), "device_owner=l2span:shadow")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sp := range ps {
		out[sp["id"].(string)], _ = sp["revision_number"].(float64)
	}
	return out
}

// TestSpanAcrossPods: a shared_vxlan network over two real pods. VMs on
// compute hosts that real Linux bridge agents wired ping each other over
// IPv4 and IPv6 through both pods' own meshes and the l2span gateways,
// which join those meshes as each pod's VTEP G (the shadow tunnel IP the
// shadow ports are bound to). Then the forwarding gateway of pod1 dies
// (kill -9 and its host off the network): the standby takes G over with
// gratuitous ARP and traffic resumes with no shadow port rebound.
func TestSpanAcrossPods(t *testing.T) {
	r := Shared(t)
	ctx := context.Background()
	p1, p2 := r.Pods[0], r.Pods[1]
	l := newSpanLab(t, r)
	gw1a, gw1b, gw2 := l.addGateway(p1, "gwa"), l.addGateway(p1, "gwb"), l.addGateway(p2, "gwa")
	l.startAgent(gw1a, p1)
	l.startAgent(gw1b, p1)
	l.startAgent(gw2, p2)

	n, err := l.c.CreateNetwork(ctx, api.NetworkCreate{Name: "span", Type: "shared_vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"203.0.113.0/24", "2001:db8:15::/64"} {
		if _, err := l.c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: cidr}); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := p1.Hosts[0], p2.Hosts[0]
	vm1, _ := bootVM(t, l.c, r, p1, h1, n.ID, "fa:16:3e:15:01:01",
		netip.MustParsePrefix("203.0.113.31/24"), netip.MustParsePrefix("2001:db8:15::31/64"))
	vm2, _ := bootVM(t, l.c, r, p2, h2, n.ID, "fa:16:3e:15:02:01",
		netip.MustParsePrefix("203.0.113.32/24"), netip.MustParsePrefix("2001:db8:15::32/64"))

	// The compute hosts' kernels (l2population, from the shadow ports)
	// point the remote VM at their own pod's G.
	seg := n.SegmentationID
	for _, c := range []struct {
		h   *Host
		mac string
		g   netip.Addr
	}{{h1, vm2.MAC.String(), p1.ShadowIP}, {h2, vm1.MAC.String(), p2.ShadowIP}} {
		if err := waitFor(60*time.Second, c.mac+" at G on "+c.h.Name, func() error {
			dst, err := c.h.FDBDst(seg, c.mac)
			if err == nil && dst != c.g {
				err = fmt.Errorf("points at %s", dst)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Each pod's forwarder holds G and knows its pod's VM behind its host,
	// as the brain read it back from the pod's Neutron.
	var df1 *Gateway
	if err := waitFor(30*time.Second, "pod1's G held", func() error {
		for _, g := range []*Gateway{gw1a, gw1b} {
			if holdsVIP(g, p1.ShadowIP) {
				df1 = g
				return nil
			}
		}
		return fmt.Errorf("no gateway of pod1 holds %s", p1.ShadowIP)
	}); err != nil {
		t.Fatal(err)
	}
	podSideAt := func(gw *Gateway, vm *VM, host *Host) error {
		out, err := gw.Run("bridge", "fdb", "show", "dev", fmt.Sprintf("l2sp%d", seg))
		if err != nil {
			return err
		}
		want := vm.MAC.String() + " dst " + host.IP.String()
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("no %q in %s's pod-side fdb:\n%s", want, l.ids[gw], out)
		}
		return nil
	}
	for _, c := range []struct {
		gw   *Gateway
		vm   *VM
		host *Host
	}{{df1, vm1, h1}, {gw2, vm2, h2}} {
		if err := waitFor(30*time.Second, "pod-side fdb", func() error { return podSideAt(c.gw, c.vm, c.host) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range []netip.Addr{vm2.IPs[0].Addr(), vm2.IPs[1].Addr()} {
		if err := waitFor(20*time.Second, "ping "+ip.String(), func() error { return vm1.Ping(ip) }); err != nil {
			t.Fatal(err)
		}
	}

	// A shadow port deleted by hand in pod2 comes back with the periodic
	// resync, and h2's kernel points vm1 at G again.
	handDeleted(t, l.c, p2, h2, vm1, seg)

	// Failover: pod1's forwarder dies with its host. Traffic resumes through
	// the standby, which takes G over; no shadow port is touched.
	standby := gw1a
	if df1 == gw1a {
		standby = gw1b
	}
	before := shadowRevisions(t, p1)
	pinger, err := startPinger(vm1, vm2.IPs[0].Addr(), filepath.Join(l.dir, "ping.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFor(10*time.Second, "pinger answered", func() error {
		if len(pinger.replies()) < 5 {
			return fmt.Errorf("no replies yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = syscall.Kill(-l.agents[df1].cmd.Process.Pid, syscall.SIGKILL)
	if _, err := df1.Run("ip", "link", "set", df1.UnderlayDev, "down"); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(30*time.Second, "traffic through the standby", func() error {
		rs := pinger.replies()
		if len(rs) == 0 || rs[len(rs)-1].Before(killed.Add(100*time.Millisecond)) {
			return fmt.Errorf("no reply since the kill")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A second of steady replies after recovery, to see the window close.
	time.Sleep(time.Second)
	rs := pinger.stop()
	if !holdsVIP(standby, p1.ShadowIP) {
		t.Errorf("standby %s does not hold %s", l.ids[standby], p1.ShadowIP)
	}
	window := lossWindow(rs, killed)
	t.Logf("failover (kill -9 of the forwarder, its host off the network): loss window %s", window.Round(time.Millisecond))
	after := shadowRevisions(t, p1)
	if !maps.Equal(before, after) {
		t.Errorf("shadow ports changed in pod1's Neutron: before %v, after %v", before, after)
	}
	t.Logf("shadow ports in pod1: %d, rebound by the failover: 0", len(before))
	if err := podSideAt(standby, vm1, h1); err != nil {
		t.Error(err)
	}

	// mixed_vlan_vxlan: each pod's Neutron chooses its own VXLAN segment
	// (their VNI ranges do not overlap); the gateways translate.
	mixed(t, l, p1.Hosts[1], p2.Hosts[1])

	// Once through the top Neutron with the l2span ML2 driver.
	viaTopNeutron(t, l, p1.Hosts[1], p2.Hosts[0])
}

// handDeleted deletes vm's shadow port in p by hand and waits for the
// brain's periodic resync to make it again and for h's kernel to point
// vm's MAC at p's G once more.
func handDeleted(t *testing.T, c *api.Client, p *Pod, h *Host, vm *VM, seg int) {
	t.Helper()
	ctx := context.Background()
	ps, err := p.Ports(ctx, "device_owner=l2span:shadow&mac_address="+vm.MAC.String())
	if err != nil || len(ps) != 1 {
		t.Fatalf("shadow port of %s in %s: %v %v", vm.MAC, p.ID, ps, err)
	}
	gone := ps[0]["id"].(string)
	if err := p.DeletePort(ctx, gone); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := waitFor(30*time.Second, "shadow port made again by the resync", func() error {
		ps, err := p.Ports(ctx, "device_owner=l2span:shadow&mac_address="+vm.MAC.String())
		switch {
		case err != nil:
			return err
		case len(ps) != 1 || ps[0]["id"] == gone || ps[0]["status"] != "ACTIVE":
			return fmt.Errorf("not made again: %v", ps)
		}
		dst, err := h.FDBDst(seg, vm.MAC.String())
		if err == nil && dst != p.ShadowIP {
			err = fmt.Errorf("%s points at %s", vm.MAC, dst)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("shadow port deleted by hand: back and in the compute host's FDB after %s", time.Since(began).Round(time.Millisecond))
}

// mixed spans a mixed_vlan_vxlan network over both pods, whose Neutrons
// choose different VXLAN segments, and pings across it.
func mixed(t *testing.T, l *spanLab, h1, h2 *Host) {
	t.Helper()
	ctx := context.Background()
	n, err := l.c.CreateNetwork(ctx, api.NetworkCreate{Name: "mixed", Type: "mixed_vlan_vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"192.0.2.0/24", "2001:db8:16::/64"} {
		if _, err := l.c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: cidr}); err != nil {
			t.Fatal(err)
		}
	}
	p1, p2 := l.r.Pods[0], l.r.Pods[1]
	vm3, _ := bootVM(t, l.c, l.r, p1, h1, n.ID, "fa:16:3e:16:01:01",
		netip.MustParsePrefix("192.0.2.31/24"), netip.MustParsePrefix("2001:db8:16::31/64"))
	vm4, _ := bootVM(t, l.c, l.r, p2, h2, n.ID, "fa:16:3e:16:02:01",
		netip.MustParsePrefix("192.0.2.32/24"), netip.MustParsePrefix("2001:db8:16::32/64"))
	segs := map[string]int{}
	if err := waitFor(30*time.Second, "both pods' segments reported", func() error {
		got, err := l.c.GetNetwork(ctx, n.ID)
		if err != nil {
			return err
		}
		for _, g := range got.Segments {
			if g.NetworkType == "vxlan" && g.SegmentationID > 0 {
				segs[g.PodID] = g.SegmentationID
			}
		}
		if len(segs) < 2 {
			return fmt.Errorf("segments %v", got.Segments)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if segs[p1.ID] == segs[p2.ID] || segs[p1.ID] == n.SegmentationID {
		t.Fatalf("segments %v, overlay %d: want each pod its own", segs, n.SegmentationID)
	}
	t.Logf("mixed_vlan_vxlan: overlay VNI %d, pod1 segment %d, pod2 segment %d", n.SegmentationID, segs[p1.ID], segs[p2.ID])
	for _, ip := range []netip.Addr{vm4.IPs[0].Addr(), vm4.IPs[1].Addr()} {
		if err := waitFor(45*time.Second, "ping "+ip.String()+" across segments", func() error { return vm3.Ping(ip) }); err != nil {
			t.Fatal(err)
		}
	}
}

// pinger is ping -D every 20 ms from a VM, its replies' times read back
// from its log.
type pinger struct {
	d   *daemon
	log string
}

const pingInterval = 20 * time.Millisecond

func startPinger(vm *VM, ip netip.Addr, log string) (*pinger, error) {
	d, err := start(vm.NS, log, nil, "stdbuf", "-oL", "ping", "-D", "-n", "-i", "0.02", "-W", "1", ip.String())
	if err != nil {
		return nil, err
	}
	return &pinger{d: d, log: log}, nil
}

// replies are the times of the replies so far, in order.
func (p *pinger) replies() []time.Time {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") || !strings.Contains(line, "bytes from") {
			continue
		}
		ts, _, _ := strings.Cut(line[1:], "]")
		sec, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		out = append(out, time.Unix(0, int64(sec*1e9)))
	}
	return out
}

// stop ends ping (SIGINT, so it flushes) and returns its replies.
func (p *pinger) stop() []time.Time {
	_ = syscall.Kill(-p.d.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.d.exited:
	case <-time.After(5 * time.Second):
		p.d.stop()
	}
	return p.replies()
}

// lossWindow is the longest silence between two replies around since,
// less one ping interval.
func lossWindow(rs []time.Time, since time.Time) time.Duration {
	slices.SortFunc(rs, func(a, b time.Time) int { return a.Compare(b) })
	var worst time.Duration
	for i := 1; i < len(rs); i++ {
		if rs[i].Before(since) {
			continue
		}
		if gap := rs[i].Sub(rs[i-1]); gap > worst {
			worst = gap
		}
	}
	return max(worst-pingInterval, 0)
}
