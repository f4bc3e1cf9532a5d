package jobs_test

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/jobs"
	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/neutrontest"
)

// These tests run the network_sync job against a real Debian neutron-server
// (one per test binary) and assert in Neutron. Two pods share that server:
// each owns its resources through its own project id, and pod2 maps the
// top physnet1 to its bottom physnet2 so one VLAN id fits in both.

const (
	childEnv        = "L2SPAN_JOBS_CHILD"
	childStoreEnv   = "L2SPAN_JOBS_CHILD_STORE"
	childNeutronEnv = "L2SPAN_JOBS_CHILD_NEUTRON"
	stallLine       = "STALLED-AFTER-SUBNETS"
)

func bottomConfig(neutronURL string) jobs.Config {
	return jobs.Config{Pods: map[string]jobs.PodConfig{
		"pod1": {Auth: "noauth", Endpoint: neutronURL, ProjectID: "proj-pod1"},
		"pod2": {Auth: "noauth", Endpoint: neutronURL, ProjectID: "proj-pod2", Physnets: map[string]string{"physnet1": neutrontest.Physnet2}},
	}}
}

// counting counts Neutron calls: each Bottom method is one HTTP request.
type counting struct {
	jobs.Bottom
	n *atomic.Int64
}

func (c counting) FindNetworks(ctx context.Context, p, name string) ([]jobs.Network, error) {
	c.n.Add(1)
	return c.Bottom.FindNetworks(ctx, p, name)
}
func (c counting) CreateNetwork(ctx context.Context, s jobs.Network) (jobs.Network, error) {
	c.n.Add(1)
	return c.Bottom.CreateNetwork(ctx, s)
}
func (c counting) DeleteNetwork(ctx context.Context, id string) error {
	c.n.Add(1)
	return c.Bottom.DeleteNetwork(ctx, id)
}
func (c counting) ListSubnets(ctx context.Context, id string) ([]jobs.Subnet, error) {
	c.n.Add(1)
	return c.Bottom.ListSubnets(ctx, id)
}
func (c counting) CreateSubnets(ctx context.Context, s []jobs.Subnet) ([]jobs.Subnet, error) {
	c.n.Add(1)
	return c.Bottom.CreateSubnets(ctx, s)
}
func (c counting) DeleteSubnet(ctx context.Context, id string) error {
	c.n.Add(1)
	return c.Bottom.DeleteSubnet(ctx, id)
}
func (c counting) ListPorts(ctx context.Context, id string) ([]jobs.Port, error) {
	c.n.Add(1)
	return c.Bottom.ListPorts(ctx, id)
}
func (c counting) CreatePorts(ctx context.Context, s []jobs.Port) ([]jobs.Port, error) {
	c.n.Add(1)
	return c.Bottom.CreatePorts(ctx, s)
}
func (c counting) DeletePort(ctx context.Context, id string) error {
	c.n.Add(1)
	return c.Bottom.DeletePort(ctx, id)
}

type world struct {
	t     *testing.T
	url   string
	st    *store.Store
	svc   *brain.Service
	srv   *neutrontest.Server
	nc    *gophercloud.ServiceClient
	calls atomic.Int64
	pool  *jobs.Pool
}

var (
	worldRunsMu sync.Mutex
	worldRuns   = map[string]int{}
)

