package ml2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// These tests drive the real `openstack` CLI (Debian python3-openstackclient)
// against the rig's neutron-server, as a user would, and check what it
// prints and what the brain then holds.

const openstackBin = "/usr/bin/openstack"

// cliResult is one run of the CLI.
type cliResult struct {
	args   []string
	code   int
	stdout string
	stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("openstack %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// openstack runs the CLI with noauth against the rig's neutron-server.
func openstack(t *testing.T, args ...string) cliResult {
	t.Helper()
	if _, err := os.Stat(openstackBin); err != nil {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatal("python3-openstackclient not installed: run make deps")
		}
		t.Skip("python3-openstackclient not installed: run make deps")
	}
	home := filepath.Join(rig.tmp, "cli-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, openstackBin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "LANG=C.UTF-8",
		"OS_AUTH_TYPE=none", "OS_ENDPOINT=" + strings.TrimSuffix(rig.neutron.URL, "/")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("openstack %v: %v", args, err)
	}
	t.Logf("openstack %s -> exit %d %s%s", strings.Join(args, " "), r.code, oneLine(r.stdout), oneLine(r.stderr))
	return r
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// cliNetwork is what `network create/show -f json` prints that we check.
type cliNetwork struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	NetworkType     string   `json:"provider:network_type"`
	PhysicalNetwork *string  `json:"provider:physical_network"`
	SegmentationID  *int     `json:"provider:segmentation_id"`
	AZHints         []string `json:"availability_zone_hints"`
}

// cliCreateNetwork runs `network create -f json ARGS NAME`, which must succeed.
func cliCreateNetwork(t *testing.T, name string, args ...string) cliNetwork {
	t.Helper()
	r := openstack(t, append(append([]string{"network", "create", "-f", "json"}, args...), name)...)
	if r.code != 0 {
		t.Fatalf("%s\nneutron log:\n%s", r, rig.neutron.LogTail())
	}
	var n cliNetwork
	if err := json.Unmarshal([]byte(r.stdout), &n); err != nil || n.ID == "" {
		t.Fatalf("network create printed %q: %v", r.stdout, err)
	}
	// Fixed segments and names must be free for the next run (-count).
	t.Cleanup(func() { neutron(t, "DELETE", "networks/"+n.ID, nil, nil) })
	return n
}

// cliRefused checks that r failed with the HTTP status code (so never a
// 500) and that its message holds every one of want. The CLI prints
// "ConflictException: 409, <message>" (or "409: Client Error for url").
func cliRefused(t *testing.T, r cliResult, code int, want ...string) {
	t.Helper()
	out := r.stdout + r.stderr
	if r.code == 0 || !strings.Contains(out, fmt.Sprintf("Exception: %d", code)) {
		t.Fatalf("want a %d refusal: %s", code, r)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("refusal does not say %q: %s", w, r)
		}
	}
}

// waitBrainNetwork waits for the brain network named after a Neutron id.
func waitBrainNetwork(t *testing.T, neutronID string, d time.Duration) api.Network {
	t.Helper()
	var bnet *api.Network
	eventually(t, d, func() (err error) {
		if bnet, err = brainNetwork(context.Background(), neutronID); err == nil && bnet == nil {
			err = fmt.Errorf("network %s not in the brain", neutronID)
		}
		return err
	})
	return *bnet
}

