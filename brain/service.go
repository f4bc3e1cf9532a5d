// Package brain is the single source of truth for what exists: pods, top
// networks and their per-pod segments, subnets, ports and gateways. It
// enforces the cross-pod L2 rules, allocates segmentation ids through the
// type drivers and computes each pod's desired state.
package brain

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/store"
)

// Config holds the type drivers' ranges and the duplicate-MAC detection
// rule: DupMoves moves within DupWindow freeze a MAC (FRR's default is 5
// moves in 180 s).
type Config struct {
	VLANRanges []VLANRange
	VNIRanges  []VNIRange
	DupMoves   int
	DupWindow  time.Duration
	// BottomJobs enqueues a network_sync job (in the same transaction) for
	// each (network, pod) whose ports change, so the bottom clouds follow.
	BottomJobs bool
}

// Service applies the rules over a store.
type Service struct {
	store *store.Store
	cfg   Config
	// committed is told the revision of every write that changed state.
	committed func(rev int64)
	now       func() time.Time
	// reservedMAC draws the MAC of a port the brain reserves (random in
	// Neutron's fa:16:3e prefix).
	reservedMAC func() string

	// Single-port creates are group-committed: requests that arrive while
	// a commit is in flight share the next transaction (one fsync).
	portQueue chan portRequest
	batcher   sync.Once
}

type portRequest struct {
	ctx  context.Context
	port api.Port
	done chan portResult
}

type portResult struct {
	port api.Port
	err  error
}

// maxPortBatch bounds one group commit.
const maxPortBatch = 256

// NewService returns a Service over st. committed, if not nil, is called
// after each commit that produced a new revision.
func NewService(st *store.Store, cfg Config, committed func(int64)) *Service {
	if committed == nil {
		committed = func(int64) {}
	}
	if cfg.DupMoves <= 0 {
		cfg.DupMoves = 5
	}
	if cfg.DupWindow <= 0 {
		cfg.DupWindow = 180 * time.Second
	}
	return &Service{store: st, cfg: cfg, committed: committed, now: func() time.Time { return time.Now().UTC() },
		reservedMAC: randomNeutronMAC, portQueue: make(chan portRequest, 4*maxPortBatch)}
}

// Store returns the underlying store.
func (s *Service) Store() *store.Store { return s.store }

func (s *Service) write(ctx context.Context, fn func(*store.Tx) error) error {
	rev, err := s.store.Write(ctx, fn)
	if err != nil {
		return err
	}
	if rev > 0 {
		s.committed(rev)
	}
	return nil
}

func (s *Service) read(ctx context.Context, fn func(*store.Tx) error) error {
	return s.store.Read(ctx, fn)
}

// ---- pods ----

// CreatePod registers a pod.
func (s *Service) CreatePod(ctx context.Context, p api.Pod) (api.Pod, error) {
	if err := checkID("id", p.ID); err != nil {
		return p, err
	}
	if err := checkID("az", p.AZ); err != nil {
		return p, err
	}
	var err error
	if p.DVRBaseMAC, err = normalizeDVRBaseMAC(p.DVRBaseMAC); err != nil {
		return p, err
	}
	if err := checkURL("neutron_url", p.NeutronURL); err != nil {
		return p, err
	}
	p.CreatedAt = s.now()
	err = s.write(ctx, func(tx *store.Tx) error {
		if err := tx.InsertPod(ctx, p); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return conflict("id", "pod %s already exists", p.ID)
			}
			return err
		}
		if p.DVRBaseMAC != "" {
			tx.Changed(store.AllNetworks)
		}
		return nil
	})
	return p, err
}

// UpdatePod changes a pod's region, dvr_base_mac or neutron_url; its AZ is fixed.
func (s *Service) UpdatePod(ctx context.Context, p api.Pod) (api.Pod, error) {
	var out api.Pod
	dvr, err := normalizeDVRBaseMAC(p.DVRBaseMAC)
	if err != nil {
		return out, err
	}
	if err := checkURL("neutron_url", p.NeutronURL); err != nil {
		return out, err
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		cur, err := tx.GetPod(ctx, p.ID)
		if err != nil {
			return err
		}
		if p.AZ != "" && p.AZ != cur.AZ {
			return conflict("az", "a pod's availability zone cannot change (pod %s is in %s)", cur.ID, cur.AZ)
		}
		if dvr != cur.DVRBaseMAC {
			tx.Changed(store.AllNetworks)
		}
		cur.Region, cur.DVRBaseMAC, cur.NeutronURL = p.Region, dvr, p.NeutronURL
		out = cur
		return tx.UpdatePod(ctx, cur)
	})
	return out, err
}

