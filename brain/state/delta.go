package state

import (
	"cmp"
	"maps"
	"slices"
)

// EventType says what an Event carries.
type EventType int

// Event types.
const (
	// Snapshot carries the full state; the watcher replaces what it has.
	Snapshot EventType = iota + 1
	// Update (the full-network stream of older agents) carries the changed
	// networks whole and those removed.
	Update
	// Delta carries what changed: networks added whole, networks removed,
	// patches to the others' remote ports and headers, the pod-wide part.
	Delta
)

// Event is what a pod's watcher gets for a span of revisions.
type Event struct {
	Type     EventType
	Revision int64
	// State is set on snapshots.
	State *PodState
	// Networks are, on updates, the changed networks' full states; on
	// deltas, the networks that entered the pod's state. By id.
	Networks []NetworkState
	// Removed are networks no longer in the pod's state, sorted.
	Removed []string
	// Changes patch networks the pod keeps (deltas), by id.
	Changes []NetworkDelta
	// Pod replaces the pod-wide part of the state (deltas), when set.
	Pod *PodWide
}

// Empty reports whether an update or delta tells a watcher nothing.
func (e Event) Empty() bool {
	return e.Type != Snapshot && len(e.Networks) == 0 && len(e.Removed) == 0 && len(e.Changes) == 0 && e.Pod == nil
}

// SnapshotOf is the snapshot event of st.
func SnapshotOf(st PodState) Event {
	return Event{Type: Snapshot, Revision: st.Revision, State: &st}
}

// DeltaOf is the delta event of d at revision rev.
func DeltaOf(rev int64, d PodDelta) Event {
	return Event{Type: Delta, Revision: rev, Networks: d.Added, Removed: d.Removed, Changes: d.Changed, Pod: d.Pod}
}

// Patch applies a delta event to st in place and sets its revision; it is
// what a watcher does with one (the agent does the same on wire types).
// Slices of st are replaced, never written through, so a copy of st taken
// before stays valid.
func Patch(st *PodState, ev Event) {
	nets := slices.Clone(st.Networks)
	nets = slices.DeleteFunc(nets, func(n NetworkState) bool {
		return slices.Contains(ev.Removed, n.NetworkID) || slices.ContainsFunc(ev.Networks, func(a NetworkState) bool { return a.NetworkID == n.NetworkID })
	})
	nets = append(nets, ev.Networks...)
	for _, c := range ev.Changes {
		i := slices.IndexFunc(nets, func(n NetworkState) bool { return n.NetworkID == c.NetworkID })
		if i < 0 {
			continue
		}
		nets[i] = patchNetwork(nets[i], c)
	}
	slices.SortFunc(nets, func(a, b NetworkState) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	st.Networks = nets
	if ev.Pod != nil {
		st.DVRBaseMACs = maps.Clone(ev.Pod.DVRBaseMACs)
		st.Gateways = slices.Clone(ev.Pod.Gateways)
	}
	st.Revision = ev.Revision
}

func patchNetwork(n NetworkState, c NetworkDelta) NetworkState {
	ports := n.RemotePorts
	if c.Header != nil {
		n = *c.Header
	}
	ports = slices.DeleteFunc(slices.Clone(ports), func(p RemotePort) bool {
		return slices.Contains(c.RemovedMACs, p.MAC) || slices.ContainsFunc(c.Upserted, func(u RemotePort) bool { return u.MAC == p.MAC })
	})
	ports = append(ports, c.Upserted...)
	sortPorts(ports)
	n.RemotePorts = ports
	return n
}