// sameSegment checks that the brain holds the segment the CLI printed.
func sameSegment(t *testing.T, n cliNetwork, b api.Network, typ string) {
	t.Helper()
	if n.SegmentationID == nil || b.Type != typ || b.SegmentationID != *n.SegmentationID {
		t.Errorf("network %s: openstack shows %s %v, brain holds %s %d", n.Name, n.NetworkType, deref(n.SegmentationID), b.Type, b.SegmentationID)
	}
	if typ == api.TypeSharedVLAN && (n.PhysicalNetwork == nil || b.PhysicalNetwork != *n.PhysicalNetwork) {
		t.Errorf("network %s: openstack shows physnet %v, brain holds %q", n.Name, deref(n.PhysicalNetwork), b.PhysicalNetwork)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// The id `openstack network show` prints is the brain's: the brain adopts
// Neutron's segment (tenant VXLAN, provider and tenant-range VLAN), its own
// allocator never hands that id out again, and a clash with an id the brain
// already gave away is a 409 that names the field and the network typed.
func TestCLIBrainAdoptsNeutronSegment(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	c := brainClient()

	vx := cliCreateNetwork(t, "cli-vxlan")
	sameSegment(t, vx, waitBrainNetwork(t, vx.ID, 10*time.Second), api.TypeSharedVXLAN)
	v150 := cliCreateNetwork(t, "cli-vlan150", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1", "--provider-segment", "150")
	sameSegment(t, v150, waitBrainNetwork(t, v150.ID, 10*time.Second), api.TypeSharedVLAN)
	vAny := cliCreateNetwork(t, "cli-vlan", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1")
	sameSegment(t, vAny, waitBrainNetwork(t, vAny.ID, 10*time.Second), api.TypeSharedVLAN)

	// Flat maps to mixed_vlan_vxlan: Neutron has no id, the brain's VNI
	// comes from its own range, kept apart from Neutron's (5000-5999).
	flat := cliCreateNetwork(t, "cli-flat", "--provider-network-type", "flat", "--provider-physical-network", "physnet2")
	if b := waitBrainNetwork(t, flat.ID, 10*time.Second); b.Type != api.TypeMixedVLANVXLAN || b.SegmentationID < 9000 || flat.SegmentationID != nil {
		t.Errorf("flat network: openstack shows %v, brain holds %+v; want mixed_vlan_vxlan with a VNI from 9000:9999", deref(flat.SegmentationID), b)
	}

	// The brain's own allocator skips what it adopted from Neutron.
	own, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "brain-own-vlan", Type: api.TypeSharedVLAN, PhysicalNetwork: "physnet1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DeleteNetwork(ctx, own.ID)
	if own.SegmentationID == *v150.SegmentationID || own.SegmentationID == *vAny.SegmentationID {
		t.Fatalf("brain allocated VLAN %d that Neutron networks hold (%d, %d)", own.SegmentationID, *v150.SegmentationID, *vAny.SegmentationID)
	}

	// A Neutron segment the brain already gave to another network: 409,
	// and Neutron removes the network again.
	seg := fmt.Sprint(own.SegmentationID)
	r := openstack(t, "network", "create", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1", "--provider-segment", seg, "cli-clash")
	cliRefused(t, r, 409, "segmentation_id", "VLAN "+seg+" on physical network physnet1", "cli-clash", "brain-own-vlan")
	if r := openstack(t, "network", "show", "cli-clash"); r.code == 0 {
		t.Fatalf("refused network left in Neutron: %s", r)
	}
	l, err := c.ListNetworks(ctx, api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Items {
		if n.Type == api.TypeSharedVLAN && n.PhysicalNetwork == "physnet1" && n.SegmentationID == own.SegmentationID && n.ID != own.ID {
			t.Fatalf("brain network %+v shares VLAN %d with %s", n, own.SegmentationID, own.ID)
		}
	}
}

// Networks made while the brain is down reach it, from the journal, with
// Neutron's segment.
func TestCLISegmentOfNetworkMadeWhileBrainDown(t *testing.T) {
	needRig(t)
	rig.brain.kill()
	brainUp := false
	defer func() {
		if !brainUp {
			rig.brain.start()
		}
	}()
	vx := cliCreateNetwork(t, "cli-down-vxlan")
	vl := cliCreateNetwork(t, "cli-down-vlan", "--provider-network-type", "vlan", "--provider-physical-network", "physnet2", "--provider-segment", "180")
	if err := rig.brain.start(); err != nil {
		t.Fatal(err)
	}
	brainUp = true
	sameSegment(t, vx, waitBrainNetwork(t, vx.ID, 30*time.Second), api.TypeSharedVXLAN)
	sameSegment(t, vl, waitBrainNetwork(t, vl.ID, 30*time.Second), api.TypeSharedVLAN)
}

// Neutron Zed gives an IPv6 subnet the subnet-router anycast address (the
// prefix's first address) as its gateway: the brain takes it as it is.
func TestCLIIPv6DefaultSubnet(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	n := cliCreateNetwork(t, "cli-v6")
	r := openstack(t, "subnet", "create", "-f", "json", "--network", n.ID, "--ip-version", "6", "--subnet-range", "2001:db8:1::/64", "cli-v6-sub")
	if r.code != 0 {
		t.Fatalf("%s\nneutron log:\n%s", r, rig.neutron.LogTail())
	}
	var sub struct {
		ID        string `json:"id"`
		GatewayIP string `json:"gateway_ip"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sub); err != nil || sub.GatewayIP != "2001:db8:1::" {
		t.Fatalf("subnet create printed %q (%v); want gateway 2001:db8:1::", r.stdout, err)
	}
	b := waitBrainNetwork(t, n.ID, 10*time.Second)
	subs, err := brainClient().ListSubnets(ctx, api.ListOptions{Filters: map[string]string{"network_id": b.ID}})
	if err != nil || len(subs.Items) != 1 || subs.Items[0].CIDR != "2001:db8:1::/64" || subs.Items[0].GatewayIP != "2001:db8:1::" {
		t.Fatalf("brain subnets = %+v, %v; want 2001:db8:1::/64 gateway 2001:db8:1::", subs.Items, err)
	}
}

// An external network is pinned to one pod with one availability zone hint
// naming an AZ that holds exactly one pod; every other form (and any
// network hinted at an AZ with no pod) is a clear 400 from precommit,
// before anything is created.
func TestCLIExternalNetworkPinnedToOnePod(t *testing.T) {
	needRig(t)
	ext := cliCreateNetwork(t, "cli-ext", "--external", "--availability-zone-hint", "az1")
	if b := waitBrainNetwork(t, ext.ID, 10*time.Second); !b.External || !slices.Equal(b.AZHints, []string{"pod1"}) {
		t.Fatalf("brain network = %+v; want external, az_hints [pod1]", b)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--external"}, []string{"exactly one l2span pod", "--availability-zone-hint"}},
		{[]string{"--external", "--availability-zone-hint", "az1", "--availability-zone-hint", "az2"}, []string{"exactly one l2span pod"}},
		{[]string{"--external", "--availability-zone-hint", "az3"}, []string{`availability zone "az3" holds no l2span pod`}},
		{[]string{"--external", "--availability-zone-hint", "az4"}, []string{`availability zone "az4" holds pods pod4, pod5`}},
		{[]string{"--availability-zone-hint", "az3"}, []string{`availability zone "az3" holds no l2span pod`}},
	} {
		r := openstack(t, append(append([]string{"network", "create"}, c.args...), "cli-ext-refused")...)
		cliRefused(t, r, 400, append(c.want, "cli-ext-refused")...)
	}
	if r := openstack(t, "network", "show", "cli-ext-refused"); r.code == 0 {
		t.Fatalf("refused network left in Neutron: %s", r)
	}
	// A port of it in another pod (compute-b1 is in pod2) is refused too.
	r := openstack(t, "port", "create", "--network", ext.ID, "--host", hostB, "cli-ext-port")
	cliRefused(t, r, 409, "pod1")
}