// DeletePod removes a pod that no longer holds ports, segments or gateways.
func (s *Service) DeletePod(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		pod, err := tx.GetPod(ctx, id)
		if err != nil {
			return err
		}
		err = tx.DeletePod(ctx, id)
		if errors.Is(err, store.ErrReferenced) {
			return conflict("id", "pod %s still has ports, segments or gateways", id)
		}
		if pod.DVRBaseMAC != "" {
			tx.Changed(store.AllNetworks)
		}
		return err
	})
}

// GetPod returns a pod.
func (s *Service) GetPod(ctx context.Context, id string) (p api.Pod, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { p, err = tx.GetPod(ctx, id); return err })
	return p, err
}

// ListPods lists pods.
func (s *Service) ListPods(ctx context.Context, f store.PodFilter, pg store.Page) (l api.List[api.Pod], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListPods(ctx, f, pg); return err })
	return l, err
}

// ---- networks ----

// CreateNetwork creates a top network and allocates its segmentation id.
func (s *Service) CreateNetwork(ctx context.Context, req api.NetworkCreate) (api.Network, error) {
	n := api.Network{ID: uuid.NewString(), Name: req.Name, Type: req.Type, External: req.External, GatewayPerPod: req.GatewayPerPod, CreatedAt: s.now()}
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
			return err
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
			// Persist the allocated id on the network row.
			if _, err := tx.Exec(ctx, `UPDATE networks SET segmentation_id = ?, physical_network = ? WHERE id = ?`,
				n.SegmentationID, n.PhysicalNetwork, n.ID); err != nil {
				return fmt.Errorf("store segmentation id of %s: %w", n.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return api.Network{}, err
	}
	n.Segments = []api.Segment{}
	return n, nil
}

// UpdateNetwork renames a network; az_hints cannot change after create.
func (s *Service) UpdateNetwork(ctx context.Context, id string, u api.NetworkUpdate) (api.Network, error) {
	var out api.Network
	if u.Name != nil && len(*u.Name) > 255 {
		return out, invalid("name", "must be at most 255 characters")
	}
	err := s.write(ctx, func(tx *store.Tx) error {
		n, err := tx.GetNetwork(ctx, id)
		if err != nil {
			return err
		}
		if n.GatewayPerPod, err = tx.GatewayPerPod(ctx, id); err != nil {
			return err
		}
		if u.AZHints != nil {
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
		ports, err := tx.ListPorts(ctx, store.PortFilter{NetworkID: id}, store.Page{Limit: 100000})
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
		if _, err := tx.Exec(ctx, `DELETE FROM subnets WHERE network_id = ?`, id); err != nil {
			return fmt.Errorf("delete subnets of %s: %w", id, err)
		}
		tx.Changed(id)
		return tx.DeleteNetwork(ctx, id)
	})
}

// GetNetwork returns a network with its segments.
func (s *Service) GetNetwork(ctx context.Context, id string) (n api.Network, err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		if n, err = tx.GetNetwork(ctx, id); err != nil {
			return err
		}
		if n.GatewayPerPod, err = tx.GatewayPerPod(ctx, id); err != nil {
			return err
		}
		n.Segments, err = tx.Segments(ctx, id)
		return err
	})
	return n, err
}

// ListNetworks lists networks with their segments.
func (s *Service) ListNetworks(ctx context.Context, f store.NetworkFilter, pg store.Page) (l api.List[api.Network], err error) {
	err = s.read(ctx, func(tx *store.Tx) error {
		if l, err = tx.ListNetworks(ctx, f, pg); err != nil {
			return err
		}
		for i := range l.Items {
			if l.Items[i].Segments, err = tx.Segments(ctx, l.Items[i].ID); err != nil {
				return err
			}
			if l.Items[i].GatewayPerPod, err = tx.GatewayPerPod(ctx, l.Items[i].ID); err != nil {
				return err
			}
		}
		return nil
	})
	return l, err
}

