package state

import (
	"cmp"
	"maps"
	"reflect"
	"slices"

	"github.com/l2span/l2span/brain/model"
)

// Model is every pod's desired state held in memory and kept up to date
// change by change: Apply takes the rows a commit touched and returns what
// changed for each pod, so neither a change nor a snapshot re-reads the
// store. It holds the overlay networks (spanned or not yet), their segments,
// subnets and ports, the pods and the registered gateways. It is not safe
// for concurrent use.
type Model struct {
	rev     int64
	nets    map[string]*netEntry
	portNet map[string]*netEntry // port id -> its network
	pods    map[string]model.Pod
	// gateways are every registered gateway, by id, never nil; replaced
	// whole on a change, never written through (deltas share it).
	gateways []Gateway
	// podNets indexes the networks with a segment in each pod.
	podNets map[string]map[string]*netEntry
	// interned pod ids: every port of a pod shares one string.
	names map[string]string
}

type netEntry struct {
	net     model.Network
	segs    []model.Segment // by pod
	subnets []model.Subnet
	ports   map[string]*portEntry // by port id
}

// portEntry is what the projection keeps of a port; never changed in place
// (a snapshot shares its strings and IP slice).
type portEntry struct {
	mac, pod string
	seq      int64
	ips      []string
}

func (p *portEntry) remote() RemotePort { return remotePort(p.mac, p.pod, p.seq, p.ips) }

func samePort(a, b *portEntry) bool {
	return a.mac == b.mac && a.pod == b.pod && a.seq == b.seq && slices.Equal(a.ips, b.ips)
}

// NewModel builds the model at revision rev from every overlay network's
// rows (ports included), every pod and every registered gateway.
func NewModel(rev int64, nets []NetworkRows, pods []model.Pod, gws []model.Gateway) *Model {
	m := &Model{rev: rev, nets: map[string]*netEntry{}, portNet: map[string]*netEntry{},
		pods: map[string]model.Pod{}, gateways: Gateways(gws), podNets: map[string]map[string]*netEntry{}, names: map[string]string{}}
	for _, p := range pods {
		m.pods[p.ID] = p
	}
	for _, rows := range nets {
		e := m.setHeader(rows)
		if e == nil {
			continue
		}
		for _, p := range rows.Ports {
			m.setPort(e, p)
		}
	}
	return m
}

// Revision is the revision the model reflects.
func (m *Model) Revision() int64 { return m.rev }

// Ports counts the ports held.
func (m *Model) Ports() int { return len(m.portNet) }

func (m *Model) intern(s string) string {
	if v, ok := m.names[s]; ok {
		return v
	}
	m.names[s] = s
	return s
}

// setHeader writes a network's row, segments and subnets (its ports stay);
// nil when the network is not an overlay network (then it is dropped).
func (m *Model) setHeader(rows NetworkRows) *netEntry {
	id := rows.Network.ID
	e := m.nets[id]
	if !slices.Contains(OverlayTypes, rows.Network.Type) {
		if e != nil {
			m.dropNetwork(e)
		}
		return nil
	}
	if e == nil {
		e = &netEntry{ports: map[string]*portEntry{}}
		m.nets[id] = e
	}
	for _, g := range e.segs {
		delete(m.podNets[g.PodID], id)
	}
	e.net = rows.Network
	e.net.Segments = nil
	e.segs = slices.SortedFunc(slices.Values(rows.Segments), func(a, b model.Segment) int { return cmp.Compare(a.PodID, b.PodID) })
	e.subnets = slices.Clone(rows.Subnets)
	for _, g := range e.segs {
		if m.podNets[g.PodID] == nil {
			m.podNets[g.PodID] = map[string]*netEntry{}
		}
		m.podNets[g.PodID][id] = e
	}
	return e
}

func (m *Model) dropNetwork(e *netEntry) {
	for _, g := range e.segs {
		delete(m.podNets[g.PodID], e.net.ID)
	}
	for id := range e.ports {
		delete(m.portNet, id)
	}
	delete(m.nets, e.net.ID)
}

func (m *Model) setPort(e *netEntry, p model.Port) {
	e.ports[p.ID] = &portEntry{mac: p.MAC, pod: m.intern(p.PodID), seq: p.MobilitySeq, ips: slices.Clip(p.IPs)}
	m.portNet[p.ID] = e
}

// inState reports whether e is in pod's state.
func inState(e *netEntry, pod string) bool {
	return e != nil && len(e.segs) >= 2 && slices.ContainsFunc(e.segs, func(g model.Segment) bool { return g.PodID == pod })
}

func (e *netEntry) header(pod string) (NetworkState, bool) {
	return header(pod, e.net, e.segs, e.subnets)
}

