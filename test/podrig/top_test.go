package podrig

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/l2span/l2span/brain/api"
)

// viaTopNeutron: a shared_vxlan network made through the top Neutron with
// the l2span ML2 driver (noauth, a driver token, host_pod_map mapping each
// pod's compute hosts to it). Network, subnets and VM ports are created in
// the top Neutron and the ports bound to a compute host of each pod
// (binding:host_id); the driver forwards them to the brain, whose jobs make
// the bottom and shadow ports; the VMs plugged on the real compute hosts
// ping across the pods over IPv4 and IPv6 through l's gateways.
func viaTopNeutron(t *testing.T, l *spanLab, h1, h2 *Host) {
	t.Helper()
	r := l.r
	p1, p2 := r.Pods[0], r.Pods[1]
	ctx := context.Background()
	tok, err := l.c.CreateToken(ctx, api.TokenCreate{Role: api.RoleDriver, Description: "top neutron-server"})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(l.dir, "driver.token")
	if err := os.WriteFile(tokFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	top, err := r.StartTop(TopOptions{BrainURL: "http://" + BrainIP.String() + ":9797", TokenFile: tokFile, VNIs: "4600:4699"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("top neutron-server log:\n%s", top.Log())
		}
		top.Stop()
	})
	t.Logf("top neutron-server up in %s", time.Since(began).Round(time.Millisecond))
	c := top.Client()
	post := func(kind string, body JSON) JSON {
		t.Helper()
		var resp map[string]JSON
		key := kind[:len(kind)-1]
		if _, err := c.Post(ctx, c.ServiceURL(kind), JSON{key: body}, &resp, &gophercloud.RequestOpts{OkCodes: []int{201}}); err != nil {
			t.Fatalf("top neutron: create %s: %v", key, err)
		}
		return resp[key]
	}
	net := post("networks", JSON{"name": "span-top", "tenant_id": "t"})
	netID := net["id"].(string)
	seg64, _ := net["provider:segmentation_id"].(json.Number).Int64()
	seg := int(seg64)
	bn, err := l.c.GetNetwork(ctx, netID)
	if err != nil || bn.Type != "shared_vxlan" || bn.SegmentationID != seg || bn.ManagedBy != "neutron" {
		t.Fatalf("brain network of top network %s (VNI %d): %+v, %v", netID, seg, bn, err)
	}
	// No gateway: Neutron's default IPv6 gateway (the subnet-router
	// anycast address, 2001:db8:16::) is refused as a port IP by the pods'
	// Neutrons, and the brain's gateway port job then retries forever
	// (left for a follow-up; see the issue note).
	for _, s := range []JSON{
		{"network_id": netID, "tenant_id": "t", "cidr": "192.0.2.0/24", "ip_version": 4, "enable_dhcp": false, "gateway_ip": nil},
		{"network_id": netID, "tenant_id": "t", "cidr": "2001:db8:16::/64", "ip_version": 6, "enable_dhcp": false, "gateway_ip": nil},
	} {
		post("subnets", s)
	}
	boot := func(p *Pod, h *Host, mac string, ips ...netip.Prefix) *VM {
		t.Helper()
		var fixed []JSON
		for _, ip := range ips {
			fixed = append(fixed, JSON{"ip_address": ip.Addr().String()})
		}
		port := post("ports", JSON{"network_id": netID, "tenant_id": "t", "mac_address": mac, "fixed_ips": fixed,
			"binding:host_id": h.Name, "device_owner": "compute:nova", "device_id": "vm-" + mac})
		if port["binding:vif_type"] != "other" || port["status"] != "ACTIVE" {
			t.Fatalf("top port on %s: vif_type %v status %v", h.Name, port["binding:vif_type"], port["status"])
		}
		return plugBottom(t, r, p, h, port["id"].(string), mac, ips...)
	}
	vm1 := boot(p1, h1, "fa:16:3e:16:01:01", netip.MustParsePrefix("192.0.2.41/24"), netip.MustParsePrefix("2001:db8:16::41/64"))
	vm2 := boot(p2, h2, "fa:16:3e:16:02:01", netip.MustParsePrefix("192.0.2.42/24"), netip.MustParsePrefix("2001:db8:16::42/64"))
	for _, x := range []struct {
		h   *Host
		mac string
		g   netip.Addr
	}{{h1, vm2.MAC.String(), p1.ShadowIP}, {h2, vm1.MAC.String(), p2.ShadowIP}} {
		if err := waitFor(60*time.Second, x.mac+" at G on "+x.h.Name, func() error {
			dst, err := x.h.FDBDst(seg, x.mac)
			if err == nil && dst != x.g {
				err = fmt.Errorf("points at %s", dst)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range []netip.Addr{vm2.IPs[0].Addr(), vm2.IPs[1].Addr()} {
		if err := waitFor(30*time.Second, "ping "+ip.String()+" (top Neutron network)", func() error { return vm1.Ping(ip) }); err != nil {
			t.Fatal(err)
		}
	}
}
