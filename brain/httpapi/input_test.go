package httpapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// TestPortIPRules: an IP belongs to one port of a network, in one of its
// subnets, never its network, broadcast or gateway address, nor a
// loopback/multicast/unspecified/link-local one; spellings are normalised
// before any comparison.
func TestPortIPRules(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}))
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "2001:db8:1::/64", GatewayIP: "2001:db8:1::1"}))
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "198.51.100.0/31"}))
		mac := func(i int) string { return fmt.Sprintf("fa:16:3e:00:10:%02x", i) }
		port := func(i int, ips ...string) api.PortCreate {
			return api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: mac(i), IPs: ips}
		}
		p1 := must[api.Port](t)(c.CreatePort(ctx, port(1, "203.0.113.5", "2001:DB8:1:0::0:5")))
		if p1.IPs[1] != "2001:db8:1::5" {
			t.Fatalf("IPv6 not in its canonical form: %v", p1.IPs)
		}
		// The same IP, however spelt, in another port of the network: 409.
		for _, ip := range []string{"203.0.113.5", "::ffff:203.0.113.5", "2001:db8:1::5", "2001:0db8:0001:0000:0000:0000:0000:0005"} {
			_, err := c.CreatePort(ctx, port(2, ip))
			wantError(t, err, 409, "ips")
		}
		// ... in another pod too, and through a bulk create and an update.
		_, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: mac(2), IPs: []string{"203.0.113.5"}})
		wantError(t, err, 409, "ips")
		_, err = c.CreatePorts(ctx, []api.PortCreate{port(3, "203.0.113.7"), port(4, "203.0.113.7")})
		wantError(t, err, 409, "ports[1].ips")
		p5 := must[api.Port](t)(c.CreatePort(ctx, port(5, "203.0.113.9")))
		ips := []string{"203.0.113.5"}
		_, err = c.UpdatePort(ctx, p5.ID, api.PortUpdate{IPs: &ips})
		wantError(t, err, 409, "ips")
		// A port keeps its own IP through an update, and a deleted port's
		// IP is free again; the mapped spelling is stored as IPv4.
		ips = []string{"203.0.113.9", "203.0.113.10"}
		must[api.Port](t)(c.UpdatePort(ctx, p5.ID, api.PortUpdate{IPs: &ips}))
		if err := c.DeletePort(ctx, p1.ID); err != nil {
			t.Fatal(err)
		}
		p6 := must[api.Port](t)(c.CreatePort(ctx, port(6, "::ffff:203.0.113.5")))
		if p6.IPs[0] != "203.0.113.5" {
			t.Fatalf("mapped address kept as %v", p6.IPs)
		}
		// The same IP in another network is fine.
		n2 := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n2", Type: api.TypeSharedVXLAN}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n2.ID, PodID: "pod1", MAC: mac(7), IPs: []string{"203.0.113.5"}}))

		for _, tc := range []struct {
			ip     string
			status int
		}{
			{"192.0.2.5", 400},      // in no subnet
			{"203.0.113.0", 400},    // network address
			{"203.0.113.255", 400},  // broadcast address
			{"203.0.113.1", 409},    // the gateway
			{"2001:db8:1::1", 409},  // the IPv6 gateway
			{"127.0.0.1", 400},      // loopback
			{"224.0.0.5", 400},      // multicast
			{"0.0.0.0", 400},        // unspecified
			{"169.254.1.1", 400},    // link-local
			{"fe80::1", 400},        // link-local
			{"ff02::1", 400},        // multicast
			{"203.0.113.20%1", 400}, // zone
		} {
			_, err := c.CreatePort(ctx, port(8, tc.ip))
			wantError(t, err, tc.status, "ips")
		}
		// RFC 3021: both addresses of a /31 are hosts.
		must[api.Port](t)(c.CreatePort(ctx, port(9, "198.51.100.0")))
		must[api.Port](t)(c.CreatePort(ctx, port(10, "198.51.100.1")))
		_, err = c.CreatePort(ctx, port(11, "203.0.113.30", "203.0.113.30"))
		wantError(t, err, 400, "ips")
		// Without subnets, only unicast is checked.
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n2.ID, PodID: "pod1", MAC: mac(12), IPs: []string{"192.0.2.77"}}))
		_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: n2.ID, PodID: "pod1", MAC: mac(13), IPs: []string{"127.0.0.2"}})
		wantError(t, err, 400, "ips")
		// A mapped prefix cannot hold an unmapped IP: refused at subnet create.
		_, err = c.CreateSubnet(ctx, api.Subnet{NetworkID: n2.ID, CIDR: "::ffff:192.0.2.0/120"})
		wantError(t, err, 400, "cidr")
	})
}

