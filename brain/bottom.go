package brain

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
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
	// RouteGatewayPort maps a top subnet to the bottom port that holds its
	// gateway IP in a pod.
	RouteGatewayPort = "gateway_port"
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

// bottomPortChanged enqueues the network's sync job in podID (its bottom
// port) and in every other pod the network reaches (their shadow ports of
// it), in the same transaction as the port change.
func (s *Service) bottomPortChanged(ctx context.Context, tx *store.Tx, networkID, podID string) error {
	if err := s.bottomChanged(ctx, tx, networkID, podID); err != nil {
		return err
	}
	return s.bottomNetworkChanged(ctx, tx, networkID)
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
	routes, err := tx.Routes(ctx, model.RouteFilter{NetworkID: networkID, ResourceType: RouteNetwork})
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
	Pod model.Pod
	// Exists is false when the top network is gone.
	Exists  bool
	Network model.Network
	// Segment is the pod's segment; HasSegment is false when the network has
	// no port in the pod.
	Segment    model.Segment
	HasSegment bool
	Subnets    []model.Subnet
	Ports      []model.Port // the network's ports in the pod
	// Remote are the network's ports in other pods (reserved ones
	// included): each gets a shadow port in this pod.
	Remote []model.Port
	Routes []model.Route
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
		if v.Routes, err = tx.Routes(ctx, model.RouteFilter{NetworkID: networkID, PodID: podID}); err != nil {
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
		subs, err := tx.ListSubnets(ctx, model.SubnetFilter{NetworkID: networkID}, model.Page{Limit: 10000})
		if err != nil {
			return err
		}
		v.Subnets = subs.Items
		ports, err := tx.ListPorts(ctx, model.PortFilter{NetworkID: networkID}, model.Page{Limit: 100000})
		if err != nil {
			return err
		}
		for _, p := range ports.Items {
			if p.PodID == podID {
				v.Ports = append(v.Ports, p)
			} else {
				v.Remote = append(v.Remote, p)
			}
		}
		return nil
	})
	return v, err
}

// PutRoutes records routes (top id -> bottom id in a pod).
func (s *Service) PutRoutes(ctx context.Context, routes ...model.Route) error {
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
func (s *Service) DeleteRoutes(ctx context.Context, routes ...model.Route) error {
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
func (s *Service) ListRoutes(ctx context.Context, f model.RouteFilter) (rs []model.Route, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { rs, err = tx.Routes(ctx, f); return err })
	return rs, err
}

// EnqueueJob asks for a run of a job (deduplicated per type, resource, pod).
func (s *Service) EnqueueJob(ctx context.Context, typ, resource, podID string) (j model.Job, err error) {
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
func (s *Service) GetJob(ctx context.Context, id string) (j model.Job, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { j, err = tx.GetJob(ctx, id); return err })
	return j, err
}

// ListJobs lists jobs.
func (s *Service) ListJobs(ctx context.Context, f model.JobFilter, pg model.Page) (l model.List[model.Job], err error) {
	switch f.State {
	case "", model.JobNew, model.JobRunning, model.JobSuccess, model.JobFailed:
	default:
		return l, invalid("state", "%s must be new, running, success or failed", echo(f.State))
	}
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListJobs(ctx, f, pg); return err })
	return l, err
}

// RetryJob makes a job due now with its attempts reset (a running job runs
// once more when it ends).
func (s *Service) RetryJob(ctx context.Context, id string) (j model.Job, err error) {
	err = s.write(ctx, func(tx *store.Tx) error { j, err = tx.RetryJob(ctx, id, s.now()); return err })
	return j, err
}

// CountJobsByState counts jobs per state (new, running, success, failed).
func (s *Service) CountJobsByState(ctx context.Context) (m map[string]int, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { m, err = tx.CountJobsByState(ctx); return err })
	return m, err
}

// Kinds of top ports the brain reserves for itself in each pod a network
// reaches (see ReservePort).
const (
	// ReservedDHCP is the pod's DHCP server port: one IP per subnet,
	// device_owner network:dhcp.
	ReservedDHCP = "dhcp"
	// ReservedGateway is the pod's own gateway port of a network with
	// gateway_per_pod: one IP per subnet that has a gateway, device_owner
	// network:router_interface_distributed.
	ReservedGateway = "gateway"
)

var reservedNS = uuid.MustParse("5b8e2f1c-6c1e-4f0a-9a57-2d7f3c1e0b42")

// ReservedPortID is the id of the top port of kind reserved for
// networkID in podID: derived from the three, so a job that runs twice (or
// two replicas) reserve the same port, never two.
func ReservedPortID(kind, networkID, podID string) string {
	return uuid.NewSHA1(reservedNS, []byte(kind+"/"+networkID+"/"+podID)).String()
}

// IsReserved reports whether p is a port the brain reserved for itself in
// its pod (not a port of a VM or a driver).
func IsReserved(p model.Port) bool {
	return p.ID == ReservedPortID(ReservedDHCP, p.NetworkID, p.PodID) || p.ID == ReservedPortID(ReservedGateway, p.NetworkID, p.PodID)
}

