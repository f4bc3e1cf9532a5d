package agent

import (
	"maps"
	"time"
)

// handover decides, per network, whether this gateway forwards it, so that
// two gateways of one pod never both bridge a network for longer than the
// hold time:
//
//   - a gateway that stops being the designated forwarder (the hashing
//     moved the network elsewhere) releases it at once;
//   - a gateway that becomes the DF while the previous one is still alive
//     (a rebalance: a gateway joined or came back) waits `hold` before it
//     takes over, by which time the old one has seen the same membership
//     and released: a short gap instead of an overlap;
//   - a gateway that becomes the DF because the previous one is gone (a
//     failure) takes over at once.
//
// Gossip spreads a membership change to every member within a few gossip
// intervals, well inside one probe interval, which is the default hold.
type handover struct {
	hold time.Duration
	// owner is who this gateway believes forwards each network in its pod.
	owner map[uint32]string
	// since is when this gateway first wanted a network it may not take yet.
	since map[uint32]time.Time
}

func newHandover(hold time.Duration) *handover {
	return &handover{hold: hold, owner: map[uint32]string{}, since: map[uint32]time.Time{}}
}

// clone returns a copy that decides on without changing h.
func (h *handover) clone() *handover {
	return &handover{hold: h.hold, owner: maps.Clone(h.owner), since: maps.Clone(h.since)}
}

// decide returns whether self forwards vni now, given the hashing's DF
// (df, "" when the pod has no eligible gateway) and which gateways are
// live; retry is when to ask again if the answer is "not yet".
func (h *handover) decide(now time.Time, vni uint32, df, self string, live func(string) bool) (forward bool, retry time.Time) {
	if df != self {
		delete(h.since, vni)
		if df != "" {
			h.owner[vni] = df
		}
		return false, time.Time{}
	}
	prev, known := h.owner[vni]
	if !known || prev == self || !live(prev) {
		// First decision since start (keep forwarding what the kernel
		// already holds), already ours, or taking over from a dead DF.
		delete(h.since, vni)
		h.owner[vni] = self
		return true, time.Time{}
	}
	first, waiting := h.since[vni]
	if !waiting {
		first = now
		h.since[vni] = now
	}
	if now.Sub(first) >= h.hold {
		delete(h.since, vni)
		h.owner[vni] = self
		return true, time.Time{}
	}
	return false, first.Add(h.hold)
}

// forget drops networks no longer in the desired state.
func (h *handover) forget(keep map[uint32]bool) {
	for vni := range h.owner {
		if !keep[vni] {
			delete(h.owner, vni)
			delete(h.since, vni)
		}
	}
}
