package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/jobs"
	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// These are unit tests of the network_sync logic over a fake Bottom (no
// Neutron): what it creates per network type, that a re-run creates
// nothing, the teardown order, the mixed segment read-back, and that a
// Bottom error keeps the job retrying with the error kept.

// fakeBottom is an in-memory Neutron of one pod. Every call is logged as
// "Method name-or-id"; fail makes a method return an error.
type fakeBottom struct {
	mu      sync.Mutex
	seq     int
	nets    map[string]jobs.Network
	subs    map[string]jobs.Subnet
	ports   map[string]jobs.Port
	log     []string
	fail    map[string]error // by method name
	mixedTo jobs.Network     // segment chosen for a network with no provider attributes
	asked   []jobs.Network   // CreateNetwork specs as asked
	macByte byte             // this pod's MACs are fa:16:3e:<macByte>:...
}

func newFake() *fakeBottom {
	return &fakeBottom{nets: map[string]jobs.Network{}, subs: map[string]jobs.Subnet{}, ports: map[string]jobs.Port{},
		fail: map[string]error{}, mixedTo: jobs.Network{NetworkType: "vlan", PhysicalNetwork: "physbottom", SegmentationID: 1234}}
}

func (f *fakeBottom) call(method, arg string) error {
	f.log = append(f.log, method+" "+arg)
	return f.fail[method]
}

func (f *fakeBottom) id(kind string) string { f.seq++; return fmt.Sprintf("%s-%d", kind, f.seq) }

func (f *fakeBottom) FindNetworks(_ context.Context, project, name string) ([]jobs.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("FindNetworks", name); err != nil {
		return nil, err
	}
	var out []jobs.Network
	for _, n := range f.nets {
		if n.Name == name && n.ProjectID == project {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f *fakeBottom) CreateNetwork(_ context.Context, spec jobs.Network) (jobs.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateNetwork", spec.Name); err != nil {
		return jobs.Network{}, err
	}
	f.asked = append(f.asked, spec)
	if spec.NetworkType == "" {
		spec.NetworkType, spec.PhysicalNetwork, spec.SegmentationID = f.mixedTo.NetworkType, f.mixedTo.PhysicalNetwork, f.mixedTo.SegmentationID
	}
	spec.ID = f.id("net")
	f.nets[spec.ID] = spec
	return spec, nil
}

func (f *fakeBottom) DeleteNetwork(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteNetwork", id); err != nil {
		return err
	}
	if _, ok := f.nets[id]; !ok {
		return jobs.ErrNotFound
	}
	for _, s := range f.subs {
		if s.NetworkID == id {
			return fmt.Errorf("409 network %s in use by subnet %s", id, s.ID)
		}
	}
	for _, p := range f.ports {
		if p.NetworkID == id && p.DeviceOwner != "network:dhcp" {
			return fmt.Errorf("409 network %s in use by port %s", id, p.ID)
		}
		if p.NetworkID == id {
			delete(f.ports, p.ID) // Neutron deletes DHCP ports with the network
		}
	}
	delete(f.nets, id)
	return nil
}

func (f *fakeBottom) ListSubnets(_ context.Context, netID string) ([]jobs.Subnet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ListSubnets", netID); err != nil {
		return nil, err
	}
	var out []jobs.Subnet
	for _, s := range f.subs {
		if s.NetworkID == netID {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeBottom) CreateSubnets(_ context.Context, specs []jobs.Subnet) ([]jobs.Subnet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateSubnets", fmt.Sprint(len(specs))); err != nil {
		return nil, err
	}
	var out []jobs.Subnet
	for _, s := range specs {
		s.ID = f.id("sub")
		f.subs[s.ID] = s
		out = append(out, s)
	}
	return out, nil
}

func (f *fakeBottom) DeleteSubnet(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteSubnet", id); err != nil {
		return err
	}
	if _, ok := f.subs[id]; !ok {
		return jobs.ErrNotFound
	}
	for _, p := range f.ports {
		for _, ip := range p.FixedIPs {
			if ip.SubnetID == id && p.DeviceOwner != "network:dhcp" {
				return fmt.Errorf("409 subnet %s in use by port %s", id, p.ID)
			}
		}
	}
	delete(f.subs, id)
	return nil
}

