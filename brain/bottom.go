package brain

import (
	"context"
	"errors"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/store"
)

// JobNetworkSync is the job that makes a top network's bottom network in one
// pod match the top: network, subnets and that pod's ports when the network
// has ports there, nothing when it has none (or is gone). Its resource is
// the top network id.
const JobNetworkSync = "network_sync"

// Resource types of the routing table.
const (
	RouteNetwork = "network"
	RouteSubnet  = "subnet"
	RoutePort    = "port"
)

// bottomChanged enqueues the network's sync job in podID, in the same
// transaction as the change that calls for it (so the job is as durable as
// the change). It does nothing unless Config.BottomJobs is set.
func (s *Service) bottomChanged(ctx context.Context, tx *store.Tx, networkID, podID string) error {
	if !s.cfg.BottomJobs {
		return nil
	}
	_, err := tx.EnqueueJob(ctx, JobNetworkSync, networkID, podID, s.now())
	return err
}

// bottomNetworkChanged enqueues the network's sync job in every pod it has
// a segment or bottom resources in.
func (s *Service) bottomNetworkChanged(ctx context.Context, tx *store.Tx, networkID string) error {
	if !s.cfg.BottomJobs {
		return nil
	}
	pods := map[string]bool{}
	segs, err := tx.Segments(ctx, networkID)
	if err != nil {
		return err
	}
	for _, g := range segs {
		pods[g.PodID] = true
	}
	routes, err := tx.Routes(ctx, store.RouteFilter{NetworkID: networkID, ResourceType: RouteNetwork})
	if err != nil {
		return err
	}
	for _, r := range routes {
		pods[r.PodID] = true
	}
	for pod := range pods {
		if err := s.bottomChanged(ctx, tx, networkID, pod); err != nil {
			return err
		}
	}
	return nil
}

// BottomView is what a sync job needs to know about one network in one pod,
// read in one snapshot.
type BottomView struct {
	Pod api.Pod
	// Exists is false when the top network is gone.
	Exists  bool
	Network api.Network
	// Segment is the pod's segment; HasSegment is false when the network has
	// no port in the pod.
	Segment    api.Segment
	HasSegment bool
	Subnets    []api.Subnet
	Ports      []api.Port // the network's ports in the pod
	Routes     []api.Route
}

// BottomView reads the top state of networkID in podID.
func (s *Service) BottomView(ctx context.Context, networkID, podID string) (BottomView, error) {
	var v BottomView
	err := s.read(ctx, func(tx *store.Tx) error {
		v = BottomView{}
		var err error
		if v.Pod, err = tx.GetPod(ctx, podID); err != nil {
			return err
		}
		if v.Routes, err = tx.Routes(ctx, store.RouteFilter{NetworkID: networkID, PodID: podID}); err != nil {
			return err
		}
		v.Network, err = tx.GetNetwork(ctx, networkID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		v.Exists = true
		segs, err := tx.Segments(ctx, networkID)
		if err != nil {
			return err
		}
		for _, g := range segs {
			if g.PodID == podID {
				v.Segment, v.HasSegment = g, true
			}
		}
		subs, err := tx.ListSubnets(ctx, store.SubnetFilter{NetworkID: networkID}, store.Page{Limit: 10000})
		if err != nil {
			return err
		}
		v.Subnets = subs.Items
		ports, err := tx.ListPorts(ctx, store.PortFilter{NetworkID: networkID, PodID: podID}, store.Page{Limit: 10000})
		if err != nil {
			return err
		}
		v.Ports = ports.Items
		return nil
	})
	return v, err
}

// PutRoutes records routes (top id -> bottom id in a pod).
func (s *Service) PutRoutes(ctx context.Context, routes ...api.Route) error {
	if len(routes) == 0 {
		return nil
	}
	return s.write(ctx, func(tx *store.Tx) error {
		for _, r := range routes {
			if r.CreatedAt.IsZero() {
				r.CreatedAt = s.now()
			}
			if err := tx.PutRoute(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRoutes forgets routes.
func (s *Service) DeleteRoutes(ctx context.Context, routes ...api.Route) error {
	if len(routes) == 0 {
		return nil
	}
	return s.write(ctx, func(tx *store.Tx) error {
		for _, r := range routes {
			if err := tx.DeleteRoute(ctx, r.TopID, r.PodID, r.ResourceType); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListRoutes lists routes of a top resource and/or a pod.
func (s *Service) ListRoutes(ctx context.Context, f store.RouteFilter) (rs []api.Route, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { rs, err = tx.Routes(ctx, f); return err })
	return rs, err
}

// EnqueueJob asks for a run of a job (deduplicated per type, resource, pod).
func (s *Service) EnqueueJob(ctx context.Context, typ, resource, podID string) (j api.Job, err error) {
	if err := checkID("type", typ); err != nil {
		return j, err
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		j, err = tx.EnqueueJob(ctx, typ, resource, podID, s.now())
		return err
	})
	return j, err
}

// GetJob returns a job.
func (s *Service) GetJob(ctx context.Context, id string) (j api.Job, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { j, err = tx.GetJob(ctx, id); return err })
	return j, err
}

// ListJobs lists jobs.
func (s *Service) ListJobs(ctx context.Context, f store.JobFilter, pg store.Page) (l api.List[api.Job], err error) {
	switch f.State {
	case "", api.JobNew, api.JobRunning, api.JobSuccess, api.JobFailed:
	default:
		return l, invalid("state", "%q must be new, running, success or failed", f.State)
	}
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListJobs(ctx, f, pg); return err })
	return l, err
}

// RetryJob makes a job due now with its attempts reset (a running job runs
// once more when it ends).
func (s *Service) RetryJob(ctx context.Context, id string) (j api.Job, err error) {
	err = s.write(ctx, func(tx *store.Tx) error { j, err = tx.RetryJob(ctx, id, s.now()); return err })
	return j, err
}

// CountJobsByState counts jobs per state (new, running, success, failed).
func (s *Service) CountJobsByState(ctx context.Context) (m map[string]int, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { m, err = tx.CountJobsByState(ctx); return err })
	return m, err
}
