package ml2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// Networks, subnets and ports made through Neutron's API appear in the
// brain (type and az_hints mapped, pod from the binding host), follow a
// re-bind and disappear with their delete.
func TestForwardsToBrain(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	c := brainClient()

	netID := createNetwork(t, "web", "az1", "az2")
	var bnet *api.Network
	eventually(t, 5*time.Second, func() (err error) {
		if bnet, err = brainNetwork(ctx, netID); err == nil && bnet == nil {
			err = errors.New("network not in the brain")
		}
		return err
	})
	if bnet.Type != api.TypeSharedVXLAN || !slices.Equal(bnet.AZHints, []string{"az1", "az2"}) || bnet.SegmentationID < 5000 {
		t.Fatalf("brain network = %+v, want shared_vxlan in [az1 az2] with a VNI", bnet)
	}
	subID := createSubnet(t, netID, "192.0.2.0/24")
	subs, err := c.ListSubnets(ctx, api.ListOptions{Filters: map[string]string{"network_id": bnet.ID}})
	if err != nil || len(subs.Items) != 1 || subs.Items[0].CIDR != "192.0.2.0/24" || subs.Items[0].GatewayIP != "192.0.2.1" {
		t.Fatalf("brain subnets = %+v, %v", subs.Items, err)
	}

	began := time.Now()
	pa := createPort(t, netID, hostA, "")
	portCreate := time.Since(began)
	pb := createPort(t, netID, hostB, "") // AZ fallback: compute-b1's agent is in az2 = pod2
	t.Logf("port create through Neutron + driver: %s", portCreate)
	if pa.VIFType != "other" || pb.VIFType != "other" {
		t.Errorf("vif types = %q, %q, want other (bound by l2span)", pa.VIFType, pb.VIFType)
	}
	for _, want := range []struct {
		p   nPort
		pod string
	}{{pa, "pod1"}, {pb, "pod2"}} {
		got, err := brainPort(ctx, want.p.ID)
		if err != nil || got == nil {
			t.Fatalf("brain port %s: %v %v", want.p.ID, got, err)
		}
		if got.PodID != want.pod || got.MAC != want.p.MAC || got.NetworkID != bnet.ID || len(got.IPs) != 1 || got.IPs[0] != want.p.FixedIPs[0].IP {
			t.Errorf("brain port = %+v, want pod %s mac %s ip %v", got, want.pod, want.p.MAC, want.p.FixedIPs)
		}
	}
	st, err := c.PodState(ctx, "pod1")
	i := slices.IndexFunc(st.Networks, func(n api.NetworkState) bool { return n.NetworkID == bnet.ID })
	if err != nil || i < 0 || len(st.Networks[i].RemotePorts) != 1 || st.Networks[i].RemotePorts[0].MAC != pb.MAC {
		t.Fatalf("pod1 state = %+v, %v; want pod2's port as remote", st, err)
	}

	// An unbound port stays out of the brain until it is bound.
	pu := createPort(t, netID, "", "")
	if got, _ := brainPort(ctx, pu.ID); got != nil {
		t.Fatalf("unbound port in the brain: %+v", got)
	}
	mustNeutron(t, "PUT", "ports/"+pu.ID, map[string]any{"port": map[string]any{"binding:host_id": hostA}}, nil)
	if got, err := brainPort(ctx, pu.ID); err != nil || got == nil || got.PodID != "pod1" {
		t.Fatalf("port bound by update: %+v, %v", got, err)
	}

	// Re-bind to compute-b1: the brain port moves to pod2.
	mustNeutron(t, "PUT", "ports/"+pa.ID, map[string]any{"port": map[string]any{"binding:host_id": hostB}}, nil)
	if got, err := brainPort(ctx, pa.ID); err != nil || got == nil || got.PodID != "pod2" || got.MobilitySeq != 1 {
		t.Fatalf("moved port = %+v, %v; want pod2 seq 1", got, err)
	}

	for _, p := range []nPort{pa, pb, pu} {
		mustNeutron(t, "DELETE", "ports/"+p.ID, nil, nil)
		if got, err := brainPort(ctx, p.ID); err != nil || got != nil {
			t.Fatalf("deleted port %s still in the brain: %+v %v", p.ID, got, err)
		}
	}
	mustNeutron(t, "DELETE", "subnets/"+subID, nil, nil)
	if subs, err := c.ListSubnets(ctx, api.ListOptions{Filters: map[string]string{"network_id": bnet.ID}}); err != nil || len(subs.Items) != 0 {
		t.Fatalf("subnets after delete = %+v, %v", subs.Items, err)
	}
	mustNeutron(t, "DELETE", "networks/"+netID, nil, nil)
	if got, err := brainNetwork(ctx, netID); err != nil || got != nil {
		t.Fatalf("deleted network still in the brain: %+v %v", got, err)
	}
}

