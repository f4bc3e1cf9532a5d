package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/vtep"
)

func member(name, pod, vtepIP string, state gossip.State) gossip.Member {
	return gossip.Member{Name: name, State: state, Meta: gossip.Meta{Pod: pod, GatewayID: name,
		VTEP: netip.MustParseAddr(vtepIP), Backend: gossip.BackendLinux, Healthy: true, Weight: 100}}
}

func stateWith(nets ...api.NetworkState) api.PodState {
	return api.PodState{PodID: "pod1", Revision: 7, Networks: nets}
}

var net1 = api.NetworkState{
	NetworkID: "n1", VNI: 4000, Type: api.TypeSharedVXLAN,
	LocalSegment: api.Segment{NetworkType: "vxlan", SegmentationID: 4000},
	RemotePods:   []string{"pod2", "pod3"},
	RemotePorts: []api.RemotePort{
		{MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.2", "2001:db8::2"}, PodID: "pod2"},
		{MAC: "fa:16:3e:00:00:03", IPs: []string{"203.0.113.3"}, PodID: "pod3"},
	},
}

func TestBuildPlanPopulates(t *testing.T) {
	members := []gossip.Member{
		member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
		member("gw3", "pod3", "198.51.100.13", gossip.StateAlive),
	}
	p := BuildPlan(PlanInput{State: stateWith(net1), Members: members, Self: "gw1", PodID: "pod1",
		LocalInterface: InterfaceTemplate("seg{vni}-{type}{id}", nil), PopulateMACs: true})
	if len(p.Config.Networks) != 1 {
		t.Fatalf("networks: %+v", p.Config)
	}
	n := p.Config.Networks[0]
	if n.VNI != 4000 || n.LocalInterface != "seg4000-vxlan4000" || n.Learn {
		t.Fatalf("network: %+v", n)
	}
	if !slices.Equal(n.Flood, []netip.Addr{netip.MustParseAddr("198.51.100.12"), netip.MustParseAddr("198.51.100.13")}) {
		t.Fatalf("flood: %v", n.Flood)
	}
	if len(n.MACs) != 2 || n.MACs[0].VTEP.String() != "198.51.100.12" || n.MACs[1].VTEP.String() != "198.51.100.13" {
		t.Fatalf("macs: %+v", n.MACs)
	}
	if len(n.Neighbors) != 3 {
		t.Fatalf("neighbors: %+v", n.Neighbors)
	}
	// Same input, same plan.
	again := BuildPlan(PlanInput{State: stateWith(net1), Members: slices.Clone(members), Self: "gw1", PodID: "pod1",
		LocalInterface: InterfaceTemplate("seg{vni}-{type}{id}", nil), PopulateMACs: true})
	if !equalConfig(p.Config, again.Config) {
		t.Fatal("plan is not deterministic")
	}
}

func TestBuildPlanFloodAndLearn(t *testing.T) {
	members := []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)}
	p := BuildPlan(PlanInput{State: stateWith(net1), Members: members, Self: "gw1", PodID: "pod1", PopulateMACs: false})
	n := p.Config.Networks[0]
	if !n.Learn || len(n.MACs) != 0 || len(n.Neighbors) != 0 || len(n.Flood) != 1 {
		t.Fatalf("flood-and-learn network: %+v", n)
	}
	if !slices.Equal(p.Unreachable[4000], []string{"pod3"}) {
		t.Fatalf("pod3 has no gateway in gossip: %+v", p.Unreachable)
	}
}

// A remote pod whose only gateway looks dead keeps its entries pointing at
// the last forwarder; a pod that gains a live standby is repointed to it.
func TestBuildPlanKeepsLastForwarder(t *testing.T) {
	alive := []gossip.Member{
		member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
		member("gw3", "pod3", "198.51.100.13", gossip.StateAlive),
	}
	in := PlanInput{State: stateWith(net1), Members: alive, Self: "gw1", PodID: "pod1", PopulateMACs: true}
	first := BuildPlan(in)

	in.Members = []gossip.Member{alive[0], member("gw2", "pod2", "198.51.100.12", gossip.StateDead), alive[2]}
	in.Previous = first.Forwarders
	p := BuildPlan(in)
	if !equalConfig(p.Config, first.Config) {
		t.Fatalf("a dead remote gateway withdrew entries:\n%+v\nwas\n%+v", p.Config, first.Config)
	}
	if !slices.Equal(p.Unreachable[4000], []string{"pod2"}) {
		t.Fatalf("unreachable: %+v", p.Unreachable)
	}
	// Without memory (fresh agent) nothing points at a dead gateway.
	in.Previous = nil
	if p := BuildPlan(in); len(p.Config.Networks[0].Flood) != 1 || len(p.Config.Networks[0].MACs) != 1 {
		t.Fatalf("fresh plan with pod2 dead: %+v", p.Config.Networks[0])
	}
	// A live standby in pod2 takes over.
	in.Previous = first.Forwarders
	in.Members = append(in.Members, member("gw2b", "pod2", "198.51.100.22", gossip.StateAlive))
	p = BuildPlan(in)
	if got := p.Forwarders[ForwarderKey{4000, "pod2"}]; got.String() != "198.51.100.22" {
		t.Fatalf("pod2's forwarder after failover: %s", got)
	}
}