func (f *fakeBottom) ListPorts(_ context.Context, netID string) ([]jobs.Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ListPorts", netID); err != nil {
		return nil, err
	}
	var out []jobs.Port
	for _, p := range f.ports {
		if p.NetworkID == netID {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeBottom) CreatePorts(_ context.Context, specs []jobs.Port) ([]jobs.Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreatePorts", fmt.Sprint(len(specs))); err != nil {
		return nil, err
	}
	var out []jobs.Port
	for _, p := range specs {
		p.ID = f.id("port")
		if p.MAC == "" {
			p.MAC = fmt.Sprintf("fa:16:3e:%02x:00:%02x", f.macByte, f.seq)
		}
		f.ports[p.ID] = p
		out = append(out, p)
	}
	return out, nil
}

func (f *fakeBottom) DeletePort(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeletePort", id); err != nil {
		return err
	}
	if _, ok := f.ports[id]; !ok {
		return jobs.ErrNotFound
	}
	delete(f.ports, id)
	return nil
}

// calls returns the logged calls since the last reset, and resets.
func (f *fakeBottom) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.log
	f.log = nil
	return out
}

func (f *fakeBottom) methods() []string {
	var out []string
	for _, c := range f.calls() {
		out = append(out, strings.Fields(c)[0])
	}
	return out
}

type fakeBottoms map[string]*fakeBottom

func (fb fakeBottoms) Bottom(_ context.Context, pod model.Pod) (jobs.Bottom, jobs.PodConfig, error) {
	b, ok := fb[pod.ID]
	if !ok {
		return nil, jobs.PodConfig{}, jobs.Permanent(fmt.Errorf("no pod %s", pod.ID))
	}
	return b, jobs.PodConfig{Auth: "noauth", ProjectID: "proj-" + pod.ID, Physnets: map[string]string{"physnet1": "bottomphys"}}, nil
}

type unit struct {
	t   *testing.T
	svc *brain.Service
	st  *store.Store
	fb  fakeBottoms
	h   jobs.NetworkSync
}

func newUnit(t *testing.T) *unit {
	u := &unit{t: t, fb: fakeBottoms{"pod1": newFake(), "pod2": newFake()}}
	u.fb["pod1"].macByte, u.fb["pod2"].macByte = 0xf1, 0xf2
	u.st = openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "brain.db"))
	u.svc = brain.NewService(u.st, brain.Config{
		VLANRanges: []brain.VLANRange{{PhysicalNetwork: "physnet1", Min: 100, Max: 109}},
		VNIRanges:  []brain.VNIRange{{Min: 9000, Max: 9009}},
		BottomJobs: true,
	}, nil)
	u.svc.Start(context.Background())
	t.Cleanup(u.svc.Close)
	u.h = jobs.NetworkSync{Svc: u.svc, Bottoms: u.fb}
	for _, p := range []string{"pod1", "pod2"} {
		if _, err := u.svc.CreatePod(context.Background(), model.Pod{ID: p, AZ: "az1"}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func (u *unit) run(netID, pod string) {
	u.t.Helper()
	if err := u.h.Run(context.Background(), model.Job{Type: brain.JobNetworkSync, Resource: netID, PodID: pod}); err != nil {
		u.t.Fatalf("sync %s in %s: %v", netID, pod, err)
	}
}

// network creates a network with one subnet 10.<i>.0.0/24 (gateway .1)
// and one port in pod1.
func (u *unit) network(typ string, i int) (model.Network, model.Port) {
	u.t.Helper()
	ctx := context.Background()
	n := mustDo[model.Network](u.t)(u.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: typ, Type: typ}))
	mustDo[model.Subnet](u.t)(u.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: fmt.Sprintf("10.%d.0.0/24", i), GatewayIP: fmt.Sprintf("10.%d.0.1", i)}))
	p := mustDo[model.Port](u.t)(u.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:00:%02x:01", i), IPs: []string{fmt.Sprintf("10.%d.0.10", i)}}))
	return n, p
}

