package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

func threePods(t *testing.T, c *api.Client) {
	mkPods(t, c,
		api.Pod{ID: "pod1", AZ: "az1", DVRBaseMAC: "fa:16:3f:00:00:00/24"},
		api.Pod{ID: "pod2", AZ: "az2"},
		api.Pod{ID: "pod3", AZ: "az3"},
	)
}

func TestPods(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		p := must[api.Pod](t)(c.CreatePod(ctx, api.Pod{ID: "pod1", AZ: "az1", DVRBaseMAC: "FA:16:3F:12:34:56"}))
		if p.DVRBaseMAC != "fa:16:3f:00:00:00/24" {
			t.Fatalf("dvr_base_mac normalized to %q", p.DVRBaseMAC)
		}
		_, err := c.CreatePod(ctx, api.Pod{ID: "pod1", AZ: "az1"})
		wantError(t, err, 409, "id")
		_, err = c.CreatePod(ctx, api.Pod{ID: "bad id", AZ: "az1"})
		wantError(t, err, 400, "id")
		_, err = c.CreatePod(ctx, api.Pod{ID: "pod2"})
		wantError(t, err, 400, "az")
		_, err = c.CreatePod(ctx, api.Pod{ID: "pod2", AZ: "az2", DVRBaseMAC: "zz"})
		wantError(t, err, 400, "dvr_base_mac")
		_, err = c.CreatePod(ctx, api.Pod{ID: "pod2", AZ: "az2", NeutronURL: "ftp://x"})
		wantError(t, err, 400, "neutron_url")
		_, err = c.UpdatePod(ctx, api.Pod{ID: "pod1", AZ: "az9"})
		wantError(t, err, 409, "az")
		got := must[api.Pod](t)(c.UpdatePod(ctx, api.Pod{ID: "pod1", Region: "r1"}))
		if got.Region != "r1" || got.AZ != "az1" {
			t.Fatalf("update: %+v", got)
		}
		_, err = c.GetPod(ctx, "nope")
		if statusOf(err) != 404 {
			t.Fatalf("get missing pod: %v", err)
		}
		for i := range 5 {
			mkPods(t, c, api.Pod{ID: fmt.Sprintf("p%02d", i), AZ: "az2"})
		}
		all, err := api.ListAll(ctx, c.ListPods, api.ListOptions{Limit: 2, Filters: map[string]string{"az": "az2"}})
		if err != nil || len(all) != 5 || all[0].ID != "p00" || all[4].ID != "p04" {
			t.Fatalf("paged list by az: %v %+v", err, all)
		}
		if err := c.DeletePod(ctx, "p00"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNetworkRules(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b := startBrain(t, url, testConfig, httpapi.Options{})
		c := b.client
		threePods(t, c)

		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN, AZHints: []string{"az2", "az1"}}))
		if n.ID == "" || n.SegmentationID != 5000 || !slices.Equal(n.AZHints, []string{"az1", "az2"}) {
			t.Fatalf("create: %+v", n)
		}
		_, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: "gre"})
		wantError(t, err, 400, "type")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, AZHints: []string{"az9"}})
		wantError(t, err, 400, "az_hints")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, External: true, AZHints: []string{"az1"}})
		wantError(t, err, 400, "az_hints") // names an AZ, not a pod
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, External: true, AZHints: []string{"pod1", "pod2"}})
		wantError(t, err, 400, "az_hints")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, SegmentationID: 1 << 24})
		wantError(t, err, 400, "segmentation_id")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, SegmentationID: 5000})
		wantError(t, err, 409, "segmentation_id")

		// az_hints cannot change; the name can.
		_, err = c.UpdateNetwork(ctx, n.ID, api.NetworkUpdate{AZHints: &[]string{"az1"}})
		wantError(t, err, 409, "az_hints")
		name := "renamed"
		same := []string{"az1", "az2"}
		got := must[api.Network](t)(c.UpdateNetwork(ctx, n.ID, api.NetworkUpdate{Name: &name, AZHints: &same}))
		if got.Name != "renamed" {
			t.Fatalf("rename: %+v", got)
		}

		// Unknown JSON fields are refused with the field named.
		resp := rawPost(t, b, "/v1/networks", `{"name":"x","type":"local","colour":"blue"}`)
		if resp.status != 400 || resp.body.Error.Field != "colour" {
			t.Fatalf("unknown field: %+v", resp)
		}
		resp = rawPost(t, b, "/v1/networks", `{"name":"x","type":5}`)
		if resp.status != 400 || resp.body.Error.Field != "type" {
			t.Fatalf("wrong JSON type: %+v", resp)
		}
		// Requested ids are admin's: allowed outside the ranges when free.
		ext := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "ext", Type: api.TypeSharedVXLAN, External: true, AZHints: []string{"pod2"}, SegmentationID: 77}))
		if ext.SegmentationID != 77 {
			t.Fatalf("requested VNI: %+v", ext)
		}
	})
}

