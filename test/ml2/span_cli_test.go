package ml2

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// cliSegment is a row of `network segment list --long -f json`.
type cliSegment struct {
	ID              string `json:"ID"`
	NetworkType     string `json:"Network Type"`
	Segment         *int   `json:"Segment"`
	PhysicalNetwork string `json:"Physical Network"`
}

// podSegments lists the network's per-pod segments (physical_network
// with a '#') through the CLI, as "type:physnet:id" sorted.
func podSegments(t *testing.T, netID string) ([]string, error) {
	t.Helper()
	r := openstack(t, "network", "segment", "list", "--long", "--network", netID, "-f", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("%s", r)
	}
	var rows []cliSegment
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		return nil, fmt.Errorf("segment list printed %q: %v", r.stdout, err)
	}
	var out []string
	for _, s := range rows {
		if strings.Contains(s.PhysicalNetwork, "#") {
			out = append(out, fmt.Sprintf("%s:%s:%v", s.NetworkType, s.PhysicalNetwork, deref(s.Segment)))
		}
	}
	slices.Sort(out)
	return out, nil
}

// networkAZs is what `network show` prints as availability_zones.
func networkAZs(t *testing.T, netID string) ([]string, error) {
	t.Helper()
	r := openstack(t, "network", "show", netID, "-f", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("%s", r)
	}
	var n struct {
		AZs         []string `json:"availability_zones"`
		NetworkType string   `json:"provider:network_type"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &n); err != nil {
		return nil, fmt.Errorf("network show printed %q: %v", r.stdout, err)
	}
	if n.NetworkType == "" {
		return nil, fmt.Errorf("network show lost Neutron's own segment: %s", r.stdout)
	}
	slices.Sort(n.AZs)
	return n.AZs, nil
}

func cliPort(t *testing.T, netID, host, name string) string {
	t.Helper()
	r := openstack(t, "port", "create", "-f", "json", "--network", netID, "--host", host, "--device-owner", "compute:nova", name)
	if r.code != 0 {
		t.Fatalf("%s\nneutron log:\n%s", r, rig.neutron.LogTail())
	}
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.ID == "" {
		t.Fatalf("port create printed %q: %v", r.stdout, err)
	}
	return p.ID
}

// waitSpan waits until the CLI shows the network's per-pod segments and
// availability zones as want.
func waitSpan(t *testing.T, netID string, segs, azs []string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		got, err := podSegments(t, netID)
		if err != nil {
			return err
		}
		if !slices.Equal(got, segs) {
			return fmt.Errorf("network segment list shows pod segments %v, want %v", got, segs)
		}
		gotAZ, err := networkAZs(t, netID)
		if err != nil {
			return err
		}
		if !slices.Equal(gotAZ, azs) {
			return fmt.Errorf("network show availability_zones = %v, want %v", gotAZ, azs)
		}
		return nil
	})
}

// The span is visible in Neutron: one segment per pod the network reached
// (physical_network bottom_physnet#pod, or #pod for VXLAN), added when a
// port is bound in a new pod and removed when the last one there goes, and
// the pods' AZs in availability_zones; Neutron's own segment stays what
// `network show` prints.
func TestCLISpanVisibleInNeutron(t *testing.T) {
	needRig(t)
	vx := cliCreateNetwork(t, "cli-span")
	vni := *vx.SegmentationID
	waitSpan(t, vx.ID, nil, nil)
	a := cliPort(t, vx.ID, hostA, "cli-span-a") // pod1, az1
	waitSpan(t, vx.ID, []string{fmt.Sprintf("vxlan:#pod1:%d", vni)}, []string{"az1"})
	b := cliPort(t, vx.ID, hostB, "cli-span-b") // pod2, az2
	waitSpan(t, vx.ID, []string{fmt.Sprintf("vxlan:#pod1:%d", vni), fmt.Sprintf("vxlan:#pod2:%d", vni)}, []string{"az1", "az2"})
	if r := openstack(t, "port", "delete", b); r.code != 0 {
		t.Fatal(r)
	}
	waitSpan(t, vx.ID, []string{fmt.Sprintf("vxlan:#pod1:%d", vni)}, []string{"az1"})

	vl := cliCreateNetwork(t, "cli-span-vlan", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1")
	cliPort(t, vl.ID, hostB, "cli-span-vlan-b")
	waitSpan(t, vl.ID, []string{fmt.Sprintf("vlan:physnet1#pod2:%d", *vl.SegmentationID)}, []string{"az2"})

	// The last port gone: no pod segment, no AZ; the network deletes.
	if r := openstack(t, "port", "delete", a); r.code != 0 {
		t.Fatal(r)
	}
	waitSpan(t, vx.ID, nil, nil)
	if r := openstack(t, "network", "delete", vx.ID); r.code != 0 {
		t.Fatal(r)
	}
}
