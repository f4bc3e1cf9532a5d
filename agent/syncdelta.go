package agent

import (
	"cmp"
	"maps"
	"slices"

	"github.com/l2span/l2span/brain/api"
)

// The cached state is shared with readers (State returns it by value):
// applying an event replaces slices, never writes through them.

// applyUpdate applies a full-network update: the networks in it replace
// those with the same id, those removed go.
func applyUpdate(st api.PodState, ev api.WatchEvent) api.PodState {
	st.Networks = replaceNetworks(st.Networks, ev.Networks, ev.Removed)
	st.Revision = ev.Revision
	return st
}

// applyDelta applies a delta: networks added whole, networks removed,
// patches to the others, the pod-wide part. A patch costs the size of the
// network it touches (one copy of its port list), not of the pod's state.
func applyDelta(st api.PodState, ev api.WatchEvent) api.PodState {
	nets := replaceNetworks(st.Networks, ev.Networks, ev.Removed)
	for _, c := range ev.Changes {
		i, ok := slices.BinarySearchFunc(nets, c.NetworkID, func(n api.NetworkState, id string) int { return cmp.Compare(n.NetworkID, id) })
		if !ok {
			continue // not ours: a delta never patches a network it did not send
		}
		nets[i] = patchNetwork(nets[i], c)
	}
	st.Networks = nets
	// Without a pod part the pod-wide state stays as it is: above all the
	// registered gateways, without which nothing is planned.
	if ev.Pod != nil {
		st.DVRBaseMACs = maps.Clone(ev.Pod.DVRBaseMACs)
		st.Gateways = slices.Clone(ev.Pod.Gateways)
	}
	st.Revision = ev.Revision
	return st
}

func replaceNetworks(have, whole []api.NetworkState, removed []string) []api.NetworkState {
	if len(whole) == 0 && len(removed) == 0 {
		return slices.Clone(have)
	}
	gone := map[string]bool{}
	for _, id := range removed {
		gone[id] = true
	}
	for _, n := range whole {
		gone[n.NetworkID] = true
	}
	out := make([]api.NetworkState, 0, len(have)+len(whole))
	for _, n := range have {
		if !gone[n.NetworkID] {
			out = append(out, n)
		}
	}
	out = append(out, whole...)
	slices.SortFunc(out, func(a, b api.NetworkState) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	return out
}

// patchNetwork applies one network's delta: header, then removals, then
// upserts, keeping the remote ports sorted by MAC.
func patchNetwork(n api.NetworkState, c api.NetworkDelta) api.NetworkState {
	if h := c.Header; h != nil {
		n.Name, n.Type, n.VNI, n.LocalSegment, n.RemotePods, n.Subnets = h.Name, h.Type, h.VNI, h.LocalSegment, h.RemotePods, h.Subnets
		n.PodSide = h.PodSide
	}
	if len(c.RemovedMACs) == 0 && len(c.Upserted) == 0 {
		return n
	}
	drop := make(map[string]bool, len(c.RemovedMACs)+len(c.Upserted))
	for _, m := range c.RemovedMACs {
		drop[m] = true
	}
	for _, p := range c.Upserted {
		drop[p.MAC] = true
	}
	ups := slices.SortedFunc(slices.Values(c.Upserted), func(a, b api.RemotePort) int { return cmp.Compare(a.MAC, b.MAC) })
	out := make([]api.RemotePort, 0, len(n.RemotePorts)+len(ups))
	// Merge the kept ports with the upserts, both sorted by MAC.
	j := 0
	for _, p := range n.RemotePorts {
		if drop[p.MAC] {
			continue
		}
		for j < len(ups) && ups[j].MAC < p.MAC {
			out = append(out, ups[j])
			j++
		}
		out = append(out, p)
	}
	out = append(out, ups[j:]...)
	n.RemotePorts = out
	return n
}