func TestAllocation(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cfg := testConfig
		cfg.VNIRanges = []brain.VNIRange{{Min: 10, Max: 29}}
		c := startBrain(t, url, cfg, httpapi.Options{}).client
		// Twenty concurrent creates get twenty different VNIs.
		var mu sync.Mutex
		var got []int
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: fmt.Sprint("n", i), Type: api.TypeSharedVXLAN})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, n.SegmentationID)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(got)
		want := make([]int, 20)
		for i := range want {
			want[i] = 10 + i
		}
		if !slices.Equal(got, want) {
			t.Fatalf("concurrent allocation: %v", got)
		}
		// Exhausted: a clear 409.
		_, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "full", Type: api.TypeMixedVLANVXLAN})
		wantError(t, err, 409, "segmentation_id")
		// A deleted network frees its id.
		l := must[api.List[api.Network]](t)(c.ListNetworks(ctx, api.ListOptions{Filters: map[string]string{"name": "n7"}}))
		freed := l.Items[0].SegmentationID
		if err := c.DeleteNetwork(ctx, l.Items[0].ID); err != nil {
			t.Fatal(err)
		}
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "again", Type: api.TypeSharedVXLAN}))
		if n.SegmentationID != freed {
			t.Fatalf("freed id %d not reused, got %d", freed, n.SegmentationID)
		}

		// VLANs: per physnet, 3 ids configured.
		for i := range 3 {
			v := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "v", Type: api.TypeSharedVLAN}))
			if v.SegmentationID != 100+i || v.PhysicalNetwork != "physnet1" {
				t.Fatalf("vlan %d: %+v", i, v)
			}
		}
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "v", Type: api.TypeSharedVLAN})
		wantError(t, err, 409, "segmentation_id")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "v", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet9"})
		wantError(t, err, 400, "physical_network")
		_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "v", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet1", SegmentationID: 4095})
		wantError(t, err, 400, "segmentation_id")
		v := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "v", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet2", SegmentationID: 100}))
		if v.SegmentationID != 100 || v.PhysicalNetwork != "physnet2" {
			t.Fatalf("vlan on another physnet: %+v", v)
		}
	})
}

