package ml2

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// The brain keeps Neutron's ids and names end to end: network and subnet
// ids equal, the network's name is the one typed, and a refusal names the
// network as the user typed it, never an id only the brain knows.
func TestCLINeutronIDsAndNamesInBrain(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	n := cliCreateNetwork(t, "cli-names", "--availability-zone-hint", "az1")
	b := waitBrainNetwork(t, n.ID, 10*time.Second)
	if b.ID != n.ID || b.Name != "cli-names" || b.ManagedBy != "neutron" {
		t.Fatalf("brain network = %+v; want id %s, name cli-names, managed_by neutron", b, n.ID)
	}
	r := openstack(t, "subnet", "create", "-f", "json", "--network", "cli-names", "--subnet-range", "192.0.2.0/26", "cli-names-sub")
	if r.code != 0 {
		t.Fatal(r)
	}
	var sub struct{ ID string }
	json.Unmarshal([]byte(r.stdout), &sub)
	if s, err := brainClient().GetSubnet(ctx, sub.ID); err != nil || s.NetworkID != n.ID || s.CIDR != "192.0.2.0/26" {
		t.Fatalf("brain subnet %s = %+v, %v; want Neutron's id on network %s", sub.ID, s, err, n.ID)
	}
	// compute-b1 is in pod2 (az2), outside the network's az1.
	r = openstack(t, "port", "create", "--network", "cli-names", "--host", hostB, "--device-owner", "compute:nova", "cli-names-port")
	cliRefused(t, r, 409, fmt.Sprintf(`network "cli-names" (%s)`, n.ID), "pod pod2", "az2")
}

// With the brain down, a port bound outside the network's scope is still
// refused (the scope is in Neutron's own data), one inside it is taken and
// reaches the brain when it is back, and a subnet made meanwhile arrives
// once, with Neutron's id, and no error for itself.
func TestCLIScopeCheckedWithBrainDown(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	n := cliCreateNetwork(t, "cli-down-scope", "--availability-zone-hint", "az1")
	waitBrainNetwork(t, n.ID, 10*time.Second)
	rig.brain.kill()
	brainUp := false
	defer func() {
		if !brainUp {
			rig.brain.start()
		}
	}()
	r := openstack(t, "port", "create", "--network", n.ID, "--host", hostB, "--device-owner", "compute:nova", "cli-down-out")
	cliRefused(t, r, 409, fmt.Sprintf(`network "cli-down-scope" (%s)`, n.ID), "pod pod2", "az2", "[az1]")
	in := cliPort(t, n.ID, hostA, "cli-down-in")
	r = openstack(t, "subnet", "create", "-f", "json", "--network", n.ID, "--subnet-range", "198.51.100.64/26", "cli-down-sub")
	if r.code != 0 {
		t.Fatal(r)
	}
	var sub struct{ ID string }
	json.Unmarshal([]byte(r.stdout), &sub)
	if err := rig.brain.start(); err != nil {
		t.Fatal(err)
	}
	brainUp = true
	eventually(t, 30*time.Second, func() error {
		subs, err := brainClient().ListSubnets(ctx, api.ListOptions{Filters: map[string]string{"network_id": n.ID}})
		if err != nil || len(subs.Items) != 1 || subs.Items[0].ID != sub.ID {
			return fmt.Errorf("brain subnets = %+v, %v; want only %s", subs.Items, err, sub.ID)
		}
		if p, err := brainPort(ctx, in); err != nil || p == nil || p.PodID != "pod1" {
			return fmt.Errorf("in-scope port: %+v, %v", p, err)
		}
		return nil
	})
	var out struct{ Ports []nPort }
	mustNeutron(t, "GET", "ports?network_id="+n.ID, nil, &out)
	if len(out.Ports) != 1 {
		t.Fatalf("Neutron holds %d ports; the out-of-scope one must not be there", len(out.Ports))
	}
	if strings.Contains(rig.neutron.Log(), sub.ID+": brain: 409") {
		t.Fatalf("the journal reported a clash for its own subnet:\n%s", rig.neutron.LogTail())
	}
}