// ListSegments returns a network's segments.
func (s *Service) ListSegments(ctx context.Context, networkID string) (segs []api.Segment, err error) {
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
func (s *Service) ReportSegment(ctx context.Context, networkID string, r api.SegmentReport) (api.Segment, error) {
	var out api.Segment
	if err := checkID("pod_id", r.PodID); err != nil {
		return out, err
	}
	switch r.NetworkType {
	case api.SegmentVLAN:
		if r.SegmentationID < MinVLAN || r.SegmentationID > MaxVLAN {
			return out, invalid("segmentation_id", "VLAN id %d is outside %d-%d", r.SegmentationID, MinVLAN, MaxVLAN)
		}
		if r.PhysicalNetwork == "" {
			return out, invalid("physical_network", "is required for a vlan segment")
		}
	case api.SegmentVXLAN:
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
		if n.Type != api.TypeMixedVLANVXLAN {
			return conflict("network_type", "network %s is %s: only mixed_vlan_vxlan networks take reported segments", networkID, n.Type)
		}
		segs, err := tx.Segments(ctx, networkID)
		if err != nil {
			return err
		}
		idx := slices.IndexFunc(segs, func(g api.Segment) bool { return g.PodID == r.PodID })
		if idx < 0 {
			return conflict("pod_id", "network %s has not spread to pod %s (no port is bound there)", networkID, r.PodID)
		}
		out = segs[idx]
		out.NetworkType, out.SegmentationID = r.NetworkType, r.SegmentationID
		out.PhysicalNetwork = SegmentPhysicalNetwork(physnet, r.PodID)
		tx.Changed(networkID)
		return tx.UpdateSegment(ctx, out)
	})
	return out, err
}

// ---- subnets ----

// CreateSubnet adds a subnet to a network.
func (s *Service) CreateSubnet(ctx context.Context, sn api.Subnet) (api.Subnet, error) {
	sn.ID = uuid.NewString()
	sn.CreatedAt = s.now()
	if sn.NetworkID == "" {
		return sn, invalid("network_id", "is required")
	}
	prefix, err := parsePrefix("cidr", sn.CIDR)
	if err != nil {
		return sn, err
	}
	sn.CIDR = prefix.String()
	if sn.GatewayIP != "" {
		gw, err := parseAddr("gateway_ip", sn.GatewayIP)
		if err != nil {
			return sn, err
		}
		if !prefix.Contains(gw) {
			return sn, invalid("gateway_ip", "%s is not inside %s", gw, prefix)
		}
		// IPv6 has no network address: Neutron defaults the gateway to the
		// subnet-router anycast address, which is the prefix's first address.
		if gw.Is4() && gw == prefix.Addr() && prefix.Bits() < prefix.Addr().BitLen()-1 {
			return sn, invalid("gateway_ip", "%s is the network address of %s", gw, prefix)
		}
		sn.GatewayIP = gw.String()
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetNetwork(ctx, sn.NetworkID); errors.Is(err, store.ErrNotFound) {
			return invalid("network_id", "network %s does not exist", sn.NetworkID)
		} else if err != nil {
			return err
		}
		existing, err := tx.ListSubnets(ctx, store.SubnetFilter{NetworkID: sn.NetworkID}, store.Page{Limit: 10000})
		if err != nil {
			return err
		}
		for _, o := range existing.Items {
			op, err := netip.ParsePrefix(o.CIDR)
			if err == nil && op.Overlaps(prefix) {
				return conflict("cidr", "%s overlaps subnet %s (%s) of the same network", prefix, o.ID, o.CIDR)
			}
		}
		tx.Changed(sn.NetworkID)
		if err := s.bottomNetworkChanged(ctx, tx, sn.NetworkID); err != nil {
			return err
		}
		return tx.InsertSubnet(ctx, sn)
	})
	return sn, err
}

// DeleteSubnet removes a subnet.
func (s *Service) DeleteSubnet(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		sn, err := tx.GetSubnet(ctx, id)
		if err != nil {
			return err
		}
		tx.Changed(sn.NetworkID)
		if err := s.bottomNetworkChanged(ctx, tx, sn.NetworkID); err != nil {
			return err
		}
		return tx.DeleteSubnet(ctx, id)
	})
}

// GetSubnet returns a subnet.
func (s *Service) GetSubnet(ctx context.Context, id string) (sn api.Subnet, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { sn, err = tx.GetSubnet(ctx, id); return err })
	return sn, err
}

// ListSubnets lists subnets.
func (s *Service) ListSubnets(ctx context.Context, f store.SubnetFilter, pg store.Page) (l api.List[api.Subnet], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListSubnets(ctx, f, pg); return err })
	return l, err
}

// ---- ports ----

// CreatePort binds a port in a pod, spreading the network there if needed.
// Concurrent calls are committed together; each succeeds or fails alone.
func (s *Service) CreatePort(ctx context.Context, req api.PortCreate) (api.Port, error) {
	p, err := s.checkPort(req)
	if err != nil {
		return p, err
	}
	s.batcher.Do(func() { go s.commitPorts() })
	r := portRequest{ctx: ctx, port: p, done: make(chan portResult, 1)}
	select {
	case s.portQueue <- r:
	case <-ctx.Done():
		return api.Port{}, ctx.Err()
	}
	// Once queued the port may be committed even if the caller goes away;
	// wait for the outcome so the answer is the truth.
	res := <-r.done
	return res.port, res.err
}

