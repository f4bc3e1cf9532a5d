package brain

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// names the failing element as ports[i].field.
func (s *Service) CreatePorts(ctx context.Context, reqs []PortCreate) ([]model.Port, error) {
	if len(reqs) == 0 {
		return nil, invalid("ports", "at least one port is required")
	}
	ports := make([]model.Port, len(reqs))
	for i, r := range reqs {
		p, err := s.checkPort(r)
		if err != nil {
			return nil, elementError(err, i, len(reqs))
		}
		ports[i] = p
	}
	err := s.write(ctx, func(tx *store.Tx) error {
		nets := map[string]*portNetwork{}
		for i := range ports {
			if err := s.insertPort(ctx, tx, &ports[i], nets); err != nil {
				return elementError(err, i, len(reqs))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ports, nil
}

func elementError(err error, i, n int) error {
	var e *Error
	if n > 1 && errors.As(err, &e) {
		c := *e
		if c.Field != "" {
			c.Field = fmt.Sprintf("ports[%d].%s", i, c.Field)
		} else {
			c.Message = fmt.Sprintf("ports[%d]: %s", i, c.Message)
		}
		return &c
	}
	return err
}

func (s *Service) checkPort(r PortCreate) (model.Port, error) {
	p := model.Port{ID: r.ID, NetworkID: r.NetworkID, PodID: r.PodID, DeviceOwner: r.DeviceOwner, ProjectID: r.ProjectID, CreatedAt: s.now()}
	if err := checkProject("project_id", p.ProjectID); err != nil {
		return p, err
	}
	if p.ID == "" {
		p.ID = uuid.NewString()
	} else if err := checkID("id", p.ID); err != nil {
		return p, err
	}
	if err := checkID("network_id", p.NetworkID); err != nil {
		return p, err
	}
	if err := checkID("pod_id", p.PodID); err != nil {
		return p, err
	}
	mac, err := normalizeMAC("mac", r.MAC)
	if err != nil {
		return p, err
	}
	p.MAC = mac
	if p.IPs, err = parsePortIPs(r.IPs); err != nil {
		return p, err
	}
	if err := checkText("device_owner", p.DeviceOwner, MaxNameLen); err != nil {
		return p, err
	}
	return p, nil
}

// portNetwork caches what a transaction learned about a network.
type portNetwork struct {
	net     model.Network
	subnets []subnetInfo
	pods    map[string]bool // pods with a segment
}

func (s *Service) loadPortNetwork(ctx context.Context, tx *store.Tx, networkID string, cache map[string]*portNetwork) (*portNetwork, error) {
	if pn := cache[networkID]; pn != nil {
		return pn, nil
	}
	n, err := tx.GetNetwork(ctx, networkID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalid("network_id", "network %s does not exist", networkID)
	} else if err != nil {
		return nil, err
	}
	pn := &portNetwork{net: n, pods: map[string]bool{}}
	subs, err := tx.ListSubnets(ctx, model.SubnetFilter{NetworkID: n.ID}, model.Page{Limit: 10000})
	if err != nil {
		return nil, err
	}
	for _, sn := range subs.Items {
		if info, ok := parseSubnetInfo(sn); ok {
			pn.subnets = append(pn.subnets, info)
		}
	}
	segs, err := tx.Segments(ctx, n.ID)
	if err != nil {
		return nil, err
	}
	for _, g := range segs {
		pn.pods[g.PodID] = true
	}
	cache[networkID] = pn
	return pn, nil
}

// spreadTo creates the network's segment in podID after checking the AZ
// scope and, for a local network, that no other pod (others > 0) holds it.
func (s *Service) spreadTo(ctx context.Context, tx *store.Tx, pn *portNetwork, podID string, others int) error {
	n := pn.net
	pod, err := tx.GetPod(ctx, podID)
	if errors.Is(err, store.ErrNotFound) {
		return invalid("pod_id", "pod %s does not exist", podID)
	} else if err != nil {
		return err
	}
	if err := inScope(n, pod); err != nil {
		return err
	}
	drv, _ := s.driver(n.Type)
	if !drv.multiPod() && others > 0 {
		var other string
		for k := range pn.pods {
			if k != podID {
				other = k
			}
		}
		return conflict("pod_id", "%s is local and already lives in pod %s; it cannot reach pod %s", netLabel(n), other, podID)
	}
	seg := drv.segment(n, podID)
	seg.CreatedAt = s.now()
	if err := tx.InsertSegment(ctx, seg); err != nil {
		return err
	}
	pn.pods[podID] = true
	return nil
}

func (s *Service) insertPort(ctx context.Context, tx *store.Tx, p *model.Port, cache map[string]*portNetwork) error {
	pn, err := s.loadPortNetwork(ctx, tx, p.NetworkID, cache)
	if err != nil {
		return err
	}
	if err := checkTenancy(pn.net, *p); err != nil {
		return err
	}
	if err := s.checkIPs(ctx, tx, *p, cache); err != nil {
		return err
	}
	if !pn.pods[p.PodID] {
		if err := s.spreadTo(ctx, tx, pn, p.PodID, len(pn.pods)); err != nil {
			return err
		}
	}
	if err := tx.InsertPort(ctx, *p); err != nil {
		if errors.Is(err, store.ErrDuplicateID) {
			return conflict("id", "port %s already exists", p.ID)
		}
		if errors.Is(err, store.ErrDuplicate) {
			return conflict("mac", "MAC %s is already used by another port of %s", p.MAC, netLabel(pn.net))
		}
		return err
	}
	tx.Changed(pn.net.ID)
	return s.bottomPortChanged(ctx, tx, pn.net.ID, p.PodID)
}

// inScope checks that pod is inside the network's AZ scope.
func inScope(n model.Network, pod model.Pod) error {
	if len(n.AZHints) == 0 {
		return nil
	}
	if n.External {
		if pod.ID != n.AZHints[0] {
			return conflict("pod_id", "external %s lives in pod %s only; pod %s is outside it", netLabel(n), n.AZHints[0], pod.ID)
		}
		return nil
	}
	if !slices.Contains(n.AZHints, pod.AZ) {
		return conflict("pod_id", "pod %s is in availability zone %s, outside %s's az_hints %v", pod.ID, pod.AZ, netLabel(n), n.AZHints)
	}
	return nil
}

// DeletePort removes a port; when it was the network's last port in its pod,
// the network's segment there goes too.
func (s *Service) DeletePort(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		p, err := tx.GetPort(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeletePort(ctx, id); err != nil {
			return err
		}
		left, err := tx.CountPorts(ctx, p.NetworkID, p.PodID)
		if err != nil {
			return err
		}
		if left == 0 {
			if err := tx.DeleteSegment(ctx, p.NetworkID, p.PodID); err != nil {
				return err
			}
		}
		tx.Changed(p.NetworkID)
		return s.bottomPortChanged(ctx, tx, p.NetworkID, p.PodID)
	})
}

// UpdatePort moves a port to another pod (a VM re-bound elsewhere), changes
// its IPs, or clears its duplicate mark. Each move bumps the port's mobility
// sequence; a move carrying an older sequence is refused; a MAC that moves
// DupMoves times within DupWindow is frozen where it is and reported.
func (s *Service) UpdatePort(ctx context.Context, id string, u PortUpdate) (model.Port, error) {
	var out model.Port
	var frozen *Error
	var ips []string
	if u.IPs != nil {
		var err error
		if ips, err = parsePortIPs(*u.IPs); err != nil {
			return out, err
		}
	}
	if u.PodID != nil {
		if err := checkID("pod_id", *u.PodID); err != nil {
			return out, err
		}
	}
	err := s.write(ctx, func(tx *store.Tx) error {
		frozen = nil
		p, err := tx.GetPort(ctx, id)
		if err != nil {
			return err
		}
		if u.ClearDuplicate && p.Duplicate {
			p.Duplicate = false
			if err := tx.ClearMoves(ctx, p.ID); err != nil {
				return err
			}
		}
		if u.IPs != nil {
			cache := map[string]*portNetwork{}
			probe := p
			probe.IPs = ips
			if err := s.checkIPs(ctx, tx, probe, cache); err != nil {
				return err
			}
			p.IPs = ips
		}
		if u.PodID != nil && *u.PodID != p.PodID {
			to := *u.PodID
			if u.MobilitySeq != nil && *u.MobilitySeq <= p.MobilitySeq {
				return conflict("mobility_seq", "stale placement of %s: sequence %d is not newer than %d (pod %s)", p.MAC, *u.MobilitySeq, p.MobilitySeq, p.PodID)
			}
			if p.Duplicate {
				return conflict("pod_id", "MAC %s is frozen in pod %s as a duplicate (moving between pods too often); clear it with clear_duplicate once the conflict is fixed", p.MAC, p.PodID)
			}
			now := s.now()
			moves, err := tx.MovesSince(ctx, p.ID, now.Add(-s.cfg.DupWindow))
			if err != nil {
				return err
			}
			if moves+1 >= s.cfg.DupMoves {
				p.Duplicate = true
				if err := tx.UpdatePort(ctx, p); err != nil {
					return err
				}
				tx.Changed(p.NetworkID)
				frozen = conflict("pod_id", "duplicate MAC %s detected: %d moves within %s; frozen in pod %s", p.MAC, moves+1, s.cfg.DupWindow, p.PodID)
				out = p
				return nil
			}
			if err := s.movePort(ctx, tx, &p, to); err != nil {
				return err
			}
			if err := tx.RecordMove(ctx, p.ID, p.PodID, to, now); err != nil {
				return err
			}
			p.MobilitySeq++
			if u.MobilitySeq != nil {
				p.MobilitySeq = *u.MobilitySeq
			}
			p.PodID = to
		}
		tx.Changed(p.NetworkID)
		out = p
		if err := s.bottomPortChanged(ctx, tx, p.NetworkID, p.PodID); err != nil {
			return err
		}
		return tx.UpdatePort(ctx, p)
	})
	if err == nil && frozen != nil {
		return out, frozen
	}
	return out, err
}

// movePort spreads the network to the new pod (checking scope) and takes
// the old pod's segment away when the port was its last.
func (s *Service) movePort(ctx context.Context, tx *store.Tx, p *model.Port, to string) error {
	cache := map[string]*portNetwork{}
	pn, err := s.loadPortNetwork(ctx, tx, p.NetworkID, cache)
	if err != nil {
		return err
	}
	left, err := tx.CountPorts(ctx, p.NetworkID, p.PodID)
	if err != nil {
		return err
	}
	if !pn.pods[to] {
		// A local network may move only as a whole (its last port).
		others := len(pn.pods)
		if left == 1 {
			others--
		}
		if err := s.spreadTo(ctx, tx, pn, to, others); err != nil {
			return err
		}
	}
	if left == 1 {
		if err := tx.DeleteSegment(ctx, p.NetworkID, p.PodID); err != nil {
			return err
		}
	}
	return s.bottomChanged(ctx, tx, p.NetworkID, p.PodID)
}

// GetPort returns a port.
func (s *Service) GetPort(ctx context.Context, id string) (p model.Port, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { p, err = tx.GetPort(ctx, id); return err })
	p.Reserved = IsReserved(p)
	return p, err
}

// CountDuplicates counts ports frozen as duplicate MACs.
func (s *Service) CountDuplicates(ctx context.Context) (n int, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { n, err = tx.CountDuplicates(ctx); return err })
	return n, err
}

// ListPorts lists ports.
func (s *Service) ListPorts(ctx context.Context, f model.PortFilter, pg model.Page) (l model.List[model.Port], err error) {
	if f.MAC != "" {
		if f.MAC, err = normalizeMAC("mac", f.MAC); err != nil {
			return l, err
		}
	}
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListPorts(ctx, f, pg); return err })
	for i := range l.Items {
		l.Items[i].Reserved = IsReserved(l.Items[i])
	}
	return l, err
}