// newWorld opens a brain on SQLite with VLAN ids vlanMin.. and VNIs
// vniMin.. (distinct per test: the Neutron is shared), pods pod1 and pod2.
func newWorld(t *testing.T, vlanMin, vniMin int) *world {
	// A repeated run (-count) must not meet its earlier run's bottom
	// networks in the shared Neutron: shift the ranges per repetition.
	worldRunsMu.Lock()
	k := worldRuns[t.Name()]
	worldRuns[t.Name()]++
	worldRunsMu.Unlock()
	vlanMin, vniMin = vlanMin+500*k, vniMin+100000*k
	srv := neutrontest.Shared(t)
	w := &world{t: t, srv: srv, nc: srv.Client(), url: "sqlite://" + filepath.Join(t.TempDir(), "brain.db")}
	w.st = openStore(t, w.url)
	cfg := brain.Config{
		VLANRanges: []brain.VLANRange{{PhysicalNetwork: "physnet1", Min: vlanMin, Max: vlanMin + 9}},
		VNIRanges:  []brain.VNIRange{{Min: vniMin, Max: vniMin + 9}},
		BottomJobs: true,
	}
	w.svc = brain.NewService(w.st, cfg, func(int64) {
		if w.pool != nil {
			w.pool.Wake()
		}
	})
	w.svc.Start(context.Background())
	t.Cleanup(w.svc.Close)
	ctx := context.Background()
	for _, p := range []string{"pod1", "pod2"} {
		if _, err := w.svc.CreatePod(ctx, model.Pod{ID: p, AZ: "az1"}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// startPool runs a worker pool over w's store with counting Neutron clients.
func (w *world) startPool(lease time.Duration) {
	clients := jobs.NewClients(bottomConfig(w.srv.URL))
	clients.Wrap = func(_ string, b jobs.Bottom) jobs.Bottom { return counting{b, &w.calls} }
	w.pool = jobs.New(w.st, map[string]jobs.Handler{brain.JobNetworkSync: jobs.NetworkSync{Svc: w.svc, Bottoms: clients}},
		jobs.Options{Poll: 20 * time.Millisecond, Lease: lease, BackoffBase: 100 * time.Millisecond, Logger: quiet})
	runPool(w.t, w.pool)
}

func (w *world) job(netID, pod string) model.Job {
	w.t.Helper()
	l, err := w.svc.ListJobs(context.Background(), model.JobFilter{Type: brain.JobNetworkSync, Resource: netID, PodID: pod}, model.Page{})
	if err != nil || len(l.Items) != 1 {
		w.t.Fatalf("job of %s/%s: %v %v", netID, pod, l.Items, err)
	}
	return l.Items[0]
}

// settle waits until the job of (net, pod) succeeded with nothing pending.
func (w *world) settle(netID, pod string) model.Job {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j := w.job(netID, pod)
		if j.State == model.JobSuccess {
			return j
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("job %s/%s not done: %+v", netID, pod, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) get(path string, q url.Values, out any) {
	w.t.Helper()
	if _, err := w.nc.Get(context.Background(), w.nc.ServiceURL(path)+"?"+q.Encode(), out, nil); err != nil {
		w.t.Fatalf("neutron GET %s: %v", path, err)
	}
}

type nNet struct {
	ID              string `json:"id"`
	ProjectID       string `json:"project_id"`
	NetworkType     string `json:"provider:network_type"`
	PhysicalNetwork string `json:"provider:physical_network"`
	SegmentationID  int    `json:"provider:segmentation_id"`
}

type nSubnet struct {
	ID         string `json:"id"`
	CIDR       string `json:"cidr"`
	GatewayIP  string `json:"gateway_ip"`
	EnableDHCP bool   `json:"enable_dhcp"`
}

type nPort struct {
	Name        string `json:"name"`
	MAC         string `json:"mac_address"`
	DeviceOwner string `json:"device_owner"`
	DeviceID    string `json:"device_id"`
	FixedIPs    []struct {
		SubnetID string `json:"subnet_id"`
		IP       string `json:"ip_address"`
	} `json:"fixed_ips"`
}

// bottom reads what Neutron holds for a top network in a pod's project.
func (w *world) bottom(netID, project string) (nets []nNet, subs []nSubnet, ports []nPort) {
	w.t.Helper()
	var r struct {
		Networks []nNet `json:"networks"`
	}
	w.get("networks", url.Values{"name": {jobs.NamePrefix + netID}, "project_id": {project}}, &r)
	for _, n := range r.Networks {
		if n.ProjectID != project {
			continue // the filter is not always honoured (see Neutron.FindNetworks)
		}
		nets = append(nets, n)
		var s struct {
			Subnets []nSubnet `json:"subnets"`
		}
		w.get("subnets", url.Values{"network_id": {n.ID}}, &s)
		subs = append(subs, s.Subnets...)
		var p struct {
			Ports []nPort `json:"ports"`
		}
		w.get("ports", url.Values{"network_id": {n.ID}}, &p)
		ports = append(ports, p.Ports...)
	}
	return nets, subs, ports
}

// split sorts a pod's bottom ports: the ports of top ports, the port
// holding a subnet's gateway IP, the reserved DHCP port.
func split(ports []nPort) (top []nPort, gw []nPort, dhcp []nPort) {
	for _, p := range ports {
		switch {
		case strings.HasPrefix(p.Name, jobs.GatewayPortPrefix):
			gw = append(gw, p)
		case p.DeviceID == jobs.ReservedDHCPDeviceID:
			dhcp = append(dhcp, p)
		default:
			top = append(top, p)
		}
	}
	return top, gw, dhcp
}

func portsByMAC(ports []nPort) map[string]string {
	out := map[string]string{}
	for _, p := range ports {
		ips := []string{}
		for _, f := range p.FixedIPs {
			ips = append(ips, f.IP)
		}
		out[p.MAC] = strings.Join(ips, ",")
	}
	return out
}

func mustDo[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestNeutronSharedVLAN: the first port of a shared_vlan network in a pod
// makes the bottom network (vlan, allocated id, the pod's bottom physnet),
// its subnet (same CIDR and gateway, DHCP on) and the port (top MAC and IP)
// in that pod's Neutron; a re-run creates nothing; a second pod gets its
// own; the last port gone and the network deleted at the top empty Neutron.
func TestNeutronSharedVLAN(t *testing.T) {
	w := newWorld(t, 300, 7000)
	ctx := context.Background()
	n := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "web", Type: model.TypeSharedVLAN}))
	sn := mustDo[model.Subnet](t)(w.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "10.20.0.0/24", GatewayIP: "10.20.0.1"}))
	w.startPool(10 * time.Second)

	// Measure: first port in a new pod -> network + subnet + port in Neutron.
	start := time.Now()
	p1 := mustDo[model.Port](t)(w.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:20:00:0a", IPs: []string{"10.20.0.10"}}))
	var nets []nNet
	var subs []nSubnet
	var ports []nPort
	for {
		nets, subs, ports = w.bottom(n.ID, "proj-pod1")
		if len(nets) == 1 && len(subs) == 1 && len(ports) == 3 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("bottom not complete after 60 s: %v %v %v", nets, subs, ports)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	j := w.settle(n.ID, "pod1")
	firstCalls := w.calls.Load()
	t.Logf("MEASURE first port in a new pod -> network+subnet+port in Neutron: %s, %d Neutron calls (attempts %d)", took.Round(time.Millisecond), firstCalls, j.Attempts)
	if firstCalls != 4 {
		t.Errorf("first sync took %d Neutron calls, want 4 (find, create network, bulk subnets, bulk ports)", firstCalls)
	}
	if got := nets[0]; got.NetworkType != "vlan" || got.PhysicalNetwork != "physnet1" || got.SegmentationID != n.SegmentationID || n.SegmentationID != 300 {
		t.Fatalf("bottom network %+v, want vlan physnet1 %d", got, n.SegmentationID)
	}
	if s := subs[0]; s.CIDR != "10.20.0.0/24" || s.GatewayIP != "10.20.0.1" || !s.EnableDHCP {
		t.Fatalf("bottom subnet %+v", s)
	}
	top, gws, dhcps := split(ports)
	if len(top) != 1 || len(gws) != 1 || len(dhcps) != 1 {
		t.Fatalf("bottom ports %+v: want the VM's, the gateway's, the DHCP port", ports)
	}
	if p := top[0]; p.MAC != "fa:16:3e:20:00:0a" || len(p.FixedIPs) != 1 || p.FixedIPs[0].IP != "10.20.0.10" || p.FixedIPs[0].SubnetID != subs[0].ID || p.Name != jobs.NamePrefix+p1.ID {
		t.Fatalf("bottom port %+v", p)
	}
	routes := mustDo[[]model.Route](t)(w.svc.ListRoutes(ctx, model.RouteFilter{NetworkID: n.ID, PodID: "pod1"}))
	if len(routes) != 5 {
		t.Fatalf("routes: %+v", routes)
	}
	for _, r := range routes {
		want := map[string]string{brain.RouteNetwork: nets[0].ID, brain.RouteSubnet: subs[0].ID}[r.ResourceType]
		if r.ResourceType == brain.RouteSubnet && r.TopID != sn.ID || want != "" && r.BottomID != want {
			t.Fatalf("route %+v", r)
		}
	}

	// A re-run finds everything and creates nothing.
	before := w.calls.Load()
	mustDo[model.Job](t)(w.svc.RetryJob(ctx, j.ID))
	w.pool.Wake()
	w.settle(n.ID, "pod1")
	if c := w.calls.Load() - before; c != 3 {
		t.Errorf("idempotent re-run took %d Neutron calls, want 3 reads", c)
	}
	if nets, subs, ports := w.bottom(n.ID, "proj-pod1"); len(nets) != 1 || len(subs) != 1 || len(ports) != 3 {
		t.Fatalf("after re-run: %d networks %d subnets %d ports", len(nets), len(subs), len(ports))
	}

	// More ports in pod1, and the network reaches pod2 (physnet2 there).
	mustDo[[]model.Port](t)(w.svc.CreatePorts(ctx, []brain.PortCreate{
		{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:20:00:0b", IPs: []string{"10.20.0.11"}},
		{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:20:00:0c", IPs: []string{"10.20.0.12"}, DeviceOwner: "network:dhcp"},
	}))
	w.settle(n.ID, "pod1")
	w.settle(n.ID, "pod2")
	_, _, ports = w.bottom(n.ID, "proj-pod1")
	top1, gw1, dhcp1 := split(ports)
	if got := portsByMAC(top1); len(got) != 2 || got["fa:16:3e:20:00:0b"] != "10.20.0.11" {
		t.Fatalf("pod1 ports: %v", got)
	}
	nets, subs, ports = w.bottom(n.ID, "proj-pod2")
	if len(nets) != 1 || nets[0].PhysicalNetwork != neutrontest.Physnet2 || nets[0].SegmentationID != 300 ||
		len(subs) != 1 || subs[0].GatewayIP != "10.20.0.1" || portsByMAC(ports)["fa:16:3e:20:00:0c"] != "10.20.0.12" {
		var all struct {
			Networks []map[string]any `json:"networks"`
		}
		w.get("networks", url.Values{"name": {jobs.NamePrefix + n.ID}}, &all)
		t.Fatalf("pod2 bottom: %+v %+v %+v; job %+v; all %v", nets, subs, ports, w.job(n.ID, "pod2"), all.Networks)
	}
	// The anycast gateway: in each pod a port holds 10.20.0.1, with a MAC
	// that pod's Neutron chose. Each pod's DHCP port has its own IP,
	// allocated at the top, waiting for the pod's DHCP agent.
	_, gw2, dhcp2 := split(ports)
	if len(gw1) != 1 || len(gw2) != 1 || gw1[0].FixedIPs[0].IP != "10.20.0.1" || gw2[0].FixedIPs[0].IP != "10.20.0.1" ||
		gw1[0].DeviceOwner != jobs.GatewayOwner || gw1[0].MAC == "" || gw1[0].MAC == gw2[0].MAC {
		t.Fatalf("gateway ports pod1 %+v pod2 %+v: want one each holding 10.20.0.1, different MACs", gw1, gw2)
	}
	if len(dhcp1) != 1 || len(dhcp2) != 1 || dhcp1[0].DeviceOwner != "network:dhcp" || dhcp2[0].DeviceOwner != "network:dhcp" ||
		dhcp1[0].FixedIPs[0].IP == dhcp2[0].FixedIPs[0].IP {
		t.Fatalf("DHCP ports pod1 %+v pod2 %+v: want one each, different IPs", dhcp1, dhcp2)
	}
	for pod, d := range map[string]nPort{"pod1": dhcp1[0], "pod2": dhcp2[0]} {
		tp := mustDo[model.Port](t)(w.svc.GetPort(ctx, brain.ReservedPortID(brain.ReservedDHCP, n.ID, pod)))
		if tp.IPs[0] != d.FixedIPs[0].IP || tp.MAC != d.MAC {
			t.Fatalf("%s DHCP port in Neutron %+v, at the top %+v", pod, d, tp)
		}
	}
	t.Logf("pod1: gateway 10.20.0.1 at %s, DHCP %s; pod2: gateway 10.20.0.1 at %s, DHCP %s",
		gw1[0].MAC, dhcp1[0].FixedIPs[0].IP, gw2[0].MAC, dhcp2[0].FixedIPs[0].IP)

	// Last port of pod1 gone: pod1's bottom network goes, pod2's stays.
	for _, p := range mustDo[model.List[model.Port]](t)(w.svc.ListPorts(ctx, model.PortFilter{NetworkID: n.ID, PodID: "pod1"}, model.Page{})).Items {
		if err := w.svc.DeletePort(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	w.settle(n.ID, "pod1")
	if nets, subs, ports := w.bottom(n.ID, "proj-pod1"); len(nets)+len(subs)+len(ports) != 0 {
		t.Fatalf("pod1 not torn down: %v %v %v", nets, subs, ports)
	}
	if nets, _, _ := w.bottom(n.ID, "proj-pod2"); len(nets) != 1 {
		t.Fatal("pod2's bottom network went with pod1's")
	}
	// The network deleted at the top is recycled in every pod.
	for _, p := range mustDo[model.List[model.Port]](t)(w.svc.ListPorts(ctx, model.PortFilter{NetworkID: n.ID}, model.Page{})).Items {
		if err := w.svc.DeletePort(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.svc.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	w.settle(n.ID, "pod2")
	if nets, subs, ports := w.bottom(n.ID, "proj-pod2"); len(nets)+len(subs)+len(ports) != 0 {
		t.Fatalf("pod2 not torn down: %v %v %v", nets, subs, ports)
	}
	if r := mustDo[[]model.Route](t)(w.svc.ListRoutes(ctx, model.RouteFilter{NetworkID: n.ID})); len(r) != 0 {
		t.Fatalf("routes left: %+v", r)
	}
}

// TestNeutronVXLANAndMixed: shared_vxlan gets provider vxlan + the VNI;
// mixed_vlan_vxlan gets no provider attributes, and the segment Neutron
// chose is read back and recorded as the pod's segment.
func TestNeutronVXLANAndMixed(t *testing.T) {
	w := newWorld(t, 310, 7100)
	ctx := context.Background()
	w.startPool(10 * time.Second)
	vx := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "vx", Type: model.TypeSharedVXLAN}))
	mx := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "mx", Type: model.TypeMixedVLANVXLAN}))
	for i, n := range []model.Network{vx, mx} {
		cidr := fmt.Sprintf("10.3%d.0.0/24", i)
		mustDo[model.Subnet](t)(w.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: cidr, GatewayIP: fmt.Sprintf("10.3%d.0.1", i)}))
		mustDo[model.Port](t)(w.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:30:00:0%d", i), IPs: []string{fmt.Sprintf("10.3%d.0.5", i)}}))
	}
	w.settle(vx.ID, "pod1")
	w.settle(mx.ID, "pod1")
	nets, _, ports := w.bottom(vx.ID, "proj-pod1")
	if len(nets) != 1 || nets[0].NetworkType != "vxlan" || nets[0].SegmentationID != vx.SegmentationID || len(ports) != 3 {
		t.Fatalf("shared_vxlan bottom: %+v (VNI %d)", nets, vx.SegmentationID)
	}
	nets, subs, ports := w.bottom(mx.ID, "proj-pod1")
	if len(nets) != 1 || nets[0].NetworkType != "vxlan" || nets[0].SegmentationID < 5000 || nets[0].SegmentationID > 5999 ||
		len(subs) != 1 || len(ports) != 3 || portsByMAC(ports)["fa:16:3e:30:00:01"] != "10.31.0.5" {
		t.Fatalf("mixed bottom: %+v %+v %+v", nets, subs, ports)
	}
	segs := mustDo[[]model.Segment](t)(w.svc.ListSegments(ctx, mx.ID))
	if len(segs) != 1 || segs[0].NetworkType != "vxlan" || segs[0].SegmentationID != nets[0].SegmentationID {
		t.Fatalf("mixed segment not recorded from the bottom: %+v, bottom %+v", segs, nets[0])
	}
}

// TestNeutronWorkerKilledMidJob: a worker process is SIGKILLed after it
// created the bottom network and subnet but before the ports; another
// worker takes the job over when the lease expires and completes it with no
// duplicate bottom resources.
func TestNeutronWorkerKilledMidJob(t *testing.T) {
	w := newWorld(t, 320, 7200)
	ctx := context.Background()
	n := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "crash", Type: model.TypeSharedVLAN}))
	mustDo[model.Subnet](t)(w.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "10.40.0.0/24", GatewayIP: "10.40.0.1"}))
	var reqs []brain.PortCreate
	for i := 0; i < 3; i++ {
		reqs = append(reqs, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:40:00:%02x", i+1), IPs: []string{fmt.Sprintf("10.40.0.%d", 10+i)}})
	}
	mustDo[[]model.Port](t)(w.svc.CreatePorts(ctx, reqs))

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", childStoreEnv+"="+w.url, childNeutronEnv+"="+w.srv.URL)
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == stallLine {
				stalled <- true
				return
			}
		}
		stalled <- false
	}()
	select {
	case ok := <-stalled:
		if !ok {
			child.Process.Kill()
			child.Wait()
			t.Fatal("worker process ended without reaching the stall point")
		}
	case <-time.After(60 * time.Second):
		child.Process.Kill()
		child.Wait()
		t.Fatal("worker process did not reach the stall point in 60 s")
	}
	if err := syscall.Kill(child.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	nets, subs, ports := w.bottom(n.ID, "proj-pod1")
	if len(nets) != 1 || len(subs) != 1 || len(ports) != 0 {
		t.Fatalf("at the kill: %d networks %d subnets %d ports, want 1 1 0", len(nets), len(subs), len(ports))
	}
	if j := w.job(n.ID, "pod1"); j.State != model.JobRunning || j.LeaseOwner != "doomed" {
		t.Fatalf("job at the kill: %+v", j)
	}

	killed := time.Now()
	w.startPool(time.Second)
	j := w.settle(n.ID, "pod1")
	t.Logf("taken over and completed %s after the kill (lease 1 s), attempts %d", time.Since(killed).Round(time.Millisecond), j.Attempts)
	if j.Attempts != 2 {
		t.Errorf("attempts %d, want 2", j.Attempts)
	}
	nets, subs, ports = w.bottom(n.ID, "proj-pod1")
	if len(nets) != 1 || len(subs) != 1 || len(ports) != 5 {
		t.Fatalf("after take-over: %d networks %d subnets %d ports, want 1 1 5 (3 VMs, gateway, DHCP)", len(nets), len(subs), len(ports))
	}
	got := portsByMAC(ports)
	for _, r := range reqs {
		if got[r.MAC] != r.IPs[0] {
			t.Fatalf("ports %v, want %s=%s", got, r.MAC, r.IPs[0])
		}
	}
}

