package brain

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// CreateNetwork creates a top network and allocates its segmentation id.
func (s *Service) CreateNetwork(ctx context.Context, req NetworkCreate) (model.Network, error) {
	n := model.Network{ID: uuid.NewString(), Name: req.Name, Type: req.Type, External: req.External, GatewayPerPod: req.GatewayPerPod, ManagedBy: req.ManagedBy, CreatedAt: s.now()}
	if err := clientID(&n.ID, req.ID); err != nil {
		return n, err
	}
	if err := checkManagedBy(req.ManagedBy); err != nil {
		return n, err
	}
	if len(req.Name) > 255 {
		return n, invalid("name", "must be at most 255 characters")
	}
	drv, ok := s.driver(req.Type)
	if !ok {
		return n, invalid("type", "%q is not one of local, shared_vlan, shared_vxlan, mixed_vlan_vxlan", req.Type)
	}
	n.AZHints = slices.Compact(slices.Sorted(slices.Values(req.AZHints)))
	if n.AZHints == nil {
		n.AZHints = []string{}
	}
	if n.External && len(n.AZHints) != 1 {
		return n, invalid("az_hints", "an external network's az_hints must name exactly one pod id")
	}
	if n.GatewayPerPod && (n.External || !drv.multiPod()) {
		return n, invalid("gateway_per_pod", "a %s network lives in one pod; a gateway per pod needs a network that spans pods", map[bool]string{true: "external", false: n.Type}[n.External])
	}
	err := s.write(ctx, func(tx *store.Tx) error {
		for _, h := range n.AZHints {
			if n.External {
				if _, err := tx.GetPod(ctx, h); errors.Is(err, store.ErrNotFound) {
					return invalid("az_hints", "pod %q does not exist (an external network's az_hints names a pod id)", h)
				} else if err != nil {
					return err
				}
				continue
			}
			ok, err := tx.AZExists(ctx, h)
			if err != nil {
				return err
			}
			if !ok {
				return invalid("az_hints", "availability zone %q does not exist (no pod is in it)", h)
			}
		}
		if err := tx.InsertNetwork(ctx, n); err != nil {
			return idClash("network", n.ID, err)
		}
		if err := drv.allocate(ctx, tx, &n, req); err != nil {
			return err
		}
		if n.GatewayPerPod {
			if err := tx.SetGatewayPerPod(ctx, n.ID, true); err != nil {
				return err
			}
		}
		if n.SegmentationID != 0 {
			if err := tx.SetSegmentation(ctx, n.ID, n.SegmentationID, n.PhysicalNetwork); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return model.Network{}, err
	}
	n.Segments = []model.Segment{}
	return n, nil
}

// UpdateNetwork renames a network; az_hints cannot change after create.
func (s *Service) UpdateNetwork(ctx context.Context, id string, u NetworkUpdate) (model.Network, error) {
	var out model.Network
	if u.Name != nil && len(*u.Name) > 255 {
		return out, invalid("name", "must be at most 255 characters")
	}
	err := s.write(ctx, func(tx *store.Tx) error {
		n, err := tx.GetNetwork(ctx, id)
		if err != nil {
			return err
		}
		if u.External != nil && *u.External != n.External {
			if err := s.setExternal(ctx, tx, &n, *u.External, u.AZHints); err != nil {
				return err
			}
		} else if u.AZHints != nil {
			want := slices.Compact(slices.Sorted(slices.Values(*u.AZHints)))
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(want, n.AZHints) {
				return conflict("az_hints", "az_hints cannot change after a network is created (network %s has %v)", id, n.AZHints)
			}
		}
		if u.Name != nil && *u.Name != n.Name {
			if err := tx.RenameNetwork(ctx, id, *u.Name); err != nil {
				return err
			}
			n.Name = *u.Name
			tx.Changed(id)
		}
		n.Segments, err = tx.Segments(ctx, id)
		out = n
		return err
	})
	return out, err
}

// DeleteNetwork deletes a network without ports, with its subnets and segments.
func (s *Service) DeleteNetwork(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetNetwork(ctx, id); err != nil {
			return err
		}
		// Ports the brain reserved for itself (a pod's DHCP or gateway
		// port) go with the network; any other port blocks the delete.
		ports, err := tx.ListPorts(ctx, model.PortFilter{NetworkID: id}, model.Page{Limit: 100000})
		if err != nil {
			return err
		}
		n := 0
		for _, p := range ports.Items {
			if !IsReserved(p) {
				n++
			}
		}
		if n > 0 {
			return conflict("id", "network %s still has %d port(s); delete them first", id, n)
		}
		if err := s.bottomNetworkChanged(ctx, tx, id); err != nil {
			return err
		}
		for _, p := range ports.Items {
			if err := tx.DeletePort(ctx, p.ID); err != nil {
				return err
			}
			if err := tx.DeleteSegment(ctx, id, p.PodID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if err := tx.DeleteSubnetsOf(ctx, id); err != nil {
			return err
		}
		tx.Changed(id)
		return tx.DeleteNetwork(ctx, id)
	})
}

// GetNetwork returns a network with its segments.
func (s *Service) GetNetwork(ctx context.Context, id string) (n model.Network, err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		if n, err = tx.GetNetwork(ctx, id); err != nil {
			return err
		}
		n.Segments, err = tx.Segments(ctx, id)
		return err
	})
	return n, err
}