// state is e's full state for pod (which must have it in its state).
func (e *netEntry) state(pod string) NetworkState {
	st, _ := e.header(pod)
	st.RemotePorts = make([]RemotePort, 0, len(e.ports))
	for _, p := range e.ports {
		if p.pod != pod {
			st.RemotePorts = append(st.RemotePorts, p.remote())
		}
	}
	sortPorts(st.RemotePorts)
	return st
}

// PodState is pod's full desired state: a copy that shares only immutable
// strings with the model.
func (m *Model) PodState(pod string) PodState {
	st := PodState{PodID: pod, Revision: m.rev, Networks: []NetworkState{}, DVRBaseMACs: m.dvrBaseMACs(pod),
		Gateways: slices.Clone(m.gateways)}
	for _, e := range m.podNets[pod] {
		if inState(e, pod) {
			st.Networks = append(st.Networks, e.state(pod))
		}
	}
	slices.SortFunc(st.Networks, func(a, b NetworkState) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	return st
}

// NetworkState is one network's full state for pod; ok is false when the
// network is not in pod's state.
func (m *Model) NetworkState(pod, id string) (NetworkState, bool) {
	e := m.nets[id]
	if !inState(e, pod) {
		return NetworkState{}, false
	}
	return e.state(pod), true
}

// HasPod reports whether pod exists.
func (m *Model) HasPod(pod string) bool { _, ok := m.pods[pod]; return ok }

func (m *Model) dvrBaseMACs(pod string) map[string]string {
	return DVRBaseMACs(pod, slices.Collect(maps.Values(m.pods)))
}

// Batch is what one or more commits touched, re-read at one revision.
type Batch struct {
	Revision int64
	// Networks maps each network whose row, segments or subnets changed to
	// its rows now (Ports unused), or to nil when it is gone.
	Networks map[string]*NetworkRows
	// Ports maps each changed port id to its row now, or to nil when it is
	// gone.
	Ports map[string]*model.Port
	// Pods, when not nil, is every pod now (a pod changed).
	Pods []model.Pod
	// Gateways, when not nil, is every registered gateway now (one was
	// registered, moved or deleted).
	Gateways []model.Gateway
}

// PodDelta is what changed in one pod's state.
type PodDelta struct {
	// Added are networks that entered the pod's state (or must be replaced
	// whole), in full, by id.
	Added []NetworkState
	// Removed are networks that left the pod's state, sorted.
	Removed []string
	// Changed are patches to networks the pod keeps, by id.
	Changed []NetworkDelta
	// Pod, when set, replaces the pod-wide part of the state.
	Pod *PodWide
}

// PodWide is the part of a pod's state that is not per network; a delta
// carries all of it when any of it changed.
type PodWide struct {
	DVRBaseMACs map[string]string
	// Gateways are every registered gateway, by id, never nil.
	Gateways []Gateway
}

// NetworkDelta patches one network of a pod's state. A client applies
// Header, then RemovedMACs, then Upserted.
type NetworkDelta struct {
	NetworkID string
	// Header, when set, replaces everything but the remote ports (its
	// RemotePorts is empty and ignored).
	Header *NetworkState
	// RemovedMACs are remote ports gone, sorted.
	RemovedMACs []string
	// Upserted are remote ports added or changed (keyed by MAC), sorted.
	Upserted []RemotePort
}

// Empty reports whether d changes nothing.
func (d PodDelta) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0 && d.Pod == nil
}

// before is what a touched network looked like to each pod before a batch.
type before struct {
	headers map[string]NetworkState // pod -> header, for pods with it in their state
	ports   map[string]*portEntry   // port id -> entry before (nil: absent)
}