func TestPortRules(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN, AZHints: []string{"az1", "az2"}}))
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}))

		p1 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "FA:16:3E:00:00:01", IPs: []string{"203.0.113.5"}}))
		if p1.ID == "" || p1.MAC != "fa:16:3e:00:00:01" {
			t.Fatalf("port: %+v", p1)
		}
		// Out of AZ scope: 409 naming pod_id.
		_, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod3", MAC: "fa:16:3e:00:00:03"})
		wantError(t, err, 409, "pod_id")
		// Duplicate MAC within the network: 409 naming mac.
		_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:01"})
		wantError(t, err, 409, "mac")
		for _, tc := range []struct {
			p     api.PortCreate
			field string
		}{
			{api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00"}, "mac"},
			{api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "01:00:5e:00:00:01"}, "mac"},
			{api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.300"}}, "ips"},
			{api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02", IPs: []string{"198.51.100.1"}}, "ips"},
			{api.PortCreate{NetworkID: "nope", PodID: "pod2", MAC: "fa:16:3e:00:00:02"}, "network_id"},
			{api.PortCreate{NetworkID: n.ID, PodID: "pod9", MAC: "fa:16:3e:00:00:02"}, "pod_id"},
		} {
			_, err := c.CreatePort(ctx, tc.p)
			wantError(t, err, 400, tc.field)
		}
		// The network spreads lazily: a segment per pod with a bound port.
		segs := must[[]api.Segment](t)(c.ListSegments(ctx, n.ID))
		if len(segs) != 1 || segs[0].PodID != "pod1" || segs[0].NetworkType != "vxlan" || segs[0].SegmentationID != n.SegmentationID {
			t.Fatalf("segments after one port: %+v", segs)
		}
		p2 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.6"}}))
		segs = must[[]api.Segment](t)(c.ListSegments(ctx, n.ID))
		if len(segs) != 2 || segs[1].PodID != "pod2" {
			t.Fatalf("segments after two pods: %+v", segs)
		}
		// A network with ports cannot go.
		wantError(t, c.DeleteNetwork(ctx, n.ID), 409, "id")
		// The last port of a pod takes the pod's segment with it.
		if err := c.DeletePort(ctx, p2.ID); err != nil {
			t.Fatal(err)
		}
		segs = must[[]api.Segment](t)(c.ListSegments(ctx, n.ID))
		if len(segs) != 1 {
			t.Fatalf("segments after pod2's last port left: %+v", segs)
		}
		if statusOf(c.DeletePort(ctx, p2.ID)) != 404 {
			t.Fatal("deleting a deleted port is not 404")
		}

		// A local network lives in one pod only.
		loc := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "loc", Type: api.TypeLocal}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: loc.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:01"}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: loc.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:02"}))
		_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: loc.ID, PodID: "pod2", MAC: "fa:16:3e:00:01:03"})
		wantError(t, err, 409, "pod_id")

		// An external network lives in the one pod its az_hints names.
		ext := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "ext", Type: api.TypeSharedVLAN, External: true, AZHints: []string{"pod3"}}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: ext.ID, PodID: "pod3", MAC: "fa:16:3e:00:02:01"}))
		_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: ext.ID, PodID: "pod1", MAC: "fa:16:3e:00:02:02"})
		wantError(t, err, 409, "pod_id")
		segs = must[[]api.Segment](t)(c.ListSegments(ctx, ext.ID))
		if len(segs) != 1 || segs[0].PhysicalNetwork != "physnet1#pod3" || segs[0].NetworkType != "vlan" {
			t.Fatalf("shared_vlan segment: %+v", segs)
		}
	})
}

func TestSubnetRules(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		s := must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.7/24", GatewayIP: "203.0.113.1"}))
		if s.CIDR != "203.0.113.0/24" {
			t.Fatalf("cidr not masked: %+v", s)
		}
		_, err := c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.128/25"})
		wantError(t, err, 409, "cidr")
		_, err = c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "2001:db8::/64", GatewayIP: "2001:db9::1"})
		wantError(t, err, 400, "gateway_ip")
		_, err = c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "2001:db8::/129"})
		wantError(t, err, 400, "cidr")
		_, err = c.CreateSubnet(ctx, api.Subnet{NetworkID: "missing", CIDR: "2001:db8::/64"})
		wantError(t, err, 400, "network_id")
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "2001:db8::/64", GatewayIP: "2001:db8::1"}))
		l := must[api.List[api.Subnet]](t)(c.ListSubnets(ctx, api.ListOptions{Filters: map[string]string{"network_id": n.ID}}))
		if len(l.Items) != 2 {
			t.Fatalf("subnets: %+v", l)
		}
		// Deleting the network takes its subnets.
		if err := c.DeleteNetwork(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetSubnet(ctx, s.ID); statusOf(err) != 404 {
			t.Fatalf("subnet survived its network: %v", err)
		}
	})
}