// commitPorts is the group-commit loop: it takes whatever single-port
// creates are waiting, writes each under its own savepoint in one
// transaction, and answers each with its own result.
func (s *Service) commitPorts() {
	for first := range s.portQueue {
		batch := []portRequest{first}
	drain:
		for len(batch) < maxPortBatch {
			select {
			case r := <-s.portQueue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		results := make([]portResult, len(batch))
		ctx := context.Background()
		err := s.write(ctx, func(tx *store.Tx) error {
			for i, r := range batch {
				results[i] = portResult{}
				if err := r.ctx.Err(); err != nil {
					results[i].err = err
					continue
				}
				p := r.port
				// A fresh cache per port: a failed port's rolled-back segment
				// must not look present to the next one.
				results[i].err = tx.Savepoint(ctx, func() error {
					return s.insertPort(ctx, tx, &p, map[string]*portNetwork{})
				})
				results[i].port = p
			}
			return nil
		})
		for i, r := range batch {
			if err != nil {
				results[i] = portResult{err: err}
			}
			r.done <- results[i]
		}
	}
}

// CreatePorts creates many ports in one transaction: all or none. An error
// names the failing element as ports[i].field.
func (s *Service) CreatePorts(ctx context.Context, reqs []api.PortCreate) ([]api.Port, error) {
	if len(reqs) == 0 {
		return nil, invalid("ports", "at least one port is required")
	}
	ports := make([]api.Port, len(reqs))
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

func (s *Service) checkPort(r api.PortCreate) (api.Port, error) {
	p := api.Port{ID: r.ID, NetworkID: r.NetworkID, PodID: r.PodID, DeviceOwner: r.DeviceOwner, CreatedAt: s.now()}
	if p.ID == "" {
		p.ID = uuid.NewString()
	} else if err := checkID("id", p.ID); err != nil {
		return p, err
	}
	if p.NetworkID == "" {
		return p, invalid("network_id", "is required")
	}
	if err := checkID("pod_id", p.PodID); err != nil {
		return p, err
	}
	mac, err := NormalizeMAC("mac", r.MAC)
	if err != nil {
		return p, err
	}
	p.MAC = mac
	p.IPs = make([]string, 0, len(r.IPs))
	for _, ip := range r.IPs {
		a, err := parseAddr("ips", ip)
		if err != nil {
			return p, err
		}
		p.IPs = append(p.IPs, a.String())
	}
	if len(p.DeviceOwner) > 255 {
		return p, invalid("device_owner", "must be at most 255 characters")
	}
	return p, nil
}

// portNetwork caches what a transaction learned about a network.
type portNetwork struct {
	net     api.Network
	subnets []netip.Prefix
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
	subs, err := tx.ListSubnets(ctx, store.SubnetFilter{NetworkID: n.ID}, store.Page{Limit: 10000})
	if err != nil {
		return nil, err
	}
	for _, sn := range subs.Items {
		if pf, err := netip.ParsePrefix(sn.CIDR); err == nil {
			pn.subnets = append(pn.subnets, pf)
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
		return conflict("pod_id", "network %s is local and already lives in pod %s; it cannot reach pod %s", n.ID, other, podID)
	}
	seg := drv.segment(n, podID)
	seg.CreatedAt = s.now()
	if err := tx.InsertSegment(ctx, seg); err != nil {
		return err
	}
	pn.pods[podID] = true
	return nil
}

func (s *Service) insertPort(ctx context.Context, tx *store.Tx, p *api.Port, cache map[string]*portNetwork) error {
	pn, err := s.loadPortNetwork(ctx, tx, p.NetworkID, cache)
	if err != nil {
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
			return conflict("mac", "MAC %s is already used by another port of network %s", p.MAC, pn.net.ID)
		}
		return err
	}
	tx.Changed(pn.net.ID)
	return s.bottomChanged(ctx, tx, pn.net.ID, p.PodID)
}

// inScope checks that pod is inside the network's AZ scope.
func inScope(n api.Network, pod api.Pod) error {
	if len(n.AZHints) == 0 {
		return nil
	}
	if n.External {
		if pod.ID != n.AZHints[0] {
			return conflict("pod_id", "external network %s lives in pod %s only; pod %s is outside it", n.ID, n.AZHints[0], pod.ID)
		}
		return nil
	}
	if !slices.Contains(n.AZHints, pod.AZ) {
		return conflict("pod_id", "pod %s is in availability zone %s, outside network %s's az_hints %v", pod.ID, pod.AZ, n.ID, n.AZHints)
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
		return s.bottomChanged(ctx, tx, p.NetworkID, p.PodID)
	})
}

// UpdatePort moves a port to another pod (a VM re-bound elsewhere), changes
// its IPs, or clears its duplicate mark. Each move bumps the port's mobility
// sequence; a move carrying an older sequence is refused; a MAC that moves
// DupMoves times within DupWindow is frozen where it is and reported.
func (s *Service) UpdatePort(ctx context.Context, id string, u api.PortUpdate) (api.Port, error) {
	var out api.Port
	var frozen *Error
	var ips []string
	if u.IPs != nil {
		ips = make([]string, 0, len(*u.IPs))
		for _, ip := range *u.IPs {
			a, err := parseAddr("ips", ip)
			if err != nil {
				return out, err
			}
			ips = append(ips, a.String())
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
		if err := s.bottomChanged(ctx, tx, p.NetworkID, p.PodID); err != nil {
			return err
		}
		return tx.UpdatePort(ctx, p)
	})
	if err == nil && frozen != nil {
		return out, frozen
	}
	return out, err
}

// checkIPs checks that a port's IPs lie in its network's subnets.
func (s *Service) checkIPs(ctx context.Context, tx *store.Tx, p api.Port, cache map[string]*portNetwork) error {
	pn, err := s.loadPortNetwork(ctx, tx, p.NetworkID, cache)
	if err != nil {
		return err
	}
	if len(pn.subnets) == 0 {
		return nil
	}
	for _, ip := range p.IPs {
		a := netip.MustParseAddr(ip)
		if !slices.ContainsFunc(pn.subnets, func(pf netip.Prefix) bool { return pf.Contains(a) }) {
			return invalid("ips", "%s is in no subnet of network %s", ip, p.NetworkID)
		}
	}
	return nil
}

// movePort spreads the network to the new pod (checking scope) and takes
// the old pod's segment away when the port was its last.
func (s *Service) movePort(ctx context.Context, tx *store.Tx, p *api.Port, to string) error {
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
func (s *Service) GetPort(ctx context.Context, id string) (p api.Port, err error) {
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
func (s *Service) ListPorts(ctx context.Context, f store.PortFilter, pg store.Page) (l api.List[api.Port], err error) {
	if f.MAC != "" {
		if f.MAC, err = NormalizeMAC("mac", f.MAC); err != nil {
			return l, err
		}
	}
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListPorts(ctx, f, pg); return err })
	for i := range l.Items {
		l.Items[i].Reserved = IsReserved(l.Items[i])
	}
	return l, err
}

// ---- gateways ----

// RegisterGateway records (or refreshes) an agent as a gateway of its pod.
func (s *Service) RegisterGateway(ctx context.Context, g api.Gateway) (api.Gateway, error) {
	if err := checkID("id", g.ID); err != nil {
		return g, err
	}
	if err := checkID("pod_id", g.PodID); err != nil {
		return g, err
	}
	vtep, err := parseAddr("vtep", g.VTEP)
	if err != nil {
		return g, err
	}
	g.VTEP = vtep.String()
	switch g.Backend {
	case "linux", "hwvtep":
	default:
		return g, invalid("backend", "%q must be linux or hwvtep", g.Backend)
	}
	if g.DVRMAC != "" {
		if g.DVRMAC, err = NormalizeMAC("dvr_mac", g.DVRMAC); err != nil {
			return g, err
		}
	}
	g.LastSeen = s.now()
	err = s.write(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetPod(ctx, g.PodID); errors.Is(err, store.ErrNotFound) {
			return invalid("pod_id", "pod %s does not exist", g.PodID)
		} else if err != nil {
			return err
		}
		return tx.UpsertGateway(ctx, g)
	})
	return g, err
}

// DeleteGateway removes a gateway.
func (s *Service) DeleteGateway(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error { return tx.DeleteGateway(ctx, id) })
}

// GetGateway returns a gateway.
func (s *Service) GetGateway(ctx context.Context, id string) (g api.Gateway, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { g, err = tx.GetGateway(ctx, id); return err })
	return g, err
}

// ListGateways lists gateways.
func (s *Service) ListGateways(ctx context.Context, f store.GatewayFilter, pg store.Page) (l api.List[api.Gateway], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListGateways(ctx, f, pg); return err })
	return l, err
}

// ---- desired state ----

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