// TestConcurrentSameIP: of many concurrent creates (single, so group
// committed) claiming one IP, exactly one wins.
func TestConcurrentSameIP(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		var wg sync.WaitGroup
		errs := make([]error, 24)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: fmt.Sprintf("pod%d", 1+i%3), MAC: fmt.Sprintf("fa:16:3e:00:20:%02x", i), IPs: []string{"192.0.2.10"}})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			default:
				wantError(t, err, 409, "ips")
			}
		}
		ports, err := api.ListAll(ctx, c.ListPorts, api.ListOptions{Filters: map[string]string{"network_id": n.ID}})
		if won != 1 || err != nil || len(ports) != 1 {
			t.Fatalf("%d creates won, %d ports (%v)", won, len(ports), err)
		}
	})
}

// TestGatewayAndPodInput: VTEPs are unicast and unique across pods;
// dvr_base_mac is unicast.
func TestGatewayAndPodInput(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		gw := func(id, pod, vtep string) api.Gateway {
			return api.Gateway{ID: id, PodID: pod, VTEP: vtep, Backend: "linux"}
		}
		for _, v := range []string{"0.0.0.0", "127.0.0.1", "169.254.0.9", "224.0.0.1", "255.255.255.255", "::", "::1", "fe80::9", "ff02::1", "nope"} {
			_, err := c.RegisterGateway(ctx, gw("gw-a", "pod1", v))
			wantError(t, err, 400, "vtep")
		}
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw("gw-a", "pod1", "192.0.2.1")))
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw("gw-a", "pod1", "192.0.2.1"))) // a refresh
		_, err := c.RegisterGateway(ctx, gw("gw-b", "pod2", "192.0.2.1"))
		wantError(t, err, 409, "vtep")
		_, err = c.RegisterGateway(ctx, gw("gw-b", "pod2", "::ffff:192.0.2.1"))
		wantError(t, err, 409, "vtep")
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw("gw-b", "pod2", "192.0.2.2")))
		// In its own pod an agent may re-register under a new id.
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw("gw-a2", "pod1", "192.0.2.1")))

		_, err = c.CreatePod(ctx, api.Pod{ID: "pod9", AZ: "az9", DVRBaseMAC: "01:00:5e:00:00:00/24"})
		wantError(t, err, 400, "dvr_base_mac")
		_, err = c.UpdatePod(ctx, api.Pod{ID: "pod2", DVRBaseMAC: "ff:ff:ff:00:00:00"})
		wantError(t, err, 400, "dvr_base_mac")
	})
}

// TestStringCaps: every free-text field has a length cap and refuses
// control characters; echoed input is truncated.
func TestStringCaps(t *testing.T) {
	ctx := context.Background()
	tb := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{})
	c := tb.client
	threePods(t, c)
	long := strings.Repeat("x", 256)
	_, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: long, Type: api.TypeSharedVXLAN})
	wantError(t, err, 400, "name")
	_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "evil\x1b[31mred", Type: api.TypeSharedVXLAN})
	wantError(t, err, 400, "name")
	_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "rlo\u202eexe", Type: api.TypeSharedVXLAN})
	wantError(t, err, 400, "name")
	_, err = c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN, AZHints: []string{"az1\n"}})
	wantError(t, err, 400, "az_hints")
	n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "ünïcode ok", Type: api.TypeSharedVXLAN}))
	bad := "x\x00y"
	_, err = c.UpdateNetwork(ctx, n.ID, api.NetworkUpdate{Name: &bad})
	wantError(t, err, 400, "name")
	_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:30:01", DeviceOwner: strings.Repeat("o", 300)})
	wantError(t, err, 400, "device_owner")
	_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:30:01", DeviceOwner: "compute:\tnova"})
	wantError(t, err, 400, "device_owner")
	_, err = c.UpdatePod(ctx, api.Pod{ID: "pod1", Region: "r\r\n1"})
	wantError(t, err, 400, "region")
	// An id of 10,000 characters comes back as 64 and "...".
	_, err = c.CreatePod(ctx, api.Pod{ID: strings.Repeat("y", 10000), AZ: "az1"})
	wantError(t, err, 400, "id")
	if msg := err.Error(); len(msg) > 300 || !strings.Contains(msg, `"`+strings.Repeat("y", 64)+`"...`) {
		t.Fatalf("echo not truncated (%d bytes): %.400s", len(msg), msg)
	}
	_, err = c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: strings.Repeat("m", 5000)})
	if wantError(t, err, 400, "mac"); len(err.Error()) > 300 {
		t.Fatalf("mac echo not truncated: %d bytes", len(err.Error()))
	}
	// Segmentation ids outside the configured ranges: refused, but for admin.
	d := driverClient(t, tb)
	_, err = d.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, SegmentationID: 7000})
	wantError(t, err, 400, "segmentation_id")
	_, err = d.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet1", SegmentationID: 200})
	wantError(t, err, 400, "segmentation_id")
	must[api.Network](t)(d.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet1", SegmentationID: 101}))
	must[api.Network](t)(d.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, SegmentationID: 5555}))
	must[api.Network](t)(tb.client.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeSharedVXLAN, SegmentationID: 7000}))
}