// Only the pod's designated forwarder bridges a network; the others stand by.
func TestBuildPlanStandby(t *testing.T) {
	members := []gossip.Member{
		member("gw1a", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw1b", "pod1", "198.51.100.21", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
	}
	df, _ := gossip.DF(4000, "pod1", members)
	other := "gw1a"
	if df.Name == "gw1a" {
		other = "gw1b"
	}
	p := BuildPlan(PlanInput{State: stateWith(net1), Members: members, Self: df.Name, PodID: "pod1", PopulateMACs: true})
	if len(p.Config.Networks) != 1 || len(p.Standby) != 0 {
		t.Fatalf("DF %s: %+v", df.Name, p)
	}
	p = BuildPlan(PlanInput{State: stateWith(net1), Members: members, Self: other, PodID: "pod1", PopulateMACs: true})
	if len(p.Config.Networks) != 0 || !slices.Equal(p.Standby, []uint32{4000}) {
		t.Fatalf("standby %s: %+v", other, p)
	}
}

func TestBuildPlanSkipsBadData(t *testing.T) {
	bad := net1
	bad.RemotePorts = []api.RemotePort{{MAC: "zz", PodID: "pod2"}, {MAC: "fa:16:3e:00:00:02", IPs: []string{"x"}, PodID: "pod2"}}
	noVNI := api.NetworkState{NetworkID: "n0"}
	members := []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)}
	p := BuildPlan(PlanInput{State: stateWith(bad, noVNI), Members: members, Self: "gw1", PodID: "pod1", PopulateMACs: true})
	if len(p.Skipped) != 3 || len(p.Config.Networks) != 1 || len(p.Config.Networks[0].MACs) != 1 {
		t.Fatalf("skipped %v, config %+v", p.Skipped, p.Config)
	}
}

func TestInterfaceTemplate(t *testing.T) {
	n := api.NetworkState{VNI: 5000, LocalSegment: api.Segment{NetworkType: "vlan", SegmentationID: 101, PhysicalNetwork: "physnet1#pod1"}}
	for tmpl, want := range map[string]string{"": "", "eth1.{id}": "eth1.101", "{physnet}-{type}-{vni}": "physnet1-vlan-5000"} {
		if got := InterfaceTemplate(tmpl, nil)(n); got != want {
			t.Errorf("%q: got %q want %q", tmpl, got, want)
		}
	}
	// A mixed network whose pod has not reported its segment yet.
	pending := api.NetworkState{VNI: 5000}
	if got := InterfaceTemplate("eth1.{id}", nil)(pending); got != "" {
		t.Errorf("pending segment attached as %q", got)
	}
}

func equalConfig(a, b vtep.Config) bool {
	if len(a.Networks) != len(b.Networks) {
		return false
	}
	for i := range a.Networks {
		x, y := a.Networks[i], b.Networks[i]
		if x.VNI != y.VNI || x.LocalInterface != y.LocalInterface || x.Learn != y.Learn ||
			!slices.Equal(x.Flood, y.Flood) || len(x.MACs) != len(y.MACs) || len(x.Neighbors) != len(y.Neighbors) {
			return false
		}
		for j := range x.MACs {
			if x.MACs[j].MAC.String() != y.MACs[j].MAC.String() || x.MACs[j].VTEP != y.MACs[j].VTEP {
				return false
			}
		}
	}
	return true
}

func TestForwardingChangesAndWouldForward(t *testing.T) {
	mk := func(vnis ...uint32) Plan {
		var p Plan
		for _, v := range vnis {
			p.Config.Networks = append(p.Config.Networks, vtep.Network{VNI: v})
		}
		return p
	}
	if got := forwardingChanges(mk(1, 2, 3), mk(2, 3, 4, 5)); got != 3 {
		t.Fatalf("changes = %d, want 3 (lost 1, gained 4 and 5)", got)
	}
	members := []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive)}
	members[0].Meta.Healthy = false // withdrawn: still counts what it would forward
	st := stateWith(net1)
	if n := wouldForward(st, members, "gw1", "pod1"); n != 1 {
		t.Fatalf("would forward %d, want 1", n)
	}
}

// A remote pod whose only live gateway withdrew as unhealthy is still sent
// to (rather than dropped); a healthy gateway there is preferred.
func TestRemoteUnhealthyGatewayStillTargeted(t *testing.T) {
	sick := member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)
	sick.Meta.Healthy = false
	in := PlanInput{State: stateWith(net1), Members: []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), sick},
		Self: "gw1", PodID: "pod1", PopulateMACs: true}
	p := BuildPlan(in)
	if got := p.Forwarders[ForwarderKey{4000, "pod2"}]; got.String() != "198.51.100.12" {
		t.Fatalf("pod2 with only an unhealthy gateway: forwarder %v", got)
	}
	in.Members = append(in.Members, member("gw2b", "pod2", "198.51.100.22", gossip.StateAlive))
	p = BuildPlan(in)
	if got := p.Forwarders[ForwarderKey{4000, "pod2"}]; got.String() != "198.51.100.22" {
		t.Fatalf("a healthy gateway must be preferred: %v", got)
	}
	// A dead one is not targeted by this rule (the last-forwarder rule covers it).
	dead := member("gw2", "pod2", "198.51.100.12", gossip.StateDead)
	in.Members = []gossip.Member{in.Members[0], dead}
	if p := BuildPlan(in); p.Forwarders[ForwarderKey{4000, "pod2"}].IsValid() {
		t.Fatal("targeted a dead gateway without memory of it")
	}
}
