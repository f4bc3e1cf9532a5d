// Package state is the brain's projection: pure functions from model rows
// to what each pod's gateways must program (its desired state) and to the
// deltas a watcher gets. Nothing here reads a database or speaks the wire;
// the per-network function is the unit an incremental projection caches.
package state

import (
	"cmp"
	"slices"

	"github.com/l2span/l2span/brain/model"
)

// OverlayTypes are the network types whose pods are joined by the gateways:
// only they appear in a pod's state.
var OverlayTypes = []string{model.TypeSharedVXLAN, model.TypeMixedVLANVXLAN}

// PodState is what a pod's gateways must program at one revision.
type PodState struct {
	PodID    string
	Revision int64
	// Networks spanned into this pod and at least one other pod, by id.
	Networks []NetworkState
	// DVRBaseMACs maps every other pod with a dvr_base_mac to its prefix.
	DVRBaseMACs map[string]string
	// Gateways are every pod's registered gateways, by id: the only gossip
	// members whose claims the pod's agents honour.
	Gateways []Gateway
}

// Gateway is what an agent checks a gossip member's claim against: a
// gateway id registered with the brain for one pod with one VTEP.
type Gateway struct {
	ID, PodID, VTEP string
}

// NetworkState is one spanned network as seen from one pod.
type NetworkState struct {
	NetworkID, Name, Type string
	// VNI is the inter-pod overlay VNI.
	VNI          uint32
	LocalSegment model.Segment
	// RemotePods are the other pods with a segment, sorted.
	RemotePods []string
	// RemotePorts are the network's ports bound in other pods, by MAC.
	RemotePorts []RemotePort
	// Subnets by CIDR; nil when the network has none.
	Subnets []SubnetGateway
	// PodSide is the pod's own compute VTEPs and local ports on its
	// segment (LocalSegment.PodSide is moved here and left empty).
	PodSide model.PodSide
}

// RemotePort is a port of the network bound in another pod.
type RemotePort struct {
	MAC   string
	IPs   []string // nil when the port has none
	PodID string
	Seq   int64
}

// SubnetGateway is a subnet's CIDR and its (anycast) gateway IP.
type SubnetGateway struct {
	CIDR, GatewayIP string
}

// NetworkRows is what the store holds about one network that a pod's
// projection reads.
type NetworkRows struct {
	Network model.Network
	// Segments are every pod's segment of the network.
	Segments []model.Segment
	// Ports are the network's ports; those bound in the pod projected for
	// are skipped, so a reader may leave them out.
	Ports   []model.Port
	Subnets []model.Subnet
}

// Network projects one network for pod. ok is false when the network is
// not in pod's state: not an overlay type, or not spanned into pod and at
// least one other pod.
func Network(pod string, in NetworkRows) (st NetworkState, ok bool) {
	st, ok = header(pod, in.Network, in.Segments, in.Subnets)
	if !ok {
		return st, false
	}
	for _, p := range in.Ports {
		if p.PodID != pod {
			st.RemotePorts = append(st.RemotePorts, remotePort(p.MAC, p.PodID, p.MobilitySeq, p.IPs))
		}
	}
	sortPorts(st.RemotePorts)
	return st, true
}

// header is the network's state for pod without its remote ports (an empty
// list); ok is false when the network is not in pod's state.
func header(pod string, n model.Network, segs []model.Segment, subnets []model.Subnet) (st NetworkState, ok bool) {
	if !slices.Contains(OverlayTypes, n.Type) {
		return NetworkState{}, false
	}
	local := slices.IndexFunc(segs, func(g model.Segment) bool { return g.PodID == pod })
	if local < 0 || len(segs) < 2 {
		return NetworkState{}, false
	}
	st = NetworkState{NetworkID: n.ID, Name: n.Name, Type: n.Type, VNI: uint32(n.SegmentationID),
		LocalSegment: segs[local], RemotePods: []string{}, RemotePorts: []RemotePort{}, PodSide: segs[local].PodSide}
	st.LocalSegment.PodSide = model.PodSide{}
	for _, g := range segs {
		if g.PodID != pod {
			st.RemotePods = append(st.RemotePods, g.PodID)
		}
	}
	slices.Sort(st.RemotePods)
	for _, s := range subnets {
		st.Subnets = append(st.Subnets, SubnetGateway{CIDR: s.CIDR, GatewayIP: s.GatewayIP})
	}
	slices.SortFunc(st.Subnets, func(a, b SubnetGateway) int { return cmp.Compare(a.CIDR, b.CIDR) })
	return st, true
}

func remotePort(mac, pod string, seq int64, ips []string) RemotePort {
	rp := RemotePort{MAC: mac, PodID: pod, Seq: seq}
	if len(ips) > 0 {
		rp.IPs = ips
	}
	return rp
}

func sortPorts(ps []RemotePort) {
	slices.SortFunc(ps, func(a, b RemotePort) int { return cmp.Compare(a.MAC, b.MAC) })
}

// Networks projects each network for pod, keeping those in pod's state,
// ordered by network id.
func Networks(pod string, in []NetworkRows) []NetworkState {
	out := []NetworkState{}
	for _, rows := range in {
		if st, ok := Network(pod, rows); ok {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b NetworkState) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	return out
}

// DVRBaseMACs maps every pod other than pod that has a dvr_base_mac to it.
func DVRBaseMACs(pod string, pods []model.Pod) map[string]string {
	out := map[string]string{}
	for _, p := range pods {
		if p.ID != pod && p.DVRBaseMAC != "" {
			out[p.ID] = p.DVRBaseMAC
		}
	}
	return out
}

// Gateways projects the registered gateways of every pod, ordered by id and
// never nil. Every pod gets all of them: a pod's own gateways decide its
// forwarder election, and gateways are few, so a per-pod filter by spanned
// networks would save little and make every span change a gateway change.
func Gateways(gws []model.Gateway) []Gateway {
	out := make([]Gateway, 0, len(gws))
	for _, g := range gws {
		out = append(out, Gateway{ID: g.ID, PodID: g.PodID, VTEP: g.VTEP})
	}
	slices.SortFunc(out, func(a, b Gateway) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Pod is pod's full desired state at revision rev from the rows of its
// networks, every pod and every registered gateway.
func Pod(pod string, rev int64, nets []NetworkRows, pods []model.Pod, gws []model.Gateway) PodState {
	return PodState{PodID: pod, Revision: rev, Networks: Networks(pod, nets), DVRBaseMACs: DVRBaseMACs(pod, pods),
		Gateways: Gateways(gws)}
}

// Group gathers flat rows, as a store reads them in bulk, by network, in
// the order of nets. Rows of a network not in nets are dropped.
func Group(nets []model.Network, segs []model.Segment, ports []model.Port, subnets []model.Subnet) []NetworkRows {
	out := make([]NetworkRows, len(nets))
	index := make(map[string]int, len(nets))
	for i, n := range nets {
		out[i].Network = n
		index[n.ID] = i
	}
	for _, g := range segs {
		if i, ok := index[g.NetworkID]; ok {
			out[i].Segments = append(out[i].Segments, g)
		}
	}
	for _, p := range ports {
		if i, ok := index[p.NetworkID]; ok {
			out[i].Ports = append(out[i].Ports, p)
		}
	}
	for _, s := range subnets {
		if i, ok := index[s.NetworkID]; ok {
			out[i].Subnets = append(out[i].Subnets, s)
		}
	}
	return out
}