// ListNetworks lists networks with their segments.
func (s *Service) ListNetworks(ctx context.Context, f model.NetworkFilter, pg model.Page) (l model.List[model.Network], err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		if l, err = tx.ListNetworks(ctx, f, pg); err != nil {
			return err
		}
		ids := make([]string, len(l.Items))
		index := make(map[string]int, len(l.Items))
		for i, n := range l.Items {
			ids[i], index[n.ID] = n.ID, i
		}
		segs, err := tx.SegmentsOf(ctx, ids)
		if err != nil {
			return err
		}
		for _, g := range segs {
			l.Items[index[g.NetworkID]].Segments = append(l.Items[index[g.NetworkID]].Segments, g)
		}
		return nil
	})
	return l, err
}

// ListSegments returns a network's segments.
func (s *Service) ListSegments(ctx context.Context, networkID string) (segs []model.Segment, err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetNetwork(ctx, networkID); err != nil {
			return err
		}
		segs, err = tx.Segments(ctx, networkID)
		return err
	})
	return segs, err
}

// ReportSegment records the bottom segment a pod chose for a
// mixed_vlan_vxlan network.
func (s *Service) ReportSegment(ctx context.Context, networkID string, r SegmentReport) (model.Segment, error) {
	var out model.Segment
	if err := checkID("pod_id", r.PodID); err != nil {
		return out, err
	}
	switch r.NetworkType {
	case model.SegmentVLAN:
		if r.SegmentationID < MinVLAN || r.SegmentationID > MaxVLAN {
			return out, invalid("segmentation_id", "VLAN id %d is outside %d-%d", r.SegmentationID, MinVLAN, MaxVLAN)
		}
		if r.PhysicalNetwork == "" {
			return out, invalid("physical_network", "is required for a vlan segment")
		}
	case model.SegmentVXLAN:
		if r.SegmentationID < MinVNI || r.SegmentationID > MaxVNI {
			return out, invalid("segmentation_id", "VNI %d is outside %d-%d", r.SegmentationID, MinVNI, MaxVNI)
		}
	default:
		return out, invalid("network_type", "%q must be vlan or vxlan", r.NetworkType)
	}
	physnet := strings.SplitN(r.PhysicalNetwork, "#", 2)[0]
	err := s.write(ctx, func(tx *store.Tx) error {
		n, err := tx.GetNetwork(ctx, networkID)
		if err != nil {
			return err
		}
		if n.Type != model.TypeMixedVLANVXLAN {
			return conflict("network_type", "network %s is %s: only mixed_vlan_vxlan networks take reported segments", networkID, n.Type)
		}
		segs, err := tx.Segments(ctx, networkID)
		if err != nil {
			return err
		}
		idx := slices.IndexFunc(segs, func(g model.Segment) bool { return g.PodID == r.PodID })
		if idx < 0 {
			return conflict("pod_id", "network %s has not spread to pod %s (no port is bound there)", networkID, r.PodID)
		}
		out = segs[idx]
		out.NetworkType, out.SegmentationID = r.NetworkType, r.SegmentationID
		out.PhysicalNetwork = segmentPhysicalNetwork(physnet, r.PodID)
		tx.Changed(networkID)
		return tx.UpdateSegment(ctx, out)
	})
	return out, err
}