// `network set --name` and `--external` / `--internal` reach the brain;
// making a network external that cannot be pinned to one pod is a 400
// naming it; `network delete` removes the brain's network even while
// switch-learned ports remain.
func TestCLINetworkSetAndDeleteReachBrain(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	n := cliCreateNetwork(t, "cli-set", "--availability-zone-hint", "az1")
	waitBrainNetwork(t, n.ID, 10*time.Second)
	brainIs := func(what string, ok func(b *api.Network) bool) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			b, err := brainNetwork(ctx, n.ID)
			if err != nil || b == nil || !ok(b) {
				return fmt.Errorf("brain network = %+v, %v; want %s", b, err, what)
			}
			return nil
		})
	}
	if r := openstack(t, "network", "set", "--name", "cli-set-renamed", n.ID); r.code != 0 {
		t.Fatal(r)
	}
	brainIs("name cli-set-renamed", func(b *api.Network) bool { return b.Name == "cli-set-renamed" })
	if r := openstack(t, "network", "set", "--external", "cli-set-renamed"); r.code != 0 {
		t.Fatal(r)
	}
	brainIs("external pinned to pod1", func(b *api.Network) bool { return b.External && slices.Equal(b.AZHints, []string{"pod1"}) })
	if r := openstack(t, "network", "set", "--internal", "cli-set-renamed"); r.code != 0 {
		t.Fatal(r)
	}
	brainIs("internal in az1", func(b *api.Network) bool { return !b.External && slices.Equal(b.AZHints, []string{"az1"}) })

	wide := cliCreateNetwork(t, "cli-set-wide")
	r := openstack(t, "network", "set", "--external", "cli-set-wide")
	cliRefused(t, r, 400, fmt.Sprintf(`network "cli-set-wide" (%s)`, wide.ID), "exactly one l2span pod")
	if b := waitBrainNetwork(t, wide.ID, 5*time.Second); b.External {
		t.Fatalf("refused --external reached the brain: %+v", b)
	}

	// A MAC a gateway learned keeps the network busy in the brain; the
	// delete takes it with the network, at once, not at the next full sync.
	if _, err := brainClient().CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:1e:a2:01", DeviceOwner: "l2gw:learned"}); err != nil {
		t.Fatal(err)
	}
	if r := openstack(t, "network", "delete", "cli-set-renamed"); r.code != 0 {
		t.Fatal(r)
	}
	if b, err := brainNetwork(ctx, n.ID); err != nil || b != nil {
		t.Fatalf("brain network after delete = %+v, %v; want gone", b, err)
	}
}

// A VM port on a host that maps to no pod is refused with the host and the
// port named (and logged at WARNING); any other port there ends
// binding_failed, with the reason at WARNING in the server log.
func TestCLIHostInNoPod(t *testing.T) {
	needRig(t)
	n := cliCreateNetwork(t, "cli-nopod")
	r := openstack(t, "port", "create", "--network", n.ID, "--host", "nowhere-1", "--device-owner", "compute:nova", "cli-nopod-vm")
	cliRefused(t, r, 400, `host "nowhere-1"`, `port "cli-nopod-vm"`, "host_pod_map")
	r = openstack(t, "port", "create", "-f", "json", "--network", n.ID, "--host", "nowhere-1", "cli-nopod-other")
	if r.code != 0 || !strings.Contains(r.stdout, `"binding_vif_type": "binding_failed"`) {
		t.Fatalf("want binding_failed: %s", r)
	}
	eventually(t, 5*time.Second, func() error {
		for _, l := range strings.Split(rig.neutron.Log(), "\n") {
			if strings.Contains(l, "WARNING networking_l2span.mech_driver") && strings.Contains(l, "host nowhere-1 maps to no l2span pod") {
				return nil
			}
		}
		return fmt.Errorf("no WARNING with the reason in the server log")
	})
}