// What the brain would refuse, Neutron refuses, with the brain's message
// and nothing written: a port in a pod outside the network's AZs, a MAC
// another port of the network has in the brain, an AZ with no pod.
func TestRefusedWithBrainMessage(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	c := brainClient()

	netID := createNetwork(t, "scoped", "az1")
	createSubnet(t, netID, "198.51.100.0/24")
	bnet, err := brainNetwork(ctx, netID)
	if err != nil || bnet == nil {
		t.Fatalf("brain network: %v %v", bnet, err)
	}
	// compute-b1 is in pod2, az2: outside [az1]. Both the driver and the
	// brain name the network as the user knows it: name and Neutron id.
	if bnet.ID != netID || bnet.Name != "scoped" {
		t.Fatalf("brain network = %+v; want Neutron's id %s and name scoped", bnet, netID)
	}
	label := fmt.Sprintf(`network "scoped" (%s)`, netID)
	err = neutron(t, "POST", "ports", portBody(netID, hostB, ""), nil)
	want := fmt.Sprintf("pod pod2 (host %s) is in availability zone az2, outside %s's availability zones [az1]", hostB, label)
	var ne *neutronErr
	if !errors.As(err, &ne) || ne.Status != http.StatusConflict || ne.Message != want {
		t.Fatalf("out-of-scope port: %v, want 409 %q", err, want)
	}
	// The brain says the same about that placement.
	_, berr := c.CreatePort(ctx, api.PortCreate{NetworkID: bnet.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:99"})
	want = fmt.Sprintf("pod pod2 is in availability zone az2, outside %s's az_hints [az1]", label)
	var ae *api.Error
	if !errors.As(berr, &ae) || ae.Status != http.StatusConflict || ae.Message != want {
		t.Fatalf("brain: %v, want 409 %q", berr, want)
	}
	assertNoPorts(t, netID)

	// A MAC the brain already holds in this network (e.g. learned by a
	// gateway) cannot be given to a Neutron port.
	const mac = "fa:16:3e:12:34:56"
	if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: bnet.ID, PodID: "pod1", MAC: mac, DeviceOwner: "l2gw:learned"}); err != nil {
		t.Fatal(err)
	}
	err = neutron(t, "POST", "ports", portBody(netID, hostA, mac), nil)
	want = fmt.Sprintf("MAC %s is already used by another port of %s", mac, label)
	if !errors.As(err, &ne) || ne.Status != http.StatusConflict || ne.Message != want {
		t.Fatalf("duplicate MAC: %v, want 409 %q", err, want)
	}
	assertNoPorts(t, netID)

	// A subnet gateway outside its CIDR (an AZ hint no pod is in: see
	// TestCLIExternalNetworkPinnedToOnePod).
	err = neutron(t, "POST", "subnets", map[string]any{"subnet": map[string]any{"network_id": netID, "cidr": "203.0.113.0/25", "ip_version": 4, "gateway_ip": "203.0.113.200"}}, nil)
	want = "203.0.113.200 is not inside 203.0.113.0/25"
	if !errors.As(err, &ne) || ne.Status != http.StatusBadRequest || ne.Message != want {
		t.Fatalf("gateway outside: %v, want 400 %q", err, want)
	}
}

func assertNoPorts(t *testing.T, netID string) {
	t.Helper()
	var out struct{ Ports []nPort }
	mustNeutron(t, "GET", "ports?network_id="+netID, nil, &out)
	if len(out.Ports) != 0 {
		t.Fatalf("Neutron kept refused ports: %+v", out.Ports)
	}
}
