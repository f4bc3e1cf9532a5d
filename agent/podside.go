package agent

import (
	"fmt"
	"net/netip"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/vtep"
)

// podSide is the pod side of network n when this gateway serves it (it
// holds its pod's VTEP and n's local segment is the pod's VXLAN): the
// pod's compute VTEPs and local ports the brain read back from the pod's
// Neutron. Before the brain knows them the device is still made: the
// pod's hosts already send to the pod VTEP, and it learns.
func podSide(in PlanInput, n api.NetworkState, p *Plan) *vtep.PodSide {
	seg := n.LocalSegment
	if !in.PodSide || seg.NetworkType != api.SegmentVXLAN || seg.SegmentationID <= 0 {
		return nil
	}
	ps := &vtep.PodSide{Segment: uint32(seg.SegmentationID)}
	if n.PodSide == nil {
		return ps
	}
	for _, v := range n.PodSide.VTEPs {
		a, err := netip.ParseAddr(v)
		if err != nil {
			p.Skipped = append(p.Skipped, fmt.Sprintf("network %s: pod-side vtep %q: %v", n.NetworkID, v, err))
			continue
		}
		ps.Flood = append(ps.Flood, a)
	}
	for _, pp := range n.PodSide.Ports {
		mac, err := macaddr.Parse(pp.MAC)
		a, aerr := netip.ParseAddr(pp.VTEP)
		if err != nil || aerr != nil {
			p.Skipped = append(p.Skipped, fmt.Sprintf("network %s: pod-side port %s -> %s: invalid", n.NetworkID, pp.MAC, pp.VTEP))
			continue
		}
		ps.MACs = append(ps.MACs, vtep.MACEntry{MAC: mac, VTEP: a})
	}
	return ps
}
