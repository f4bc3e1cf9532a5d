package jobs_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/l2span/l2span/brain/jobs"
	"github.com/l2span/l2span/brain/model"
)

// agentBottom is a fake Neutron that also lists its L2 agents.
type agentBottom struct {
	*fakeBottom
	agents []jobs.Agent
}

func (a agentBottom) ListAgents(context.Context) ([]jobs.Agent, error) {
	if err := a.call("ListAgents", ""); err != nil {
		return nil, err
	}
	return a.agents, nil
}

type shadowBottoms struct {
	fb     fakeBottoms
	agents []jobs.Agent
}

func (s shadowBottoms) Bottom(ctx context.Context, pod model.Pod) (jobs.Bottom, jobs.PodConfig, error) {
	b, pc, err := s.fb.Bottom(ctx, pod)
	if err != nil {
		return nil, pc, err
	}
	pc.ShadowTunnelIP, pc.ShadowHost = "198.51.100.200", "gw-host"
	return agentBottom{b.(*fakeBottom), s.agents}, pc, nil
}

// TestSyncRecordsPodSide: the sync job reads back where the pod's ports
// are bound (binding host -> agent tunneling_ip) into the segment's pod
// side; shadow ports, ports on hosts without a tunnel and the gateway's
// own agent are left out; a re-run with nothing changed makes no revision.
func TestSyncRecordsPodSide(t *testing.T) {
	u := newUnit(t)
	ctx := context.Background()
	u.h.Bottoms = shadowBottoms{fb: u.fb, agents: []jobs.Agent{
		{Host: "h1", TunnelingIP: "198.51.100.11"}, {Host: "h2", TunnelingIP: "198.51.100.12"},
		{Host: "gw-host", TunnelingIP: "198.51.100.200"}}}
	n, p := u.network(model.TypeSharedVXLAN, 1)
	u.run(n.ID, "pod1")
	// Nova binds the VM's bottom port to h1; someone boots a VM straight
	// on the bottom network on h2, and one on a host with no tunnel.
	f := u.fb["pod1"]
	for id, bp := range f.ports {
		if bp.MAC == p.MAC {
			bp.HostID = "h1"
			f.ports[id] = bp
		}
	}
	var netID string
	for id := range f.nets {
		netID = id
	}
	f.ports["other"] = jobs.Port{ID: "other", Name: "vm-b", NetworkID: netID, MAC: "fa:16:3e:99:00:02", HostID: "h2"}
	f.ports["nohost"] = jobs.Port{ID: "nohost", Name: "vm-c", NetworkID: netID, MAC: "fa:16:3e:99:00:03", HostID: "h9"}
	u.run(n.ID, "pod1")
	segs := mustDo[model.Network](t)(u.svc.GetNetwork(ctx, n.ID)).Segments
	want := model.PodSide{VTEPs: []string{"198.51.100.11", "198.51.100.12"},
		Ports: []model.PodSidePort{{MAC: p.MAC, VTEP: "198.51.100.11"}, {MAC: "fa:16:3e:99:00:02", VTEP: "198.51.100.12"}}}
	if len(segs) != 1 || !reflect.DeepEqual(segs[0].PodSide, want) {
		t.Fatalf("pod side %+v, want %+v", segs, want)
	}
	rev := mustDo[int64](t)(u.svc.Revision(ctx))
	u.run(n.ID, "pod1")
	if again := mustDo[int64](t)(u.svc.Revision(ctx)); again != rev {
		t.Errorf("a re-run with nothing changed made revision %d (was %d)", again, rev)
	}
}