func TestMixedSegments(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "mix", Type: api.TypeMixedVLANVXLAN}))
		_, err := c.ReportSegment(ctx, n.ID, api.SegmentReport{PodID: "pod1", NetworkType: "vlan", SegmentationID: 200, PhysicalNetwork: "physnet1"})
		wantError(t, err, 409, "pod_id") // not spread there yet
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
		_, err = c.ReportSegment(ctx, n.ID, api.SegmentReport{PodID: "pod1", NetworkType: "vlan", SegmentationID: 5000, PhysicalNetwork: "physnet1"})
		wantError(t, err, 400, "segmentation_id")
		_, err = c.ReportSegment(ctx, n.ID, api.SegmentReport{PodID: "pod1", NetworkType: "gre", SegmentationID: 5})
		wantError(t, err, 400, "network_type")
		seg := must[api.Segment](t)(c.ReportSegment(ctx, n.ID, api.SegmentReport{PodID: "pod1", NetworkType: "vlan", SegmentationID: 200, PhysicalNetwork: "physnet1"}))
		if seg.PhysicalNetwork != "physnet1#pod1" {
			t.Fatalf("reported segment: %+v", seg)
		}
		must[api.Segment](t)(c.ReportSegment(ctx, n.ID, api.SegmentReport{PodID: "pod2", NetworkType: "vxlan", SegmentationID: 7001}))
		st := must[api.PodState](t)(c.PodState(ctx, "pod1"))
		if len(st.Networks) != 1 || st.Networks[0].VNI != uint32(n.SegmentationID) ||
			st.Networks[0].LocalSegment.SegmentationID != 200 || st.Networks[0].LocalSegment.NetworkType != "vlan" {
			t.Fatalf("pod1 state of a mixed network: %+v", st)
		}
		vx := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "vx", Type: api.TypeSharedVXLAN}))
		_, err = c.ReportSegment(ctx, vx.ID, api.SegmentReport{PodID: "pod1", NetworkType: "vlan", SegmentationID: 200, PhysicalNetwork: "p"})
		wantError(t, err, 409, "network_type")
	})
}

func TestBulkPortsAllOrNone(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		var reqs []api.PortCreate
		for i := range 10 {
			reqs = append(reqs, api.PortCreate{NetworkID: n.ID, PodID: fmt.Sprintf("pod%d", 1+i%3), MAC: fmt.Sprintf("fa:16:3e:00:00:%02x", i+1)})
		}
		bad := slices.Clone(reqs)
		bad[3].MAC = "fa:16:3e:00:00:01" // duplicate of element 0
		_, err := c.CreatePorts(ctx, bad)
		wantError(t, err, 409, "ports[3].mac")
		l := must[api.List[api.Port]](t)(c.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"network_id": n.ID}}))
		if len(l.Items) != 0 {
			t.Fatalf("a failed bulk create left %d ports", len(l.Items))
		}
		bad = slices.Clone(reqs)
		bad[5].IPs = []string{"x"}
		_, err = c.CreatePorts(ctx, bad)
		wantError(t, err, 400, "ports[5].ips")
		ports := must[[]api.Port](t)(c.CreatePorts(ctx, reqs))
		if len(ports) != 10 {
			t.Fatalf("bulk created %d", len(ports))
		}
		l = must[api.List[api.Port]](t)(c.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"network_id": n.ID, "pod_id": "pod2"}}))
		if len(l.Items) != 3 {
			t.Fatalf("pod2 ports: %d", len(l.Items))
		}
	})
}

