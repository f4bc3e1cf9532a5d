package bpf

import (
	"fmt"
)

// Action names label the per-action packet counters (the agent exports them
// as l2span_agent_bpf_packets_total{action="..."}). Their order is the index
// of each counter in the l2s_counters map (enum action in l2span.c).
const (
	// ActionPassedToOverlay counts frames from the pod that go on to the
	// overlay untouched.
	ActionPassedToOverlay = "passed_to_overlay"
	// ActionPassedToPod counts frames from the overlay delivered to the pod
	// untouched (source MAC outside every remote DVR prefix).
	ActionPassedToPod = "passed_to_pod"
	// ActionRewritten counts frames from the overlay whose remote DVR source
	// MAC was rewritten to the gateway's own DVR MAC.
	ActionRewritten = "rewritten"
	// ActionRewriteFailed counts frames that matched a DVR prefix but could
	// not be rewritten (header not writable); they pass unchanged.
	ActionRewriteFailed = "rewrite_failed"
	// ActionDroppedDHCP counts DHCPv4 frames (UDP to port 67 or 68) kept in the pod.
	ActionDroppedDHCP = "dropped_dhcp"
	// ActionDroppedDHCPv6 counts DHCPv6 frames (UDP to port 546 or 547) kept in the pod.
	ActionDroppedDHCPv6 = "dropped_dhcpv6"
	// ActionDroppedARP counts ARP requests and replies to or from a gateway IP.
	ActionDroppedARP = "dropped_arp"
	// ActionDroppedND counts IPv6 neighbor solicitations and advertisements
	// for (or from) a gateway address.
	ActionDroppedND = "dropped_nd"
	// ActionDroppedRA counts IPv6 router advertisements.
	ActionDroppedRA = "dropped_ra"
	// ActionFenced counts frames dropped because the agent's fencing lease
	// expired while armed (see lease.go).
	ActionFenced = "fenced"
)

var actions = [...]string{
	ActionPassedToOverlay,
	ActionPassedToPod,
	ActionRewritten,
	ActionRewriteFailed,
	ActionDroppedDHCP,
	ActionDroppedDHCPv6,
	ActionDroppedARP,
	ActionDroppedND,
	ActionDroppedRA,
	ActionFenced,
}

// Actions lists every counter name, in a stable order, so that an exporter
// can create all label values up front.
func Actions() []string { return append([]string(nil), actions[:]...) }

// Counters returns the packets counted per action since the maps were
// created, summed over all CPUs and all attached interfaces. The counters
// live in the pinned map, so they keep counting across agent restarts.
func (m *Manager) Counters() (map[string]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return readCounters(m.objs.L2sCounters)
}

type lookuper interface {
	Lookup(key, valueOut any) error
}

func readCounters(cm lookuper) (map[string]uint64, error) {
	out := make(map[string]uint64, len(actions))
	var perCPU []uint64
	for i, name := range actions {
		if err := cm.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
