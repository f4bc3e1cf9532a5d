package brain

import (
	"context"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/state"
	"github.com/l2span/l2span/brain/store"
)

// LoadModel reads every overlay network, its segments, subnets and ports,
// and the pods, at one revision, into a model.
func (s *Service) LoadModel(ctx context.Context) (*state.Model, error) {
	var m *state.Model
	err := s.read(ctx, func(tx *store.Tx) error {
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		pods, err := tx.AllPods(ctx)
		if err != nil {
			return err
		}
		gws, err := tx.GatewayClaims(ctx)
		if err != nil {
			return err
		}
		var nets []model.Network
		var segs []model.Segment
		var subnets []model.Subnet
		var ports []model.Port
		// Ports stream into the model once its networks are there; the
		// rest is small.
		addPort := func(p model.Port) {
			if m == nil {
				m = state.NewModel(rev, state.Group(nets, segs, nil, subnets), pods, gws)
			}
			m.AddPort(p)
		}
		err = tx.EachOfTypes(ctx, state.OverlayTypes,
			func(n model.Network) { nets = append(nets, n) },
			func(g model.Segment) { segs = append(segs, g) },
			func(sn model.Subnet) { subnets = append(subnets, sn) },
			addPort)
		if err != nil {
			return err
		}
		if m == nil {
			m = state.NewModel(rev, state.Group(nets, segs, ports, subnets), pods, gws)
		}
		return nil
	})
	return m, err
}

// ReadBatch reads what changed after since: the rows each change touched
// as they are now, at the latest revision. expired is true when the change
// log no longer reaches since (the caller loads the model again).
func (s *Service) ReadBatch(ctx context.Context, since int64) (b state.Batch, expired bool, err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		b = state.Batch{Revision: rev, Networks: map[string]*state.NetworkRows{}, Ports: map[string]*model.Port{}}
		if rev <= since {
			return nil
		}
		cs, exp, err := tx.Changes(ctx, since, rev)
		if err != nil || exp {
			expired = exp
			return err
		}
		if err := readNetworkHeaders(ctx, tx, cs.Networks, b.Networks); err != nil {
			return err
		}
		for _, id := range cs.Ports {
			b.Ports[id] = nil
		}
		ports, err := tx.PortsByID(ctx, cs.Ports)
		if err != nil {
			return err
		}
		for i := range ports {
			b.Ports[ports[i].ID] = &ports[i]
		}
		if cs.Pods {
			// A pod-wide change: a pod's row or a gateway's claim. Both
			// are few rows; the model diffs them.
			if b.Pods, err = tx.AllPods(ctx); err != nil {
				return err
			}
			if b.Pods == nil {
				b.Pods = []model.Pod{}
			}
			if b.Gateways, err = tx.GatewayClaims(ctx); err != nil {
				return err
			}
			if b.Gateways == nil {
				b.Gateways = []model.Gateway{}
			}
		}
		return nil
	})
	return b, expired, err
}

// readNetworkHeaders fills out with each of ids' rows without ports (nil
// for a network that is gone).
func readNetworkHeaders(ctx context.Context, tx *store.Tx, ids []string, out map[string]*state.NetworkRows) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		out[id] = nil
	}
	nets, err := tx.NetworksByID(ctx, ids)
	if err != nil {
		return err
	}
	live := make([]string, len(nets))
	for i, n := range nets {
		live[i] = n.ID
	}
	segs, err := tx.SegmentsOf(ctx, live)
	if err != nil {
		return err
	}
	subnets, err := tx.SubnetsOf(ctx, live)
	if err != nil {
		return err
	}
	for _, rows := range state.Group(nets, segs, nil, subnets) {
		out[rows.Network.ID] = &rows
	}
	return nil
}

// Revision returns the latest committed revision.
func (s *Service) Revision(ctx context.Context) (rev int64, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { rev, err = tx.Revision(ctx); return err })
	return rev, err
}

// Compact forgets changes older than keep revisions back.
func (s *Service) Compact(ctx context.Context, keep int64) error {
	rev, err := s.Revision(ctx)
	if err != nil || rev <= keep {
		return err
	}
	_, err = s.store.Write(ctx, func(tx *store.Tx) error { return tx.Compact(ctx, rev-keep) })
	return err
}