// Apply applies b and returns each pod's delta (pods whose state did not
// change are left out). The model then reflects b.Revision.
func (m *Model) Apply(b Batch) map[string]*PodDelta {
	touched := map[string]*before{}
	touch := func(e *netEntry, id string) *before {
		if t, ok := touched[id]; ok {
			return t
		}
		t := &before{headers: map[string]NetworkState{}, ports: map[string]*portEntry{}}
		if e != nil {
			for _, g := range e.segs {
				if h, ok := e.header(g.PodID); ok {
					t.headers[g.PodID] = h
				}
			}
		}
		touched[id] = t
		return t
	}
	for _, id := range slices.Sorted(maps.Keys(b.Networks)) {
		rows, e := b.Networks[id], m.nets[id]
		touch(e, id)
		if rows == nil {
			if e != nil {
				m.dropNetwork(e)
			}
			continue
		}
		m.setHeader(*rows)
	}
	for id, p := range b.Ports {
		old := m.portNet[id]
		if old != nil {
			t := touch(old, old.net.ID)
			if _, seen := t.ports[id]; !seen {
				t.ports[id] = old.ports[id]
			}
			delete(old.ports, id)
			delete(m.portNet, id)
		}
		if p == nil {
			continue
		}
		e := m.nets[p.NetworkID]
		if e == nil {
			continue // not an overlay network
		}
		t := touch(e, p.NetworkID)
		if _, seen := t.ports[id]; !seen {
			t.ports[id] = nil
		}
		m.setPort(e, *p)
	}
	out := map[string]*PodDelta{}
	get := func(pod string) *PodDelta {
		if out[pod] == nil {
			out[pod] = &PodDelta{}
		}
		return out[pod]
	}
	for id, t := range touched {
		m.diffNetwork(id, t, get)
	}
	if b.Pods != nil || b.Gateways != nil {
		m.applyPodWide(b.Pods, b.Gateways, get)
	}
	m.rev = b.Revision
	for pod, d := range out {
		if d.Empty() {
			delete(out, pod)
			continue
		}
		slices.SortFunc(d.Added, func(a, b NetworkState) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
		slices.Sort(d.Removed)
		slices.SortFunc(d.Changed, func(a, b NetworkDelta) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	}
	return out
}

// diffNetwork adds what changed in network id for each pod that had it or
// has it now.
func (m *Model) diffNetwork(id string, t *before, get func(string) *PodDelta) {
	e := m.nets[id]
	pods := map[string]bool{}
	for pod := range t.headers {
		pods[pod] = true
	}
	if e != nil {
		for _, g := range e.segs {
			if inState(e, g.PodID) {
				pods[g.PodID] = true
			}
		}
	}
	for pod := range pods {
		was, hadIt := t.headers[pod]
		has := inState(e, pod)
		switch {
		case has && !hadIt:
			get(pod).Added = append(get(pod).Added, e.state(pod))
		case hadIt && !has:
			get(pod).Removed = append(get(pod).Removed, id)
		default:
			if nd := e.portDelta(pod, t.ports); nd != nil || !reflect.DeepEqual(was, mustHeader(e, pod)) {
				if nd == nil {
					nd = &NetworkDelta{NetworkID: id}
				}
				if h := mustHeader(e, pod); !reflect.DeepEqual(was, h) {
					nd.Header = &h
				}
				get(pod).Changed = append(get(pod).Changed, *nd)
			}
		}
	}
}

func mustHeader(e *netEntry, pod string) NetworkState {
	h, _ := e.header(pod)
	return h
}

// portDelta is what changed among the ports of e as pod sees them, given
// each changed port's entry before; nil when nothing did.
func (e *netEntry) portDelta(pod string, olds map[string]*portEntry) *NetworkDelta {
	var nd NetworkDelta
	upserted := map[string]bool{}
	for id, old := range olds {
		cur := e.ports[id]
		oldR := old != nil && old.pod != pod
		newR := cur != nil && cur.pod != pod
		if newR && (!oldR || !samePort(old, cur)) {
			nd.Upserted = append(nd.Upserted, cur.remote())
			upserted[cur.mac] = true
		}
		if oldR && (!newR || old.mac != cur.mac) {
			nd.RemovedMACs = append(nd.RemovedMACs, old.mac)
		}
	}
	// A MAC that left with one port and came back with another is an upsert.
	nd.RemovedMACs = slices.DeleteFunc(nd.RemovedMACs, func(mac string) bool { return upserted[mac] })
	if len(nd.Upserted) == 0 && len(nd.RemovedMACs) == 0 {
		return nil
	}
	nd.NetworkID = e.net.ID
	sortPorts(nd.Upserted)
	slices.Sort(nd.RemovedMACs)
	nd.RemovedMACs = slices.Compact(nd.RemovedMACs)
	return &nd
}

// applyPodWide replaces the pods (when pods is not nil) and the gateways
// (when gws is not nil) and gives every pod whose pod-wide state changed
// its new one.
func (m *Model) applyPodWide(pods []model.Pod, gws []model.Gateway, get func(string) *PodDelta) {
	old := map[string]map[string]string{}
	for id := range m.pods {
		old[id] = m.dvrBaseMACs(id)
	}
	if pods != nil {
		m.pods = map[string]model.Pod{}
		for _, p := range pods {
			m.pods[p.ID] = p
		}
	}
	gwsChanged := false
	if gws != nil {
		now := Gateways(gws)
		gwsChanged = !slices.Equal(m.gateways, now)
		if gwsChanged {
			m.gateways = now
		}
	}
	for id := range m.pods {
		now := m.dvrBaseMACs(id)
		if was, ok := old[id]; !ok || gwsChanged || !maps.Equal(was, now) {
			get(id).Pod = &PodWide{DVRBaseMACs: now, Gateways: m.gateways}
		}
	}
}

// AddPort adds a port while loading (a port of a network the model does not
// hold is ignored): NewModel without ports, then AddPort for each as a
// store streams them, never holds every port twice.
func (m *Model) AddPort(p model.Port) {
	if e := m.nets[p.NetworkID]; e != nil {
		m.setPort(e, p)
	}
}