// TestSyncCreatePerType: the first sync of each type creates the network
// with the type's provider attributes, the subnet (same CIDR and gateway)
// and the port (top MAC and IP) with a find, a create and two bulk creates;
// a re-run reads three times and creates nothing.
func TestSyncCreatePerType(t *testing.T) {
	u := newUnit(t)
	f := u.fb["pod1"]
	for i, tc := range []struct {
		typ                 string
		wantType, wantPhys  string
		wantSeg, wantTopSeg int
	}{
		{model.TypeSharedVLAN, "vlan", "bottomphys", 100, 100},
		{model.TypeSharedVXLAN, "vxlan", "", 9000, 9000},
		{model.TypeMixedVLANVXLAN, "", "", 0, 9001},
		{model.TypeLocal, "", "", 0, 0},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			u.t = t
			n, p := u.network(tc.typ, i+1)
			if n.SegmentationID != tc.wantTopSeg {
				t.Fatalf("top segmentation id %d, want %d", n.SegmentationID, tc.wantTopSeg)
			}
			f.calls()
			u.run(n.ID, "pod1")
			if got := f.methods(); !slices.Equal(got, []string{"FindNetworks", "CreateNetwork", "CreateSubnets", "CreatePorts"}) {
				t.Fatalf("first sync calls %v", got)
			}
			spec := f.asked[len(f.asked)-1]
			bn := f.nets[mustDo[[]jobs.Network](t)(f.FindNetworks(context.Background(), "proj-pod1", jobs.NamePrefix+n.ID))[0].ID]
			f.calls()
			if spec.NetworkType != tc.wantType || spec.PhysicalNetwork != tc.wantPhys || spec.SegmentationID != tc.wantSeg || spec.ProjectID != "proj-pod1" {
				t.Fatalf("bottom network asked as %+v, want %q %q %d", spec, tc.wantType, tc.wantPhys, tc.wantSeg)
			}
			var subs []jobs.Subnet
			var ports, dhcp, gw []jobs.Port
			for _, s := range f.subs {
				if s.NetworkID == bn.ID {
					subs = append(subs, s)
				}
			}
			for _, x := range f.ports {
				switch {
				case x.NetworkID != bn.ID:
				case x.Name == jobs.NamePrefix+p.ID:
					ports = append(ports, x)
				case x.DeviceOwner == "network:dhcp":
					dhcp = append(dhcp, x)
				case x.DeviceOwner == jobs.GatewayOwner:
					gw = append(gw, x)
				}
			}
			if len(subs) != 1 || subs[0].CIDR != fmt.Sprintf("10.%d.0.0/24", i+1) || subs[0].GatewayIP != fmt.Sprintf("10.%d.0.1", i+1) || !subs[0].EnableDHCP {
				t.Fatalf("bottom subnets %+v", subs)
			}
			if len(ports) != 1 || ports[0].MAC != p.MAC || len(ports[0].FixedIPs) != 1 || ports[0].FixedIPs[0] != (jobs.FixedIP{SubnetID: subs[0].ID, IP: p.IPs[0]}) {
				t.Fatalf("bottom ports %+v", ports)
			}
			// The pod's DHCP port: IP allocated at the top (the highest free),
			// waiting for the pod's DHCP agent; the gateway port: the
			// subnet's gateway IP, MAC left to the bottom.
			if len(dhcp) != 1 || dhcp[0].DeviceID != jobs.ReservedDHCPDeviceID || len(dhcp[0].FixedIPs) != 1 || dhcp[0].FixedIPs[0].IP != fmt.Sprintf("10.%d.0.254", i+1) {
				t.Fatalf("bottom DHCP ports %+v", dhcp)
			}
			if len(gw) != 1 || len(gw[0].FixedIPs) != 1 || gw[0].FixedIPs[0].IP != subs[0].GatewayIP || gw[0].Name != jobs.GatewayPortPrefix+subs[0].Name[len(jobs.NamePrefix):] {
				t.Fatalf("bottom gateway ports %+v", gw)
			}
			routes := mustDo[[]model.Route](t)(u.svc.ListRoutes(context.Background(), model.RouteFilter{NetworkID: n.ID, PodID: "pod1"}))
			if len(routes) != 5 { // network, subnet, port, DHCP port, gateway port
				t.Fatalf("routes %+v", routes)
			}

			// Idempotent: a re-run reads and creates nothing.
			u.run(n.ID, "pod1")
			if got := f.methods(); !slices.Equal(got, []string{"FindNetworks", "ListSubnets", "ListPorts"}) {
				t.Fatalf("re-run calls %v, want 3 reads", got)
			}
		})
	}
}

