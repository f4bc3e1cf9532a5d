package brain

import (
	"context"
	"fmt"
	"strings"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// typeDriver is what differs between network types: how the network's id is
// allocated at create, and what segment a pod gets when the network reaches it.
type typeDriver interface {
	// allocate sets n.SegmentationID (and n.PhysicalNetwork) inside tx.
	allocate(ctx context.Context, tx *store.Tx, n *model.Network, req NetworkCreate) error
	// segment is the pod's segment when the first port is bound there.
	segment(n model.Network, podID string) model.Segment
	// multiPod is false for networks that must stay in one pod.
	multiPod() bool
}

func (s *Service) driver(typ string) (typeDriver, bool) {
	switch typ {
	case model.TypeLocal:
		return localDriver{}, true
	case model.TypeSharedVLAN:
		return vlanDriver{ranges: s.cfg.VLANRanges}, true
	case model.TypeSharedVXLAN:
		return vxlanDriver{ranges: s.cfg.VNIRanges, mixed: false}, true
	case model.TypeMixedVLANVXLAN:
		return vxlanDriver{ranges: s.cfg.VNIRanges, mixed: true}, true
	}
	return nil, false
}

// segmentPhysicalNetwork is how a bottom physical network is stored: physnet#pod.
func segmentPhysicalNetwork(physnet, podID string) string {
	if physnet == "" {
		return ""
	}
	return physnet + "#" + podID
}

type localDriver struct{}

func (localDriver) allocate(context.Context, *store.Tx, *model.Network, NetworkCreate) error {
	return nil
}

func (localDriver) segment(n model.Network, podID string) model.Segment {
	return model.Segment{NetworkID: n.ID, PodID: podID, NetworkType: model.SegmentLocal}
}

func (localDriver) multiPod() bool { return false }

type vlanDriver struct{ ranges []VLANRange }

func vlanPool(physnet string) string { return "vlan:" + physnet }

func (d vlanDriver) allocate(ctx context.Context, tx *store.Tx, n *model.Network, req NetworkCreate) error {
	if req.SegmentationID != 0 {
		if req.PhysicalNetwork == "" {
			return invalid("physical_network", "is required with a requested segmentation_id on a shared_vlan network")
		}
		if req.SegmentationID < MinVLAN || req.SegmentationID > MaxVLAN {
			return invalid("segmentation_id", "VLAN id %d is outside %d-%d", req.SegmentationID, MinVLAN, MaxVLAN)
		}
		if err := checkRequestedVLAN(d.ranges, req.PhysicalNetwork, req.SegmentationID, segmentsOutOfRangeAllowed(ctx)); err != nil {
			return err
		}
		if err := reserve(ctx, tx, vlanPool(req.PhysicalNetwork), req.SegmentationID, n.ID); err != nil {
			return err
		}
		n.SegmentationID, n.PhysicalNetwork = req.SegmentationID, req.PhysicalNetwork
		return nil
	}
	var tried []string
	for _, r := range d.ranges {
		if req.PhysicalNetwork != "" && r.PhysicalNetwork != req.PhysicalNetwork {
			continue
		}
		id, err := tx.Allocate(ctx, vlanPool(r.PhysicalNetwork), r.Min, r.Max, n.ID)
		if err != nil {
			return err
		}
		if id != 0 {
			n.SegmentationID, n.PhysicalNetwork = id, r.PhysicalNetwork
			return nil
		}
		tried = append(tried, fmt.Sprintf("%s:%d:%d", r.PhysicalNetwork, r.Min, r.Max))
	}
	if len(tried) == 0 {
		if req.PhysicalNetwork != "" {
			return invalid("physical_network", "no VLAN range is configured for physical network %s", echo(req.PhysicalNetwork))
		}
		return conflict("type", "no VLAN ranges are configured for shared_vlan networks")
	}
	return conflict("segmentation_id", "no free VLAN id left in %s", strings.Join(tried, ", "))
}

func (vlanDriver) segment(n model.Network, podID string) model.Segment {
	return model.Segment{NetworkID: n.ID, PodID: podID, NetworkType: model.SegmentVLAN,
		SegmentationID: n.SegmentationID, PhysicalNetwork: segmentPhysicalNetwork(n.PhysicalNetwork, podID)}
}

func (vlanDriver) multiPod() bool { return true }

type vxlanDriver struct {
	ranges []VNIRange
	mixed  bool
}

const vniPool = "vni"

func (d vxlanDriver) allocate(ctx context.Context, tx *store.Tx, n *model.Network, req NetworkCreate) error {
	if req.PhysicalNetwork != "" {
		return invalid("physical_network", "is not used by %s networks", n.Type)
	}
	if req.SegmentationID != 0 {
		if req.SegmentationID < MinVNI || req.SegmentationID > MaxVNI {
			return invalid("segmentation_id", "VNI %d is outside %d-%d", req.SegmentationID, MinVNI, MaxVNI)
		}
		if err := checkRequestedVNI(d.ranges, req.SegmentationID, segmentsOutOfRangeAllowed(ctx)); err != nil {
			return err
		}
		if err := reserve(ctx, tx, vniPool, req.SegmentationID, n.ID); err != nil {
			return err
		}
		n.SegmentationID = req.SegmentationID
		return nil
	}
	var tried []string
	for _, r := range d.ranges {
		id, err := tx.Allocate(ctx, vniPool, r.Min, r.Max, n.ID)
		if err != nil {
			return err
		}
		if id != 0 {
			n.SegmentationID = id
			return nil
		}
		tried = append(tried, fmt.Sprintf("%d:%d", r.Min, r.Max))
	}
	if len(tried) == 0 {
		return conflict("type", "no VNI ranges are configured for %s networks", n.Type)
	}
	return conflict("segmentation_id", "no free VNI left in %s", strings.Join(tried, ", "))
}

func (d vxlanDriver) segment(n model.Network, podID string) model.Segment {
	if d.mixed {
		// The pod chooses its bottom segment and reports it back.
		return model.Segment{NetworkID: n.ID, PodID: podID}
	}
	return model.Segment{NetworkID: n.ID, PodID: podID, NetworkType: model.SegmentVXLAN, SegmentationID: n.SegmentationID}
}

func (vxlanDriver) multiPod() bool { return true }

func reserve(ctx context.Context, tx *store.Tx, pool string, id int, networkID string) error {
	// Writers are serialized, so checking first is race-free, and it keeps
	// PostgreSQL's transaction usable (a failed INSERT would abort it).
	owner, err := tx.AllocationOwner(ctx, pool, id)
	if err != nil {
		return err
	}
	if owner != "" {
		what := fmt.Sprintf("VNI %d", id)
		if physnet, ok := strings.CutPrefix(pool, "vlan:"); ok {
			what = fmt.Sprintf("VLAN %d on physical network %s", id, physnet)
		}
		if n, err := tx.GetNetwork(ctx, owner); err == nil {
			owner = fmt.Sprintf("%q (%s)", n.Name, owner)
		}
		return conflict("segmentation_id", "%s is already used by network %s", what, owner)
	}
	return tx.Reserve(ctx, pool, id, networkID)
}
