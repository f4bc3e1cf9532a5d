package brain

import (
	"context"

	"github.com/l2span/l2span/brain/state"
	"github.com/l2span/l2span/brain/store"
)

// PodState computes a pod's full desired state at one revision.
func (s *Service) PodState(ctx context.Context, podID string) (state.PodState, error) {
	var st state.PodState
	err := s.read(ctx, func(tx *store.Tx) error {
		var err error
		st, err = podState(ctx, tx, podID)
		return err
	})
	return st, err
}

func podState(ctx context.Context, tx *store.Tx, podID string) (state.PodState, error) {
	if _, err := tx.GetPod(ctx, podID); err != nil {
		return state.PodState{PodID: podID}, err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return state.PodState{PodID: podID}, err
	}
	nets, err := networkRows(ctx, tx, podID, nil)
	if err != nil {
		return state.PodState{PodID: podID}, err
	}
	pods, err := tx.PodsWithDVRBaseMAC(ctx)
	if err != nil {
		return state.PodState{PodID: podID}, err
	}
	gws, err := tx.GatewayClaims(ctx)
	if err != nil {
		return state.PodState{PodID: podID}, err
	}
	st := state.Pod(podID, rev, nets, pods)
	st.Gateways = state.Gateways(gws)
	return st, nil
}

// networkRows reads what the projection needs of the overlay networks that
// have a segment in podID (only those among only, when only is not nil).
func networkRows(ctx context.Context, tx *store.Tx, podID string, only []string) ([]state.NetworkRows, error) {
	nets, err := tx.NetworksInPod(ctx, podID, state.OverlayTypes, only)
	if err != nil || len(nets) == 0 {
		return nil, err
	}
	ids := make([]string, len(nets))
	for i, n := range nets {
		ids[i] = n.ID
	}
	segs, err := tx.SegmentsOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	ports, err := tx.PortsOf(ctx, ids, podID)
	if err != nil {
		return nil, err
	}
	subnets, err := tx.SubnetsOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	return state.Group(nets, segs, ports, subnets), nil
}

// PodDelta returns what changed for podID after since: an update event, a
// snapshot event when the change log no longer reaches since or a pod-wide
// change happened, or an update with no networks when nothing changed.
func (s *Service) PodDelta(ctx context.Context, podID string, since int64) (state.Event, error) {
	var ev state.Event
	err := s.read(ctx, func(tx *store.Tx) error {
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		ids, expired, err := tx.Changes(ctx, since, rev)
		if err != nil {
			return err
		}
		changes := state.Changes{Since: since, Revision: rev, NetworkIDs: ids, Expired: expired}
		if changes.NeedsSnapshot() {
			st, err := podState(ctx, tx, podID)
			if err != nil {
				return err
			}
			ev = state.SnapshotOf(st)
			return nil
		}
		var rows []state.NetworkRows
		if len(ids) > 0 {
			if rows, err = networkRows(ctx, tx, podID, ids); err != nil {
				return err
			}
		}
		ev = state.Delta(podID, changes, rows)
		return nil
	})
	return ev, err
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
