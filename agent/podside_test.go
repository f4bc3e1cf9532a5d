package agent

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/vtep"
)

// TestBuildPlanPodSide: with PodSide, a network on a VXLAN segment gets
// the pod side the brain read back (its segment, compute VTEPs, local
// ports), no local interface, and its eBPF programs on the pod-side device;
// a bad entry is skipped and named; without PodSide the template applies.
func TestBuildPlanPodSide(t *testing.T) {
	members := []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)}
	n := net1
	n.LocalSegment = api.Segment{NetworkType: "vxlan", SegmentationID: 1234}
	n.PodSide = &api.PodSide{VTEPs: []string{"198.51.100.21", "bad"},
		Ports: []api.PodSidePort{{MAC: "fa:16:3e:00:00:01", VTEP: "198.51.100.21"}}}
	in := PlanInput{State: stateWith(n), Members: members, Self: "gw1", PodID: "pod1", PopulateMACs: true,
		LocalInterface: InterfaceTemplate("seg{vni}", nil), PodSide: true, PodSideName: func(vni uint32) string { return "l2sp4000" }}
	p := BuildPlan(in)
	if len(p.Config.Networks) != 1 {
		t.Fatalf("networks %+v", p.Config.Networks)
	}
	nw := p.Config.Networks[0]
	want := &vtep.PodSide{Segment: 1234, Flood: []netip.Addr{netip.MustParseAddr("198.51.100.21")},
		MACs: []vtep.MACEntry{{MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}, VTEP: netip.MustParseAddr("198.51.100.21")}}}
	if nw.LocalInterface != "" || !reflect.DeepEqual(nw.PodSide, want) {
		t.Errorf("local %q, pod side %+v; want none and %+v", nw.LocalInterface, nw.PodSide, want)
	}
	if len(p.Isolation) != 1 || p.Isolation[0].Interface != "l2sp4000" {
		t.Errorf("isolation %+v", p.Isolation)
	}
	if len(p.Skipped) != 1 {
		t.Errorf("skipped %v, want the bad vtep", p.Skipped)
	}

	in.PodSide = false
	p = BuildPlan(in)
	if nw := p.Config.Networks[0]; nw.PodSide != nil || nw.LocalInterface != "seg4000" {
		t.Errorf("without pod side: %+v", nw)
	}
}
