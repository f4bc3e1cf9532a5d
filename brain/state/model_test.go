package state

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/l2span/l2span/brain/model"
)

// rowsDB is the test's stand-in for the store: the rows as they are now.
type rowsDB struct {
	nets    map[string]model.Network
	segs    map[string]map[string]model.Segment // network -> pod -> segment
	subnets map[string][]model.Subnet
	ports   map[string]model.Port
	pods    map[string]model.Pod
	gws     map[string]model.Gateway
}

func (d *rowsDB) rows(id string) *NetworkRows {
	n, ok := d.nets[id]
	if !ok {
		return nil
	}
	r := &NetworkRows{Network: n, Subnets: d.subnets[id]}
	for _, g := range d.segs[id] {
		r.Segments = append(r.Segments, g)
	}
	return r
}

func (d *rowsDB) gateways() []model.Gateway {
	out := []model.Gateway{}
	for _, g := range d.gws {
		out = append(out, g)
	}
	return out
}

func (d *rowsDB) all() ([]NetworkRows, []model.Pod) {
	var out []NetworkRows
	for id := range d.nets {
		r := d.rows(id)
		for _, p := range d.ports {
			if p.NetworkID == id {
				r.Ports = append(r.Ports, p)
			}
		}
		out = append(out, *r)
	}
	var pods []model.Pod
	for _, p := range d.pods {
		pods = append(pods, p)
	}
	return out, pods
}

// reference is pod's state computed from scratch by the plain projection.
func (d *rowsDB) reference(pod string, rev int64) PodState {
	nets, pods := d.all()
	return Pod(pod, rev, nets, pods, d.gateways())
}

var podIDs = []string{"pod1", "pod2", "pod3", "pod4"}

// step makes one random change to d and returns the batch a store would
// hand the model for it.
func (d *rowsDB) step(r *rand.Rand, rev int64) Batch {
	b := Batch{Revision: rev, Networks: map[string]*NetworkRows{}, Ports: map[string]*model.Port{}}
	netID := fmt.Sprintf("n%d", r.IntN(3))
	portBatch := func(id string) {
		if p, ok := d.ports[id]; ok {
			b.Ports[id] = &p
		} else {
			b.Ports[id] = nil
		}
	}
	netBatch := func(id string) { b.Networks[id] = d.rows(id) }
	// spread and shrink: a pod has a segment iff it has a port.
	resegment := func(net string) {
		has := map[string]bool{}
		for _, p := range d.ports {
			if p.NetworkID == net {
				has[p.PodID] = true
			}
		}
		for pod := range d.segs[net] {
			if !has[pod] {
				delete(d.segs[net], pod)
				netBatch(net)
			}
		}
		for pod := range has {
			if _, ok := d.segs[net][pod]; !ok {
				d.segs[net][pod] = seg(net, pod, "vxlan", 100)
				netBatch(net)
			}
		}
	}
	switch k := r.IntN(11); {
	case k < 4: // create or move a port
		mac := fmt.Sprintf("fa:16:3e:00:00:%02x", r.IntN(40))
		id := netID + "-" + mac
		if _, ok := d.nets[netID]; !ok {
			return b
		}
		p, ok := d.ports[id]
		if !ok {
			p = port(netID, podIDs[r.IntN(len(podIDs))], mac, 0, fmt.Sprintf("10.0.0.%d", r.IntN(200)))
		} else {
			p.PodID, p.MobilitySeq = podIDs[r.IntN(len(podIDs))], p.MobilitySeq+1
		}
		d.ports[id] = p
		portBatch(id)
		resegment(netID)
	case k < 6: // delete a port
		for id, p := range d.ports {
			if p.NetworkID == netID {
				delete(d.ports, id)
				portBatch(id)
				resegment(netID)
				break
			}
		}
	case k < 7: // change IPs
		for id, p := range d.ports {
			p.IPs = []string{fmt.Sprintf("10.0.1.%d", r.IntN(200))}
			d.ports[id] = p
			portBatch(id)
			break
		}
	case k < 8: // subnets and rename, or a pod side read back
		if g, ok := d.segs[netID][podIDs[0]]; ok && r.IntN(3) == 0 {
			g.PodSide = model.PodSide{VTEPs: []string{fmt.Sprintf("198.51.100.%d", r.IntN(3))}}
			if r.IntN(2) == 0 {
				g.PodSide.Ports = []model.PodSidePort{{MAC: "fa:16:3e:00:00:01", VTEP: g.PodSide.VTEPs[0]}}
			}
			d.segs[netID][podIDs[0]] = g
			netBatch(netID)
			break
		}
		if n, ok := d.nets[netID]; ok {
			n.Name = fmt.Sprintf("name%d", r.IntN(5))
			d.nets[netID] = n
			d.subnets[netID] = append(d.subnets[netID], model.Subnet{NetworkID: netID, CIDR: fmt.Sprintf("10.%d.0.0/16", r.IntN(200))})
			netBatch(netID)
		}
	case k < 9: // create or delete a network (deleting its ports first)
		if _, ok := d.nets[netID]; ok {
			for id, p := range d.ports {
				if p.NetworkID == netID {
					delete(d.ports, id)
					portBatch(id)
				}
			}
			delete(d.nets, netID)
			delete(d.segs, netID)
			delete(d.subnets, netID)
		} else {
			typ := model.TypeSharedVXLAN
			if r.IntN(4) == 0 {
				typ = model.TypeLocal
			}
			d.nets[netID] = model.Network{ID: netID, Type: typ, SegmentationID: 5000 + r.IntN(9)}
			d.segs[netID] = map[string]model.Segment{}
		}
		netBatch(netID)
	case k < 10: // register, move, refresh or delete a gateway
		id := fmt.Sprintf("gw%d", r.IntN(4))
		g, ok := d.gws[id]
		switch {
		case ok && r.IntN(3) == 0:
			delete(d.gws, id)
		case ok && r.IntN(2) == 0:
			g.PodID, g.VTEP = podIDs[r.IntN(len(podIDs))], fmt.Sprintf("198.51.100.%d", r.IntN(8))
			d.gws[id] = g
		case ok:
			// A refresh: the change log has nothing; a batch that re-reads
			// the same gateways (a pod changed too) must change nothing.
			g.Backend = "linux"
			d.gws[id] = g
		default:
			d.gws[id] = model.Gateway{ID: id, PodID: podIDs[r.IntN(len(podIDs))], VTEP: fmt.Sprintf("198.51.100.%d", r.IntN(8))}
		}
		b.Gateways = d.gateways()
		if r.IntN(2) == 0 {
			b.Pods = slices.Collect(maps.Values(d.pods))
		}
	default: // a pod's dvr_base_mac
		p := d.pods[podIDs[r.IntN(len(podIDs))]]
		p.DVRBaseMAC = fmt.Sprintf("fa:16:3f:%02x:00:00/24", r.IntN(4))
		d.pods[p.ID] = p
		for _, p := range d.pods {
			b.Pods = append(b.Pods, p)
		}
	}
	return b
}