// childWorker is the worker process of TestNeutronWorkerKilledMidJob: it
// runs the job until the subnets exist in Neutron, says so, and hangs there
// (still renewing its lease) until killed.
func childWorker() int {
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv(childStoreEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	svc := brain.NewService(st, brain.Config{}, nil)
	clients := jobs.NewClients(bottomConfig(os.Getenv(childNeutronEnv)))
	var once sync.Once
	clients.Wrap = func(_ string, b jobs.Bottom) jobs.Bottom { return stallAfterSubnets{b, &once} }
	p := jobs.New(st, map[string]jobs.Handler{brain.JobNetworkSync: jobs.NetworkSync{Svc: svc, Bottoms: clients}},
		jobs.Options{Owner: "doomed", Poll: 20 * time.Millisecond, Lease: time.Second, Logger: quiet})
	p.Run(ctx)
	return 0
}

type stallAfterSubnets struct {
	jobs.Bottom
	once *sync.Once
}

func (s stallAfterSubnets) CreateSubnets(ctx context.Context, specs []jobs.Subnet) ([]jobs.Subnet, error) {
	out, err := s.Bottom.CreateSubnets(ctx, specs)
	if err == nil {
		s.once.Do(func() { fmt.Println(stallLine) })
		select {} // hang until SIGKILL
	}
	return out, err
}

// TestNeutronGatewayPerPod: with gateway_per_pod each pod's bottom subnet
// has its own gateway IP, allocated at the top and held in that pod by a
// port of its own; no pod uses the subnet's top gateway IP. The option is
// refused for a network that lives in one pod.
func TestNeutronGatewayPerPod(t *testing.T) {
	w := newWorld(t, 330, 7300)
	ctx := context.Background()
	if _, err := w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "one", Type: model.TypeLocal, GatewayPerPod: true}); err == nil || !strings.Contains(err.Error(), "gateway_per_pod") {
		t.Fatalf("local network with gateway_per_pod: %v, want refused naming gateway_per_pod", err)
	}
	n := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "gpp", Type: model.TypeSharedVLAN, GatewayPerPod: true}))
	if g := mustDo[model.Network](t)(w.svc.GetNetwork(ctx, n.ID)); !g.GatewayPerPod || !n.GatewayPerPod {
		t.Fatalf("gateway_per_pod not kept: %+v", g)
	}
	mustDo[model.Subnet](t)(w.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "10.50.0.0/24", GatewayIP: "10.50.0.1"}))
	w.startPool(10 * time.Second)
	mustDo[[]model.Port](t)(w.svc.CreatePorts(ctx, []brain.PortCreate{
		{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:50:00:01", IPs: []string{"10.50.0.10"}},
		{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:50:00:02", IPs: []string{"10.50.0.11"}},
	}))
	gws := map[string]string{}
	for _, pod := range []string{"pod1", "pod2"} {
		w.settle(n.ID, pod)
		_, subs, ports := w.bottom(n.ID, "proj-"+pod)
		if len(subs) != 1 {
			t.Fatalf("%s subnets %+v", pod, subs)
		}
		gw := subs[0].GatewayIP
		top := mustDo[model.Port](t)(w.svc.GetPort(ctx, brain.ReservedPortID(brain.ReservedGateway, n.ID, pod)))
		if gw == "" || gw == "10.50.0.1" || top.IPs[0] != gw {
			t.Fatalf("%s bottom gateway %q, top gateway port %+v: want the pod's own", pod, gw, top)
		}
		holders := 0
		for _, p := range ports {
			for _, f := range p.FixedIPs {
				if f.IP == gw {
					holders++
					if p.MAC != top.MAC || p.DeviceOwner != jobs.GatewayOwner {
						t.Fatalf("%s gateway port %+v, top %+v", pod, p, top)
					}
				}
				if f.IP == "10.50.0.1" {
					t.Fatalf("%s: port %+v holds the top gateway IP", pod, p)
				}
			}
		}
		if holders != 1 {
			t.Fatalf("%s: %d ports hold the gateway %s", pod, holders, gw)
		}
		gws[pod] = gw
	}
	if gws["pod1"] == gws["pod2"] {
		t.Fatalf("gateways %v: want one per pod", gws)
	}
	t.Logf("gateway per pod: %v", gws)
}

// TestNeutronTeardownLeavesForeignPorts: a port someone else put on the
// bottom network (here a router interface) is never deleted by l2span; the
// teardown deletes l2span's ports, keeps the subnet and network (Neutron
// would refuse to delete them), and the job fails at once naming the port
// instead of retrying forever. Detached, a retry empties Neutron.
func TestNeutronTeardownLeavesForeignPorts(t *testing.T) {
	w := newWorld(t, 340, 7400)
	ctx := context.Background()
	n := mustDo[model.Network](t)(w.svc.CreateNetwork(ctx, brain.NetworkCreate{Name: "rtr", Type: model.TypeSharedVLAN}))
	mustDo[model.Subnet](t)(w.svc.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "10.60.0.0/24", GatewayIP: "10.60.0.1"}))
	w.startPool(10 * time.Second)
	p := mustDo[model.Port](t)(w.svc.CreatePort(ctx, brain.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:60:00:01", IPs: []string{"10.60.0.10"}}))
	w.settle(n.ID, "pod1")
	nets, subs, _ := w.bottom(n.ID, "proj-pod1")
	if len(nets) != 1 || len(subs) != 1 {
		t.Fatalf("bottom %+v %+v", nets, subs)
	}
	var made struct {
		Port struct {
			ID string `json:"id"`
		} `json:"port"`
	}
	body := map[string]any{"port": map[string]any{"network_id": nets[0].ID, "project_id": "proj-pod1", "name": "someone-elses",
		"device_owner": "network:router_interface", "device_id": "router-of-someone",
		"fixed_ips": []map[string]string{{"subnet_id": subs[0].ID, "ip_address": "10.60.0.3"}}}}
	if _, err := w.nc.Post(ctx, w.nc.ServiceURL("ports"), body, &made, &gophercloud.RequestOpts{OkCodes: []int{201}}); err != nil {
		t.Fatal(err)
	}

	if err := w.svc.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var j model.Job
	for {
		j = w.job(n.ID, "pod1")
		if j.State == model.JobFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %+v: want failed", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if j.NextRunAt != nil || !strings.Contains(j.LastError, made.Port.ID) {
		t.Fatalf("job %+v: want failed without retry, naming port %s", j, made.Port.ID)
	}
	_, subs, ports := w.bottom(n.ID, "proj-pod1")
	if len(subs) != 1 || len(ports) != 1 || ports[0].Name != "someone-elses" {
		t.Fatalf("after teardown: subnets %+v ports %+v; want the subnet and only the foreign port", subs, ports)
	}
	t.Logf("job kept the network: %s", j.LastError)

	if _, err := w.nc.Delete(ctx, w.nc.ServiceURL("ports", made.Port.ID), nil); err != nil {
		t.Fatal(err)
	}
	mustDo[model.Job](t)(w.svc.RetryJob(ctx, j.ID))
	w.pool.Wake()
	w.settle(n.ID, "pod1")
	if nets, subs, ports := w.bottom(n.ID, "proj-pod1"); len(nets)+len(subs)+len(ports) != 0 {
		t.Fatalf("after detach and retry: %v %v %v", nets, subs, ports)
	}
}
