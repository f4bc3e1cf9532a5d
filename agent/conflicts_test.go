package agent

import (
	"slices"
	"testing"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

func TestBuildPlanReportsConflicts(t *testing.T) {
	dup := net1
	dup.RemotePorts = []api.RemotePort{
		{MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.2"}, PodID: "pod2"},
		{MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.9"}, PodID: "pod3"}, // the same MAC in another pod
		{MAC: "fa:16:3e:00:00:04", IPs: []string{"203.0.113.2"}, PodID: "pod3"}, // the same IP on another MAC
	}
	members := []gossip.Member{
		member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
		member("gw3", "pod3", "198.51.100.13", gossip.StateAlive),
	}
	p := BuildPlan(PlanInput{State: stateWith(dup), Members: members, Self: "gw1", PodID: "pod1", PopulateMACs: true})
	want := []string{
		"vni 4000: mac fa:16:3e:00:00:02 claimed by both 198.51.100.12 and 198.51.100.13; kept 198.51.100.12",
		"vni 4000: ip 203.0.113.2 claimed by both fa:16:3e:00:00:02 and fa:16:3e:00:00:04; kept fa:16:3e:00:00:02",
	}
	if p.Conflicts != 2 || !slices.Equal(p.Skipped, want) {
		t.Fatalf("conflicts %d, skipped %q; want 2, %q", p.Conflicts, p.Skipped, want)
	}
	if n := p.Config.Networks[0]; len(n.MACs) != 2 || len(n.Neighbors) != 2 {
		t.Fatalf("network %+v", n)
	}
}