// TestSyncMixedReadBack: a mixed_vlan_vxlan network is created with no
// provider attributes and the segment the bottom chose is recorded as the
// pod's segment (phys#pod).
func TestSyncMixedReadBack(t *testing.T) {
	u := newUnit(t)
	n, _ := u.network(model.TypeMixedVLANVXLAN, 1)
	u.run(n.ID, "pod1")
	segs := mustDo[[]model.Segment](t)(u.svc.ListSegments(context.Background(), n.ID))
	if len(segs) != 1 || segs[0].NetworkType != "vlan" || segs[0].SegmentationID != 1234 || segs[0].PhysicalNetwork != "physbottom#pod1" {
		t.Fatalf("segments %+v, want vlan 1234 physbottom#pod1", segs)
	}
	// A second pod's bottom chooses differently; each pod keeps its own.
	u.fb["pod2"].mixedTo = jobs.Network{NetworkType: "vxlan", SegmentationID: 5555}
	mustDo[model.Port](t)(u.svc.CreatePort(context.Background(), brain.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:02:02", IPs: []string{"10.1.0.11"}}))
	u.run(n.ID, "pod2")
	segs = mustDo[[]model.Segment](t)(u.svc.ListSegments(context.Background(), n.ID))
	got := map[string]string{}
	for _, g := range segs {
		got[g.PodID] = fmt.Sprintf("%s/%d/%s", g.NetworkType, g.SegmentationID, g.PhysicalNetwork)
	}
	if got["pod1"] != "vlan/1234/physbottom#pod1" || !strings.HasPrefix(got["pod2"], "vxlan/5555") {
		t.Fatalf("segments %v", got)
	}
}

// TestSyncTeardownOrder: with the pod's last port gone, ports go first,
// then subnets, then the network, and the routes are forgotten; a re-run
// finds nothing and does nothing more.
func TestSyncTeardownOrder(t *testing.T) {
	u := newUnit(t)
	f := u.fb["pod1"]
	n, p := u.network(model.TypeSharedVXLAN, 1)
	u.run(n.ID, "pod1")
	if err := u.svc.DeletePort(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	f.calls()
	u.run(n.ID, "pod1")
	var kinds []string
	for _, c := range f.methods() {
		if strings.HasPrefix(c, "Delete") {
			kinds = append(kinds, c)
		}
	}
	if len(kinds) < 3 || kinds[len(kinds)-1] != "DeleteNetwork" || kinds[len(kinds)-2] != "DeleteSubnet" || slices.Index(kinds, "DeletePort") > slices.Index(kinds, "DeleteSubnet") {
		t.Fatalf("teardown order %v, want ports, subnets, network", kinds)
	}
	if len(f.nets)+len(f.subs)+len(f.ports) != 0 {
		t.Fatalf("left in the bottom: %v %v %v", f.nets, f.subs, f.ports)
	}
	if r := mustDo[[]model.Route](t)(u.svc.ListRoutes(context.Background(), model.RouteFilter{NetworkID: n.ID})); len(r) != 0 {
		t.Fatalf("routes left: %+v", r)
	}
	u.run(n.ID, "pod1")
	if got := f.methods(); !slices.Equal(got, []string{"FindNetworks"}) {
		t.Fatalf("teardown re-run calls %v", got)
	}
}

// TestSyncBottomErrorRetried: a Bottom error fails the job with the error
// kept and a next run time; the job keeps retrying and completes once the
// bottom recovers, with nothing created twice.
func TestSyncBottomErrorRetried(t *testing.T) {
	u := newUnit(t)
	f := u.fb["pod1"]
	f.mu.Lock()
	f.fail["CreatePorts"] = errors.New("neutron said 503 Service Unavailable")
	f.mu.Unlock()
	n, _ := u.network(model.TypeSharedVLAN, 1)
	p := jobs.New(u.st, map[string]jobs.Handler{brain.JobNetworkSync: u.h},
		jobs.Options{Poll: 10 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: quiet})
	runPool(t, p)
	var j model.Job
	deadline := time.Now().Add(15 * time.Second)
	for {
		l := mustDo[model.List[model.Job]](t)(u.svc.ListJobs(context.Background(), model.JobFilter{Resource: n.ID, PodID: "pod1"}, model.Page{}))
		if len(l.Items) == 1 {
			j = l.Items[0]
		}
		if j.Attempts >= 3 && j.State == model.JobFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job did not fail 3 times: %+v", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(j.LastError, "create bottom ports") || !strings.Contains(j.LastError, "503") || j.NextRunAt == nil {
		t.Fatalf("failed job %+v: want the error kept and a next run", j)
	}
	f.mu.Lock()
	delete(f.fail, "CreatePorts")
	f.mu.Unlock()
	j = waitJob(t, u.st, j.ID, model.JobSuccess)
	if j.LastError != "" && j.State != model.JobSuccess {
		t.Fatalf("job %+v", j)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nets) != 1 || len(f.subs) != 1 || len(f.ports) != 3 {
		t.Fatalf("after recovery: %d networks %d subnets %d ports, want 1 1 3 (VM, DHCP, gateway)", len(f.nets), len(f.subs), len(f.ports))
	}
}

// TestSyncAnycastGatewayAndDHCP: two pods get the same gateway IP, each on
// a port of its own with its own MAC, and DHCP ports with different IPs,
// allocated at the top past the IPs ports already hold; the top DHCP ports
// go with the pods' last ports, and the network can be deleted with them.
func TestSyncAnycastGatewayAndDHCP(t *testing.T) {
	u := newUnit(t)
	ctx := context.Background()
	n, _ := u.network(model.TypeSharedVXLAN, 1)
	mustDo[model.Port](t)(u.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:fe", IPs: []string{"10.1.0.254"}}))
	mustDo[model.Port](t)(u.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:02:01", IPs: []string{"10.1.0.20"}}))
	u.run(n.ID, "pod1")
	u.run(n.ID, "pod2")
	gwMAC, dhcpIP := map[string]string{}, map[string]string{}
	for pod, f := range u.fb {
		for _, p := range f.ports {
			switch p.DeviceOwner {
			case jobs.GatewayOwner:
				if p.FixedIPs[0].IP != "10.1.0.1" {
					t.Fatalf("%s gateway port %+v", pod, p)
				}
				gwMAC[pod] = p.MAC
			case "network:dhcp":
				dhcpIP[pod] = p.FixedIPs[0].IP
			}
		}
	}
	if len(gwMAC) != 2 || gwMAC["pod1"] == gwMAC["pod2"] {
		t.Fatalf("gateway MACs %v: want one per pod, different", gwMAC)
	}
	if dhcpIP["pod1"] == dhcpIP["pod2"] || dhcpIP["pod1"] == "10.1.0.254" || dhcpIP["pod2"] == "10.1.0.254" || dhcpIP["pod1"] == "" || dhcpIP["pod2"] == "" {
		t.Fatalf("DHCP IPs %v: want two different ones, not a port's", dhcpIP)
	}
	// The top holds them as ports of the pods (agents see them).
	for _, pod := range []string{"pod1", "pod2"} {
		p := mustDo[model.Port](t)(u.svc.GetPort(ctx, brain.ReservedPortID(brain.ReservedDHCP, n.ID, pod)))
		if p.DeviceOwner != "network:dhcp" || p.PodID != pod || p.IPs[0] != dhcpIP[pod] {
			t.Fatalf("top DHCP port of %s: %+v", pod, p)
		}
	}
	// Last ports gone: bottoms emptied, top DHCP ports and segments gone.
	for _, p := range mustDo[model.List[model.Port]](t)(u.svc.ListPorts(ctx, model.PortFilter{NetworkID: n.ID}, model.Page{})).Items {
		if !brain.IsReserved(p) {
			if err := u.svc.DeletePort(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The network can be deleted while the reserved ports still exist.
	if err := u.svc.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatalf("delete network with only reserved ports left: %v", err)
	}
	u.run(n.ID, "pod1")
	u.run(n.ID, "pod2")
	for pod, f := range u.fb {
		if len(f.nets)+len(f.subs)+len(f.ports) != 0 {
			t.Fatalf("%s bottom left: %v %v %v", pod, f.nets, f.subs, f.ports)
		}
	}
	if l := mustDo[model.List[model.Port]](t)(u.svc.ListPorts(ctx, model.PortFilter{NetworkID: n.ID}, model.Page{})); len(l.Items) != 0 {
		t.Fatalf("top ports left: %+v", l.Items)
	}
}

// TestSyncTeardownLeavesForeignPorts: teardown deletes only the ports
// l2span made. A DHCP agent's port does not hold the teardown up (Neutron
// removes it); a router interface someone attached keeps the subnet and
// network, and the job fails at once (no retry loop) naming that port.
// Once it is detached, a retry finishes the teardown.
func TestSyncTeardownLeavesForeignPorts(t *testing.T) {
	u := newUnit(t)
	ctx := context.Background()
	f := u.fb["pod1"]
	n, p := u.network(model.TypeSharedVXLAN, 1)
	u.run(n.ID, "pod1")
	var bnet, bsub string
	for id := range f.nets {
		bnet = id
	}
	for id := range f.subs {
		bsub = id
	}
	f.ports["agent-dhcp"] = jobs.Port{ID: "agent-dhcp", NetworkID: bnet, DeviceOwner: "network:dhcp", DeviceID: "dhcpabc-" + bnet, FixedIPs: []jobs.FixedIP{{SubnetID: bsub, IP: "10.1.0.2"}}}
	f.ports["rtr-if"] = jobs.Port{ID: "rtr-if", NetworkID: bnet, DeviceOwner: "network:router_interface", DeviceID: "router-1", FixedIPs: []jobs.FixedIP{{SubnetID: bsub, IP: "10.1.0.3"}}}
	if err := u.svc.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	err := u.h.Run(ctx, model.Job{Type: brain.JobNetworkSync, Resource: n.ID, PodID: "pod1"})
	if err == nil || !jobs.IsPermanent(err) || !strings.Contains(err.Error(), "rtr-if") || strings.Contains(err.Error(), "agent-dhcp") {
		t.Fatalf("teardown with a router interface: %v, want a permanent error naming rtr-if only", err)
	}
	var left []string
	for id := range f.ports {
		left = append(left, id)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"agent-dhcp", "rtr-if"}) || len(f.nets) != 1 || len(f.subs) != 1 {
		t.Fatalf("after teardown: ports %v, %d networks, %d subnets; want only the foreign ports, the subnet and the network", left, len(f.nets), len(f.subs))
	}
	for _, c := range f.calls() {
		if strings.HasPrefix(c, "DeletePort agent-dhcp") || strings.HasPrefix(c, "DeletePort rtr-if") {
			t.Fatalf("deleted a port l2span did not make: %s", c)
		}
	}
	// The pod's reserved DHCP port and segment are released all the same.
	if _, err := u.svc.GetPort(ctx, brain.ReservedPortID(brain.ReservedDHCP, n.ID, "pod1")); err == nil {
		t.Fatal("top DHCP port of pod1 kept")
	}
	// Detached: the retry finishes; the agent's DHCP port goes with the network.
	delete(f.ports, "rtr-if")
	u.run(n.ID, "pod1")
	if len(f.nets)+len(f.subs)+len(f.ports) != 0 {
		t.Fatalf("after detach and retry: %v %v %v", f.nets, f.subs, f.ports)
	}
	if r := mustDo[[]model.Route](t)(u.svc.ListRoutes(ctx, model.RouteFilter{NetworkID: n.ID})); len(r) != 0 {
		t.Fatalf("routes left: %+v", r)
	}
}
