package podrig

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/macaddr"
)

// brainFor builds and starts an l2span-brain in the rig's underlay
// namespace with bottom jobs for every pod (noauth, shadow tunnel IPs) and
// returns a client of it; extra flags go last (and win).
func brainFor(t *testing.T, r *Rig, extra ...string) *api.Client {
	t.Helper()
	dir := t.TempDir()
	bin := buildBin(t, "l2span-brain")
	pods := map[string]any{}
	for _, p := range r.Pods {
		pods[p.ID] = map[string]any{"auth": "noauth", "endpoint": p.NeutronURL, "project_id": "l2span",
			"shadow_tunnel_ip": p.ShadowIP.String(), "shadow_host": p.ShadowHost, "timeout_seconds": 30}
	}
	b, _ := json.Marshal(map[string]any{"pods": pods})
	if err := os.WriteFile(filepath.Join(dir, "bottom.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := BrainIP.String() + ":9797"
	args := []string{bin, "--listen", addr,
		"--store", "sqlite://" + filepath.Join(dir, "brain.db"), "--vni-ranges", "4000:4999", "--poll-interval", "50ms",
		"--bottom-config", filepath.Join(dir, "bottom.json"),
		// The underlay is the rig's private netns: plaintext is fine there.
		"--insecure-plaintext", "--bootstrap-token-file", filepath.Join(dir, "admin.token")}
	d, err := start(r.Underlay, filepath.Join(dir, "brain.log"), nil, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("brain log:\n%s", logTail(filepath.Join(dir, "brain.log")))
		}
		d.stop()
	})
	var c *api.Client
	if err := waitFor(20*time.Second, "brain up", func() error {
		token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil || len(token) == 0 {
			return fmt.Errorf("no admin token yet: %v", err)
		}
		c, err = api.NewClient("http://"+addr, api.WithTransport(&http.Transport{DialContext: r.Underlay.Dial}),
			api.WithToken(strings.TrimSpace(string(token))))
		if err != nil {
			return err
		}
		_, err = c.ListPods(context.Background(), api.ListOptions{Limit: 1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i, p := range r.Pods {
		if _, err := c.CreatePod(context.Background(), api.Pod{ID: p.ID, AZ: fmt.Sprintf("az%d", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// portNamed is the pod's bottom port with that name, or nil.
func portNamed(ctx context.Context, p *Pod, name string) (JSON, error) {
	ps, err := p.Ports(ctx, "name="+name)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	return ps[0], nil
}

// TestShadowPortsThroughBrain: a shared_vxlan network spanned over two
// real pods by the brain's jobs. Each pod's Neutron gets ACTIVE shadow
// ports of the other pod's ports, bound to its gateway host with its
// shadow tunnel IP, and its real compute hosts' kernels point those MACs at
// that IP; a port deleted at the top takes its shadow ports and the
// compute hosts' entries with it; a shadow port deleted by hand comes back
// with the next sync.
func TestShadowPortsThroughBrain(t *testing.T) {
	r := Shared(t)
	c := brainFor(t, r)
	ctx := context.Background()
	p1, p2 := r.Pods[0], r.Pods[1]
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "span", Type: "shared_vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"203.0.113.0/24", "2001:db8:14::/64"} {
		if _, err := c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: cidr}); err != nil {
			t.Fatal(err)
		}
	}
	vm2, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: p2.ID, MAC: "fa:16:3e:14:02:01",
		IPs: []string{"203.0.113.21", "2001:db8:14::21"}, DeviceOwner: "compute:nova"})
	if err != nil {
		t.Fatal(err)
	}
	// Nova boots vm2 on pod2-h1: binds its bottom port and plugs the tap.
	var bottom2 JSON
	if err := waitFor(60*time.Second, "vm2's bottom port in pod2", func() error {
		var err error
		if bottom2, err = portNamed(ctx, p2, "l2span-"+vm2.ID); err == nil && bottom2 == nil {
			err = fmt.Errorf("not there")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := p2.Hosts[0]
	if err := p2.UpdatePort(ctx, bottom2["id"].(string), JSON{"binding:host_id": h.Name, "device_id": "vm2"}); err != nil {
		t.Fatal(err)
	}
	mac2, _ := macaddr.Parse(vm2.MAC)
	if _, err := r.PlugVM(h, bottom2["id"].(string), bottom2["network_id"].(string), mac2,
		netip.MustParsePrefix("203.0.113.21/24"), netip.MustParsePrefix("2001:db8:14::21/64")); err != nil {
		t.Fatal(err)
	}
	waitActive(t, p2, bottom2["id"].(string))

	// Ports in pod1, one after the other: top create -> FDB entry on the
	// remote compute host pointing at pod2's shadow tunnel IP.
	count := 10
	if s := os.Getenv("PODRIG_PORTS"); s != "" {
		fmt.Sscan(s, &count)
	}
	var took []time.Duration
	var ports []api.Port
	for i := range count {
		mac := fmt.Sprintf("fa:16:3e:14:01:%02x", i+1)
		began := time.Now()
		p, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: p1.ID, MAC: mac,
			IPs: []string{fmt.Sprintf("203.0.113.%d", 100+i)}, DeviceOwner: "compute:nova"})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
		if err := waitFor(60*time.Second, "fdb of "+mac+" on "+h.Name, func() error {
			dst, err := h.FDBDst(n.SegmentationID, mac)
			if err == nil && dst != p2.ShadowIP {
				err = fmt.Errorf("points at %s, want %s", dst, p2.ShadowIP)
			}
			return err
		}); err != nil {
			t.Fatalf("%v\npod2 neutron: %s", err, p2.NeutronLog())
		}
		took = append(took, time.Since(began))
	}
	slices.Sort(took)
	t.Logf("top port create -> FDB on the remote compute host, %d ports: median %s, p99 %s, max %s",
		count, took[len(took)/2].Round(time.Millisecond), took[(len(took)*99)/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))

	noIPs(t, c, n, p1, p2, h)

	// The shadow ports are l2span's, ACTIVE, bound to the gateway host.
	sh, err := portNamed(ctx, p2, "l2span-shadow-"+ports[0].ID)
	if err != nil || sh == nil {
		t.Fatalf("shadow port of %s in pod2: %v", ports[0].ID, err)
	}
	if sh["status"] != "ACTIVE" || sh["binding:host_id"] != p2.ShadowHost || sh["device_owner"] != "l2span:shadow" ||
		!strings.EqualFold(sh["mac_address"].(string), ports[0].MAC) {
		t.Errorf("shadow port: %v", sh)
	}
	// pod1 holds a shadow of vm2 too.
	if err := waitFor(30*time.Second, "vm2's shadow in pod1", func() error {
		s, err := portNamed(ctx, p1, "l2span-shadow-"+vm2.ID)
		if err == nil && (s == nil || s["status"] != "ACTIVE") {
			err = fmt.Errorf("not ACTIVE: %v", s)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Deleted at the top: its shadow port and the compute host's entry go.
	if err := c.DeletePort(ctx, ports[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(60*time.Second, "shadow port and fdb gone", func() error {
		if s, err := portNamed(ctx, p2, "l2span-shadow-"+ports[0].ID); err != nil || s != nil {
			return fmt.Errorf("shadow port still there (%v)", err)
		}
		if _, err := h.FDBDst(n.SegmentationID, ports[0].MAC); err == nil {
			return fmt.Errorf("fdb entry still there")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Deleted by hand in pod2: the next sync of the network there makes it again.
	gone, err := portNamed(ctx, p2, "l2span-shadow-"+ports[1].ID)
	if err != nil || gone == nil {
		t.Fatalf("shadow of %s: %v", ports[1].ID, err)
	}
	if err := p2.DeletePort(ctx, gone["id"].(string)); err != nil {
		t.Fatal(err)
	}
	jobs, err := c.ListJobs(ctx, api.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.Resource == n.ID && j.PodID == p2.ID {
			if _, err := c.RetryJob(ctx, j.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := waitFor(60*time.Second, "shadow port made again", func() error {
		s, err := portNamed(ctx, p2, "l2span-shadow-"+ports[1].ID)
		if err == nil && (s == nil || s["id"] == gone["id"]) {
			err = fmt.Errorf("not made again")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func waitActive(t *testing.T, p *Pod, id string) {
	t.Helper()
	if err := waitFor(60*time.Second, "port "+id+" ACTIVE", func() error {
		ps, err := p.Ports(context.Background(), "id="+id)
		if err == nil && (len(ps) == 0 || ps[0]["status"] != "ACTIVE") {
			err = fmt.Errorf("not ACTIVE")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// noIPs: a top port without IPs gets a shadow port too, bound by
// l2span_bottom (not linuxbridge: ML2 offers an unaddressed port only to
// drivers with L2 connectivity) and ACTIVE. Neutron's l2population sends
// no MAC entry for a port without fixed IPs (l2pop mech_driver
// _get_port_fdb_entries), so the remote compute host reaches that MAC
// through its flood entry to the pod's G, which the shadow agent's ports
// put there; a MAC entry, if any, must point at G too.
func noIPs(t *testing.T, c *api.Client, n api.Network, p1, p2 *Pod, h *Host) {
	t.Helper()
	ctx := context.Background()
	const mac = "fa:16:3e:14:01:ff"
	p, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: p1.ID, MAC: mac, IPs: []string{}, DeviceOwner: "compute:nova"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.IPs) != 0 {
		t.Fatalf("top port has IPs %v", p.IPs)
	}
	if err := waitFor(60*time.Second, "shadow port without IPs ACTIVE, "+h.Name+" floods to G", func() error {
		sh, err := portNamed(ctx, p2, "l2span-shadow-"+p.ID)
		if err != nil || sh == nil {
			return fmt.Errorf("no shadow port yet (%v)", err)
		}
		if sh["status"] != "ACTIVE" || sh["binding:vif_type"] != "other" || len(sh["fixed_ips"].([]any)) != 0 {
			return fmt.Errorf("shadow port %v, vif_type %v, fixed_ips %v", sh["status"], sh["binding:vif_type"], sh["fixed_ips"])
		}
		if dst, err := h.FDBDst(n.SegmentationID, mac); err == nil && dst != p2.ShadowIP {
			return fmt.Errorf("%s points at %s, want %s", mac, dst, p2.ShadowIP)
		}
		return floodsTo(h, n.SegmentationID, p2.ShadowIP)
	}); err != nil {
		t.Fatalf("%v\npod2 neutron: %s", err, p2.NeutronLog())
	}
}

// floodsTo reports whether h's vxlan-<segment> device floods to ip.
func floodsTo(h *Host, segment int, ip netip.Addr) error {
	out, err := h.Run("bridge", "fdb", "show", "dev", fmt.Sprintf("vxlan-%d", segment))
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), "00:00:00:00:00:00 dst "+ip.String()+" ") {
		return fmt.Errorf("%s does not flood vxlan-%d to %s:\n%s", h.Name, segment, ip, out)
	}
	return nil
}