func TestGatewaysAndAuth(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b := startBrain(t, url, testConfig, httpapi.Options{Auth: httpapi.AuthOptions{Legacy: []string{"s3cret"}}})
		anon, _ := api.NewClient(b.http.URL)
		_, err := anon.ListPods(ctx, api.ListOptions{})
		if statusOf(err) != 401 {
			t.Fatalf("no token: %v", err)
		}
		// The legacy shared token (--token-file) is an admin token.
		c, _ := api.NewClient(b.http.URL, api.WithToken("s3cret"))
		mkPods(t, c, api.Pod{ID: "pod1", AZ: "az1"})
		g := must[api.Gateway](t)(c.RegisterGateway(ctx, api.Gateway{ID: "gw-a", PodID: "pod1", VTEP: "198.51.100.1", Backend: "linux", DVRMAC: "FA:16:3F:AA:BB:CC", PopulateMACs: true}))
		if g.DVRMAC != "fa:16:3f:aa:bb:cc" || g.LastSeen.IsZero() {
			t.Fatalf("gateway: %+v", g)
		}
		_, err = c.RegisterGateway(ctx, api.Gateway{ID: "gw-b", PodID: "pod1", VTEP: "nope", Backend: "linux"})
		wantError(t, err, 400, "vtep")
		_, err = c.RegisterGateway(ctx, api.Gateway{ID: "gw-b", PodID: "pod1", VTEP: "198.51.100.2", Backend: "sdn"})
		wantError(t, err, 400, "backend")
		_, err = c.RegisterGateway(ctx, api.Gateway{ID: "gw-b", PodID: "pod7", VTEP: "198.51.100.2", Backend: "linux"})
		wantError(t, err, 400, "pod_id")
		wantError(t, c.DeletePod(ctx, "pod1"), 409, "id")
		l := must[api.List[api.Gateway]](t)(c.ListGateways(ctx, api.ListOptions{Filters: map[string]string{"pod_id": "pod1"}}))
		if len(l.Items) != 1 {
			t.Fatalf("gateways: %+v", l)
		}
		// Health and metrics need no token.
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := http.Get(b.http.URL + path)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", path, err, resp)
			}
			resp.Body.Close()
		}
	})
}

type rawResp struct {
	status int
	body   api.ErrorBody
}

func rawPost(t *testing.T, b *testBrain, path, body string) rawResp {
	t.Helper()
	req, _ := http.NewRequest("POST", b.http.URL+path, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r rawResp
	r.status = resp.StatusCode
	json.NewDecoder(resp.Body).Decode(&r.body)
	return r
}

// Concurrent single-port creates are group-committed; each still succeeds
// or fails on its own, and a failed one never leaves a half-made segment
// behind for the others.
func TestConcurrentPortCreates(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		mkPods(t, c, api.Pod{ID: "pod4", AZ: "az2"})
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN, AZHints: []string{"az1", "az2"}}))
		type res struct {
			i   int
			err error
		}
		out := make(chan res, 64)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Pairs share a MAC: one of each pair must win. Every 8th goes
				// to pod3, outside the scope: it must fail alone.
				pod := []string{"pod1", "pod2", "pod4"}[i%3]
				if i%8 == 7 {
					pod = "pod3"
				}
				_, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: pod, MAC: fmt.Sprintf("fa:16:3e:00:01:%02x", i/2)})
				out <- res{i, err}
			}()
		}
		wg.Wait()
		close(out)
		won := map[int]int{}
		for r := range out {
			switch {
			case r.err == nil:
				won[r.i/2]++
			case r.i%8 == 7:
				wantError(t, r.err, 409, "pod_id")
			default:
				wantError(t, r.err, 409, "mac")
			}
		}
		for pair := range 32 {
			if won[pair] > 1 {
				t.Fatalf("MAC pair %d created twice", pair)
			}
		}
		ports, err := api.ListAll(ctx, c.ListPorts, api.ListOptions{Filters: map[string]string{"network_id": n.ID}})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, w := range won {
			total += w
		}
		if len(ports) != total {
			t.Fatalf("%d ports stored, %d creates answered 201", len(ports), total)
		}
		segs := must[[]api.Segment](t)(c.ListSegments(ctx, n.ID))
		have := map[string]bool{}
		for _, g := range segs {
			have[g.PodID] = true
		}
		for _, p := range ports {
			if !have[p.PodID] {
				t.Fatalf("port %s in pod %s has no segment there (segments %+v)", p.ID, p.PodID, segs)
			}
		}
		if have["pod3"] {
			t.Fatal("a refused port left a segment in pod3")
		}
	})
}

// A port id given twice is a 409 on the id, not on the MAC, on both stores.
func TestDuplicatePortID(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{ID: "neutron-port-1", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		_, err := c.CreatePort(ctx, api.PortCreate{ID: "neutron-port-1", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:02"})
		wantError(t, err, 409, "id")
		_, err = c.CreatePorts(ctx, []api.PortCreate{
			{ID: "neutron-port-2", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:03"},
			{ID: "neutron-port-1", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:04"},
		})
		wantError(t, err, 409, "ports[1].id")
	})
}