// TestModelMatchesProjection applies random changes to the model and to a
// watcher's copy patched with the deltas, and checks both against the
// projection computed from scratch after every change.
func TestModelMatchesProjection(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		d := &rowsDB{nets: map[string]model.Network{}, segs: map[string]map[string]model.Segment{},
			subnets: map[string][]model.Subnet{}, ports: map[string]model.Port{}, pods: map[string]model.Pod{},
			gws: map[string]model.Gateway{"gw0": {ID: "gw0", PodID: "pod1", VTEP: "198.51.100.1"}}}
		for _, p := range podIDs {
			d.pods[p] = model.Pod{ID: p}
		}
		nets, pods := d.all()
		m := NewModel(1, nets, pods, d.gateways())
		watched := map[string]*PodState{}
		for _, p := range podIDs {
			st := m.PodState(p)
			watched[p] = &st
		}
		for rev := int64(2); rev < 300; rev++ {
			deltas := m.Apply(d.step(r, rev))
			for _, pod := range podIDs {
				want := d.reference(pod, rev)
				if got := m.PodState(pod); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d rev %d pod %s: model\n%+v\nwant\n%+v", seed, rev, pod, got, want)
				}
				if dl := deltas[pod]; dl != nil {
					Patch(watched[pod], DeltaOf(rev, *dl))
				}
				watched[pod].Revision = rev
				if !reflect.DeepEqual(*watched[pod], want) {
					t.Fatalf("seed %d rev %d pod %s: patched\n%+v\nwant\n%+v\ndelta %+v", seed, rev, pod, *watched[pod], want, deltas[pod])
				}
			}
		}
	}
}