// ReservePort makes sure the top port of kind exists for networkID in
// podID and holds an IP in each subnet it needs (every subnet for
// ReservedDHCP; every subnet with a gateway for ReservedGateway), and
// returns it. IPs are taken from the top of each subnet downward, skipping
// the network and last addresses, the gateway and every IP a port of the
// network holds in any pod, in one write transaction: two pods never get
// the same IP. The MAC is random in fa:16:3e (Neutron's prefix), unique in
// the network. Called by the sync job itself, it enqueues no job.
func (s *Service) ReservePort(ctx context.Context, kind, networkID, podID string) (model.Port, error) {
	owner := map[string]string{ReservedDHCP: "network:dhcp", ReservedGateway: "network:router_interface_distributed"}[kind]
	if owner == "" {
		return model.Port{}, invalid("kind", "%s is not dhcp or gateway", echo(kind))
	}
	id := ReservedPortID(kind, networkID, podID)
	var out model.Port
	err := s.write(ctx, func(tx *store.Tx) error {
		subs, err := tx.ListSubnets(ctx, model.SubnetFilter{NetworkID: networkID}, model.Page{Limit: 10000})
		if err != nil {
			return err
		}
		ports, err := tx.ListPorts(ctx, model.PortFilter{NetworkID: networkID}, model.Page{Limit: 100000})
		if err != nil {
			return err
		}
		used := map[netip.Addr]bool{}
		var have *model.Port
		for i, p := range ports.Items {
			if p.ID == id {
				have = &ports.Items[i]
			}
			for _, ip := range p.IPs {
				if a, err := netip.ParseAddr(ip); err == nil {
					used[a] = true
				}
			}
		}
		p := model.Port{ID: id, NetworkID: networkID, PodID: podID, DeviceOwner: owner, IPs: []string{}, CreatedAt: s.now()}
		if have != nil {
			p = *have
		}
		var keep []string
		changed := false
		for _, sn := range subs.Items {
			pf, err := netip.ParsePrefix(sn.CIDR)
			if err != nil || kind == ReservedGateway && sn.GatewayIP == "" {
				continue
			}
			if gw, err := netip.ParseAddr(sn.GatewayIP); err == nil {
				used[gw] = true
			}
			held := ""
			for _, ip := range p.IPs {
				if a, err := netip.ParseAddr(ip); err == nil && pf.Contains(a) {
					held = ip
				}
			}
			if held == "" {
				a, ok := freeFromTop(pf, used)
				if !ok {
					return conflict("ips", "subnet %s (%s) has no free IP for the %s port of pod %s", sn.ID, sn.CIDR, kind, podID)
				}
				used[a] = true
				held, changed = a.String(), true
			}
			keep = append(keep, held)
		}
		if len(keep) != len(p.IPs) {
			changed = true // an IP of a deleted subnet goes
		}
		p.IPs = keep
		if p.IPs == nil {
			p.IPs = []string{}
		}
		if have != nil {
			if changed {
				tx.Changed(networkID)
				if err := tx.UpdatePort(ctx, p); err != nil {
					return err
				}
			}
			out = p
			return nil
		}
		for try := 0; ; try++ {
			p.MAC = s.reservedMAC()
			// Under a savepoint: a MAC another port holds must leave the
			// transaction usable for the next try (PostgreSQL aborts it).
			err := tx.Savepoint(ctx, func() error { return tx.InsertPort(ctx, p) })
			if err == nil {
				break
			}
			if !errors.Is(err, store.ErrDuplicate) || try > 5 {
				return err
			}
		}
		tx.Changed(networkID)
		out = p
		return nil
	})
	return out, err
}

func randomNeutronMAC() string {
	var b [3]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", b[0], b[1], b[2])
}

// freeFromTop returns the highest address of pf that is neither its first
// nor its last address nor used.
func freeFromTop(pf netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	pf = pf.Masked()
	first, last := pf.Addr(), lastAddr(pf)
	for a, n := last.Prev(), 0; a.IsValid() && a != first && n < 1<<16; a, n = a.Prev(), n+1 {
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func lastAddr(pf netip.Prefix) netip.Addr {
	b := pf.Addr().AsSlice()
	bits := pf.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// DeleteReservedPort removes the top port of kind reserved in podID, if
// any, and the pod's segment when it was the pod's last port. Called by
// the sync job once the bottom is torn down, it enqueues no job.
func (s *Service) DeleteReservedPort(ctx context.Context, kind, networkID, podID string) error {
	id := ReservedPortID(kind, networkID, podID)
	return s.write(ctx, func(tx *store.Tx) error {
		if err := tx.DeletePort(ctx, id); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if _, err := tx.GetNetwork(ctx, networkID); err == nil {
			left, err := tx.CountPorts(ctx, networkID, podID)
			if err != nil {
				return err
			}
			if left == 0 {
				if err := tx.DeleteSegment(ctx, networkID, podID); err != nil {
					return err
				}
			}
		}
		tx.Changed(networkID)
		return nil
	})
}
