package brain

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/internal/macaddr"
)

// SetPodSide records what the pod's Neutron says about the network's
// segment there (its compute VTEPs and local ports). It writes, and so
// makes a revision, only when that changed; changed says whether it did.
// A network with no segment in the pod is a conflict (the job raced a
// teardown: the next run sees it).
func (s *Service) SetPodSide(ctx context.Context, networkID, podID string, p model.PodSide) (changed bool, err error) {
	p, err = normalizePodSide(p)
	if err != nil {
		return false, err
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		segs, err := tx.Segments(ctx, networkID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(segs, func(g model.Segment) bool { return g.PodID == podID })
		if i < 0 {
			return conflict("pod_id", "network %s has no segment in pod %s", networkID, podID)
		}
		if reflect.DeepEqual(segs[i].PodSide, p) {
			return nil
		}
		changed = true
		return tx.UpdateSegmentPodSide(ctx, networkID, podID, p)
	})
	return changed, err
}

// normalizePodSide checks every address and sorts both lists, so equal
// contents compare equal; empty lists become nil.
func normalizePodSide(p model.PodSide) (model.PodSide, error) {
	var out model.PodSide
	for _, v := range p.VTEPs {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return out, invalid("vteps", "%q: %v", v, err)
		}
		out.VTEPs = append(out.VTEPs, a.Unmap().String())
	}
	slices.Sort(out.VTEPs)
	out.VTEPs = slices.Compact(out.VTEPs)
	for _, pp := range p.Ports {
		mac, err := macaddr.Parse(pp.MAC)
		if err != nil {
			return out, invalid("ports", "mac %q: %v", pp.MAC, err)
		}
		a, err := netip.ParseAddr(pp.VTEP)
		if err != nil {
			return out, invalid("ports", "vtep %q of %s: %v", pp.VTEP, pp.MAC, err)
		}
		out.Ports = append(out.Ports, model.PodSidePort{MAC: mac.String(), VTEP: a.Unmap().String()})
	}
	slices.SortFunc(out.Ports, func(a, b model.PodSidePort) int {
		return cmpOr(strings.Compare(a.MAC, b.MAC), strings.Compare(a.VTEP, b.VTEP))
	})
	out.Ports = slices.CompactFunc(out.Ports, func(a, b model.PodSidePort) bool { return a.MAC == b.MAC })
	return out, nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// ResyncBottoms asks for a run of the sync job of every network in every
// pod it has a segment in, unless that job is already due or running, so
// what changed in a pod's Neutron behind the brain's back (a shadow port
// deleted by hand, a VM bound to another host) is seen. Failed jobs keep
// their backoff. It returns how many jobs it asked for.
func (s *Service) ResyncBottoms(ctx context.Context) (int, error) {
	if !s.cfg.BottomJobs {
		return 0, nil
	}
	n := 0
	err := s.write(ctx, func(tx *store.Tx) error {
		n = 0
		pairs, err := tx.SegmentPods(ctx)
		if err != nil {
			return err
		}
		for _, p := range pairs {
			j, err := tx.FindJob(ctx, JobNetworkSync, p[0], p[1])
			if err != nil {
				return err
			}
			if j != nil && j.State != model.JobSuccess {
				continue
			}
			if _, err := tx.EnqueueJob(ctx, JobNetworkSync, p[0], p[1], s.now()); err != nil {
				return fmt.Errorf("enqueue sync of %s in %s: %w", p[0], p[1], err)
			}
			n++
		}
		return nil
	})
	return n, err
}