// TestModelPortChangeIsSmall: one port change in a large spanned network
// gives each other pod a delta of that one port, and nothing to the pod
// the port is in when it stays there.
func TestModelPortChangeIsSmall(t *testing.T) {
	rows := NetworkRows{Network: vx, Segments: []model.Segment{seg("n1", "pod1", "vxlan", 5001), seg("n1", "pod2", "vxlan", 5001), seg("n1", "pod3", "vxlan", 5001)}}
	for i := range 1000 {
		rows.Ports = append(rows.Ports, port("n1", podIDs[i%3], fmt.Sprintf("fa:16:3e:00:%02x:%02x", i/256, i%256), 0))
	}
	m := NewModel(1, []NetworkRows{rows}, []model.Pod{{ID: "pod1"}, {ID: "pod2"}, {ID: "pod3"}}, nil)
	p := port("n1", "pod1", "fa:16:3e:ff:00:01", 0, "10.0.0.9")
	out := m.Apply(Batch{Revision: 2, Ports: map[string]*model.Port{p.ID: &p}})
	if out["pod1"] != nil {
		t.Fatalf("pod1 owns the port, got %+v", out["pod1"])
	}
	for _, pod := range []string{"pod2", "pod3"} {
		d := out[pod]
		if d == nil || len(d.Changed) != 1 || len(d.Added) != 0 || d.Changed[0].Header != nil ||
			!reflect.DeepEqual(d.Changed[0].Upserted, []RemotePort{{MAC: p.MAC, PodID: "pod1", IPs: []string{"10.0.0.9"}}}) {
			t.Fatalf("%s: want one upserted port, got %+v", pod, d)
		}
	}
	// Moving it to pod2: pod2 drops it, pod3 sees the new pod.
	p.PodID, p.MobilitySeq = "pod2", 1
	out = m.Apply(Batch{Revision: 3, Ports: map[string]*model.Port{p.ID: &p}})
	if d := out["pod2"]; d == nil || !slices.Equal(d.Changed[0].RemovedMACs, []string{p.MAC}) || len(d.Changed[0].Upserted) != 0 {
		t.Fatalf("pod2: want the MAC removed, got %+v", d)
	}
	if d := out["pod1"]; d == nil || d.Changed[0].Upserted[0].PodID != "pod2" {
		t.Fatalf("pod1: want the port upserted in pod2, got %+v", d)
	}
	if m.Revision() != 3 || m.Ports() != 1001 {
		t.Fatalf("revision %d ports %d", m.Revision(), m.Ports())
	}
}

// TestModelGateways: a registered, moved or deleted gateway gives every pod
// the pod-wide part with the whole list; re-reading the same gateways (a
// refresh, or a pod change that re-reads them) gives nothing about them.
func TestModelGateways(t *testing.T) {
	pods := []model.Pod{{ID: "pod1"}, {ID: "pod2"}}
	m := NewModel(1, nil, pods, nil)
	if st := m.PodState("pod1"); st.Gateways == nil || len(st.Gateways) != 0 {
		t.Fatalf("no gateway: want an empty list, got %#v", st.Gateways)
	}
	gws := []model.Gateway{{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.2"}, {ID: "gw1", PodID: "pod1", VTEP: "198.51.100.1"}}
	want := Gateways(gws)
	out := m.Apply(Batch{Revision: 2, Gateways: gws})
	for _, pod := range []string{"pod1", "pod2"} {
		if d := out[pod]; d == nil || d.Pod == nil || !slices.Equal(d.Pod.Gateways, want) || d.Pod.DVRBaseMACs == nil {
			t.Fatalf("%s after registering: %+v", pod, d)
		}
	}
	st := m.PodState("pod2")
	st.Gateways[0].VTEP = "scribbled"
	if got := m.PodState("pod2").Gateways; !slices.Equal(got, want) {
		t.Fatalf("a snapshot's list aliases the model's: %+v", got)
	}
	gws[0].Backend, gws[1].DVRMAC = "linux", "fa:16:3f:00:00:01" // a refresh: no claim changed
	if out := m.Apply(Batch{Revision: 3, Gateways: gws}); len(out) != 0 {
		t.Fatalf("refresh: want no delta, got %+v", out)
	}
	pods[1].DVRBaseMAC = "fa:16:3f:02:00:00/24"
	out = m.Apply(Batch{Revision: 4, Pods: pods, Gateways: gws})
	if out["pod2"] != nil || out["pod1"] == nil || !slices.Equal(out["pod1"].Pod.Gateways, want) {
		t.Fatalf("a pod change: want pod1's pod-wide part with the same gateways only, got %+v", out)
	}
	out = m.Apply(Batch{Revision: 5, Gateways: []model.Gateway{}})
	for _, pod := range []string{"pod1", "pod2"} {
		if d := out[pod]; d == nil || d.Pod == nil || d.Pod.Gateways == nil || len(d.Pod.Gateways) != 0 {
			t.Fatalf("%s after deleting both: want an empty, non-nil list, got %+v", pod, d)
		}
	}
}
