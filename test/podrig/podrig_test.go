package podrig

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/l2span/l2span/internal/macaddr"
)

func TestMain(m *testing.M) {
	code := RunMain(m)
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// TestShadowPort: real agents, a VM port goes ACTIVE, and a shadow port
// (l2span_bottom) makes both compute hosts point its MAC at the shadow
// tunnel IP; deleting it removes the entries.
func TestShadowPort(t *testing.T) {
	r := Shared(t)
	p := r.Pods[0]
	t.Logf("rig up in %s; pod1 RSS %d MB", r.StartupTime.Round(time.Millisecond), p.RSS()>>20)
	ctx := context.Background()
	c := p.Client()
	var net struct {
		Network JSON `json:"network"`
	}
	if _, err := c.Post(ctx, c.ServiceURL("networks"), JSON{"network": JSON{"name": "smoke", "tenant_id": "t"}}, &net, &gophercloud.RequestOpts{OkCodes: []int{201}}); err != nil {
		t.Fatal(err)
	}
	netID := net.Network["id"].(string)
	seg64, _ := net.Network["provider:segmentation_id"].(json.Number).Int64()
	seg := int(seg64)
	if _, err := c.Post(ctx, c.ServiceURL("subnets"), JSON{"subnet": JSON{"network_id": netID, "cidr": "203.0.113.0/24", "ip_version": 4, "tenant_id": "t", "enable_dhcp": false}}, nil, &gophercloud.RequestOpts{OkCodes: []int{201}}); err != nil {
		t.Fatal(err)
	}
	mkPort := func(body JSON) JSON {
		t.Helper()
		body["network_id"], body["tenant_id"] = netID, "t"
		var resp struct {
			Port JSON `json:"port"`
		}
		if _, err := c.Post(ctx, c.ServiceURL("ports"), JSON{"port": body}, &resp, &gophercloud.RequestOpts{OkCodes: []int{201}}); err != nil {
			t.Fatal(err)
		}
		return resp.Port
	}
	var vms []*VM
	for i, h := range p.Hosts {
		port := mkPort(JSON{"binding:host_id": h.Name, "device_owner": "compute:nova", "device_id": fmt.Sprintf("vm-%d", i)})
		mac, _ := macaddr.Parse(port["mac_address"].(string))
		ip := netip.MustParseAddr(port["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string))
		vm, err := r.PlugVM(h, port["id"].(string), netID, mac, netip.PrefixFrom(ip, 24))
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	if err := waitFor(60*time.Second, "VM ports ACTIVE", func() error {
		ps, err := p.Ports(ctx, "device_owner=compute:nova&network_id="+netID)
		if err != nil {
			return err
		}
		for _, x := range ps {
			if x["status"] != "ACTIVE" {
				return fmt.Errorf("port %s is %s", x["id"], x["status"])
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, p.Hosts[0].AgentLog())
	}
	if err := waitFor(30*time.Second, "ping across compute hosts", func() error {
		return vms[0].Ping(vms[1].IPs[0].Addr())
	}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	shadow := mkPort(JSON{"name": "l2span-shadow-x", "mac_address": "fa:16:3e:00:00:99", "device_owner": "l2span:shadow",
		"binding:host_id": p.ShadowHost, "binding:profile": JSON{"l2span_tunnel_ip": p.ShadowIP.String()}})
	if shadow["status"] != "ACTIVE" && shadow["binding:vif_type"] != "other" {
		t.Errorf("shadow port: status %v vif_type %v", shadow["status"], shadow["binding:vif_type"])
	}
	for _, h := range p.Hosts {
		if err := waitFor(30*time.Second, h.Name+" fdb", func() error {
			dst, err := h.FDBDst(seg, "fa:16:3e:00:00:99")
			if err == nil && dst != p.ShadowIP {
				err = fmt.Errorf("points at %s", dst)
			}
			return err
		}); err != nil {
			t.Fatalf("%v\n%s", err, p.NeutronLog())
		}
	}
	t.Logf("shadow port POST -> FDB on both hosts in %s", time.Since(began).Round(time.Millisecond))
	if err := p.DeletePort(ctx, shadow["id"].(string)); err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Hosts {
		if err := waitFor(30*time.Second, h.Name+" fdb gone", func() error {
			if _, err := h.FDBDst(seg, "fa:16:3e:00:00:99"); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
