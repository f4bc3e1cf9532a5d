package brain

import (
	"context"
	"slices"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/store"
)

// PodState computes a pod's full desired state at one revision.
func (s *Service) PodState(ctx context.Context, podID string) (api.PodState, error) {
	var st api.PodState
	err := s.read(ctx, func(tx *store.Tx) error {
		var err error
		st, err = podState(ctx, tx, podID)
		return err
	})
	return st, err
}

func podState(ctx context.Context, tx *store.Tx, podID string) (api.PodState, error) {
	st := api.PodState{PodID: podID}
	if _, err := tx.GetPod(ctx, podID); err != nil {
		return st, err
	}
	var err error
	if st.Revision, err = tx.Revision(ctx); err != nil {
		return st, err
	}
	if st.Networks, err = tx.NetworkStates(ctx, podID, nil); err != nil {
		return st, err
	}
	if st.Networks == nil {
		st.Networks = []api.NetworkState{}
	}
	st.DVRBaseMACs, err = tx.DVRBaseMACs(ctx, podID)
	return st, err
}

// PodDelta returns what changed for podID after since: an update event, a
// snapshot event when the change log no longer reaches since or a pod-wide
// change happened, or an event with no networks when nothing changed.
func (s *Service) PodDelta(ctx context.Context, podID string, since int64) (api.WatchEvent, error) {
	var ev api.WatchEvent
	err := s.read(ctx, func(tx *store.Tx) error {
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		ids, expired, err := tx.Changes(ctx, since, rev)
		if err != nil {
			return err
		}
		if expired || since > rev || slices.Contains(ids, store.AllNetworks) {
			st, err := podState(ctx, tx, podID)
			if err != nil {
				return err
			}
			ev = api.WatchEvent{Type: api.EventSnapshot, Revision: st.Revision, State: &st}
			return nil
		}
		ev = api.WatchEvent{Type: api.EventUpdate, Revision: rev}
		if len(ids) == 0 {
			return nil
		}
		states, err := tx.NetworkStates(ctx, podID, ids)
		if err != nil {
			return err
		}
		ev.Networks = states
		for _, id := range ids {
			if !slices.ContainsFunc(states, func(n api.NetworkState) bool { return n.NetworkID == id }) {
				ev.Removed = append(ev.Removed, id)
			}
		}
		slices.Sort(ev.Removed)
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
