package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/model"
)

// ensureRun is one level-triggered pass that makes a pod's bottom network
// match the top: each step reads and fills in what the next needs.
type ensureRun struct {
	h   NetworkSync
	b   Bottom
	pc  PodConfig
	v   brain.BottomView
	n   model.Network
	pod string

	gwFor      map[string]string // top subnet id -> gateway IP in this pod ("" for none)
	net        Network           // the bottom network
	fresh      bool              // created by this run: nothing to read back
	portByName map[string]Port   // bottom ports kept or made, by name
	subByName  map[string]Subnet // bottom subnets kept or made, by name
	routes     []model.Route
}

func (h NetworkSync) ensure(ctx context.Context, b Bottom, pc PodConfig, v brain.BottomView) error {
	r := &ensureRun{h: h, b: b, pc: pc, v: v, n: v.Network, pod: v.Pod.ID,
		portByName: map[string]Port{}, subByName: map[string]Subnet{}}
	if err := r.reservePorts(ctx); err != nil {
		return err
	}
	if err := r.network(ctx); err != nil {
		return err
	}
	var haveSubs []Subnet
	var havePorts []Port
	if !r.fresh {
		var err error
		if haveSubs, err = b.ListSubnets(ctx, r.net.ID); err != nil {
			return fmt.Errorf("list bottom subnets: %w", err)
		}
		if havePorts, err = b.ListPorts(ctx, r.net.ID); err != nil {
			return fmt.Errorf("list bottom ports: %w", err)
		}
	}
	// Ports that are no longer wanted (or differ) go first: they hold IPs
	// and MACs that the ports to create may need.
	if err := r.prunePorts(ctx, havePorts); err != nil {
		return err
	}
	if err := r.subnets(ctx, haveSubs); err != nil {
		return err
	}
	if err := r.ports(ctx); err != nil {
		return err
	}
	if err := r.recordPodSide(ctx, havePorts); err != nil {
		return err
	}
	return r.recordRoutes(ctx)
}

// reservePorts reserves the pod's DHCP port (its IPs are allocated at the
// top, so that no two pods' DHCP servers share one) and, with
// gateway_per_pod, its gateway port, and works out each subnet's gateway
// IP in this pod: the subnet's own (anycast), or the gateway port's.
func (r *ensureRun) reservePorts(ctx context.Context) error {
	v := &r.v
	if len(v.Subnets) > 0 {
		dhcp, err := r.h.Svc.ReservePort(ctx, brain.ReservedDHCP, r.n.ID, r.pod)
		if err != nil {
			return fmt.Errorf("reserve the DHCP port of pod %s: %w", r.pod, err)
		}
		v.Ports = append(slices.DeleteFunc(v.Ports, func(p model.Port) bool { return p.ID == dhcp.ID }), dhcp)
	}
	r.gwFor = map[string]string{}
	for _, s := range v.Subnets {
		r.gwFor[s.ID] = s.GatewayIP
	}
	if !r.n.GatewayPerPod || !slices.ContainsFunc(v.Subnets, func(s model.Subnet) bool { return s.GatewayIP != "" }) {
		return nil
	}
	gw, err := r.h.Svc.ReservePort(ctx, brain.ReservedGateway, r.n.ID, r.pod)
	if err != nil {
		return fmt.Errorf("reserve the gateway port of pod %s: %w", r.pod, err)
	}
	v.Ports = append(slices.DeleteFunc(v.Ports, func(p model.Port) bool { return p.ID == gw.ID }), gw)
	for _, s := range v.Subnets {
		r.gwFor[s.ID] = ""
		pf, err := netip.ParsePrefix(s.CIDR)
		if err != nil || s.GatewayIP == "" {
			continue
		}
		for _, ip := range gw.IPs {
			if a, err := netip.ParseAddr(ip); err == nil && pf.Contains(a) {
				r.gwFor[s.ID] = ip
			}
		}
	}
	return nil
}

// network finds the bottom network by name or creates it (with the
// provider attributes of the type), and for a mixed network records the
// segment the pod chose.
func (r *ensureRun) network(ctx context.Context) error {
	n, pc := r.n, r.pc
	nets, err := r.b.FindNetworks(ctx, pc.project(), bottomName(n.ID))
	if err != nil {
		return fmt.Errorf("find bottom network: %w", err)
	}
	r.fresh = len(nets) == 0
	if r.fresh {
		spec := Network{Name: bottomName(n.ID), ProjectID: pc.project()}
		switch n.Type {
		case model.TypeSharedVLAN:
			phys := strings.SplitN(r.v.Segment.PhysicalNetwork, "#", 2)[0]
			if phys == "" {
				phys = n.PhysicalNetwork
			}
			spec.NetworkType, spec.PhysicalNetwork, spec.SegmentationID = model.SegmentVLAN, pc.physnet(phys), n.SegmentationID
		case model.TypeSharedVXLAN:
			spec.NetworkType, spec.SegmentationID = model.SegmentVXLAN, n.SegmentationID
		}
		if r.net, err = r.b.CreateNetwork(ctx, spec); err != nil {
			return fmt.Errorf("create bottom network: %w", err)
		}
	} else {
		slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.ID, b.ID) })
		r.net = nets[0]
	}
	r.routes = append(r.routes, model.Route{TopID: n.ID, PodID: r.pod, ResourceType: brain.RouteNetwork, BottomID: r.net.ID, NetworkID: n.ID})

	net, seg := r.net, r.v.Segment
	if n.Type == model.TypeMixedVLANVXLAN && (net.NetworkType == model.SegmentVLAN || net.NetworkType == model.SegmentVXLAN) &&
		(seg.NetworkType != net.NetworkType || seg.SegmentationID != net.SegmentationID) {
		rep := brain.SegmentReport{PodID: r.pod, NetworkType: net.NetworkType, SegmentationID: net.SegmentationID, PhysicalNetwork: net.PhysicalNetwork}
		if _, err := r.h.Svc.ReportSegment(ctx, n.ID, rep); err != nil {
			return fmt.Errorf("record bottom segment %s %d: %w", net.NetworkType, net.SegmentationID, err)
		}
	}
	return nil
}

// prunePorts deletes the bottom ports l2span made that are no longer
// wanted, differ from the top, or are duplicates, and keeps the rest.
// Wanted: the pod's top ports (DHCP included) by name, and per subnet with
// a gateway the port holding the gateway IP (any MAC).
func (r *ensureRun) prunePorts(ctx context.Context, have []Port) error {
	want := map[string]func(Port) bool{}
	for _, p := range r.v.Ports {
		want[bottomName(p.ID)] = func(b Port) bool { return samePort(b, p) }
	}
	for _, p := range r.wantShadows() {
		want[shadowName(p.ID)] = func(b Port) bool { return r.sameShadow(b, p) }
	}
	for _, s := range r.v.Subnets {
		if s.GatewayIP != "" && !r.n.GatewayPerPod {
			gw := s.GatewayIP
			want[GatewayPortPrefix+s.ID] = func(b Port) bool {
				return len(b.FixedIPs) == 1 && b.FixedIPs[0].IP == gw
			}
		}
	}
	for _, p := range have {
		if !ours(p) {
			continue // not ours (a bottom DHCP agent's or router's port)
		}
		match, ok := want[p.Name]
		_, dup := r.portByName[p.Name]
		if !ok || dup || !match(p) {
			if err := r.b.DeletePort(ctx, p.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom port %s: %w", p.ID, err)
			}
			continue
		}
		r.portByName[p.Name] = p
	}
	return nil
}

// subnets deletes the bottom subnets l2span made that are gone from the
// top or changed CIDR, and creates the missing ones in one call.
func (r *ensureRun) subnets(ctx context.Context, have []Subnet) error {
	want := map[string]model.Subnet{}
	for _, s := range r.v.Subnets {
		want[bottomName(s.ID)] = s
	}
	for _, s := range have {
		if !strings.HasPrefix(s.Name, NamePrefix) {
			continue
		}
		w, ok := want[s.Name]
		_, dup := r.subByName[s.Name]
		if !ok || dup || s.CIDR != w.CIDR {
			if err := r.b.DeleteSubnet(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom subnet %s: %w", s.ID, err)
			}
			continue
		}
		r.subByName[s.Name] = s
	}
	var specs []Subnet
	for _, s := range r.v.Subnets {
		if _, ok := r.subByName[bottomName(s.ID)]; !ok {
			specs = append(specs, Subnet{Name: bottomName(s.ID), ProjectID: r.pc.project(), NetworkID: r.net.ID,
				CIDR: s.CIDR, GatewayIP: r.gwFor[s.ID], EnableDHCP: true})
		}
	}
	if len(specs) > 0 {
		made, err := r.b.CreateSubnets(ctx, specs)
		if err != nil {
			return fmt.Errorf("create bottom subnets: %w", err)
		}
		for _, s := range made {
			r.subByName[s.Name] = s
		}
	}
	for _, s := range r.v.Subnets {
		if bs, ok := r.subByName[bottomName(s.ID)]; ok {
			r.routes = append(r.routes, model.Route{TopID: s.ID, PodID: r.pod, ResourceType: brain.RouteSubnet, BottomID: bs.ID, NetworkID: r.n.ID})
		}
	}
	return nil
}

// subnetFor is the bottom subnet that holds ip.
func (r *ensureRun) subnetFor(ip string) (string, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", err
	}
	for _, s := range r.subByName {
		if pf, err := netip.ParsePrefix(s.CIDR); err == nil && pf.Contains(a) {
			return s.ID, nil
		}
	}
	return "", fmt.Errorf("IP %s is in no subnet of network %s", ip, r.n.ID)
}

// ports creates, in one call, the missing bottom ports: the pod's top
// ports, and the anycast gateway port of each subnet with a gateway.
func (r *ensureRun) ports(ctx context.Context) error {
	n, pod := r.n, r.pod
	var specs []Port
	for _, p := range r.v.Ports {
		if _, ok := r.portByName[bottomName(p.ID)]; ok {
			continue
		}
		bp := Port{Name: bottomName(p.ID), ProjectID: r.pc.project(), NetworkID: r.net.ID, MAC: p.MAC, DeviceOwner: p.DeviceOwner}
		switch p.ID {
		case brain.ReservedPortID(brain.ReservedDHCP, n.ID, pod):
			// The brain's DHCP port of the pod (a DHCP port a caller made
			// at the top is created as it is).
			bp.DeviceID = ReservedDHCPDeviceID
		case brain.ReservedPortID(brain.ReservedGateway, n.ID, pod):
			bp.DeviceOwner = GatewayOwner // a plain reserved port, as below
		}
		for _, ip := range p.IPs {
			sid, err := r.subnetFor(ip)
			if err != nil {
				return Permanent(fmt.Errorf("port %s: %w", p.ID, err))
			}
			bp.FixedIPs = append(bp.FixedIPs, FixedIP{SubnetID: sid, IP: ip})
		}
		specs = append(specs, bp)
	}
	// The anycast gateway: in each pod a port of its own holds the
	// subnet's gateway IP, with a MAC this pod's Neutron chooses.
	for _, s := range r.v.Subnets {
		if s.GatewayIP == "" || n.GatewayPerPod {
			continue
		}
		if _, ok := r.portByName[GatewayPortPrefix+s.ID]; ok {
			continue
		}
		sid, err := r.subnetFor(s.GatewayIP)
		if err != nil {
			return Permanent(fmt.Errorf("gateway of subnet %s: %w", s.ID, err))
		}
		specs = append(specs, Port{Name: GatewayPortPrefix + s.ID, ProjectID: r.pc.project(), NetworkID: r.net.ID,
			DeviceOwner: GatewayOwner, FixedIPs: []FixedIP{{SubnetID: sid, IP: s.GatewayIP}}})
	}
	// Shadow ports of the other pods' ports go in the same bulk call.
	specs = append(specs, r.shadowSpecs()...)
	if len(specs) > 0 {
		made, err := r.b.CreatePorts(ctx, specs)
		if err != nil {
			return fmt.Errorf("create bottom ports: %w", err)
		}
		for _, p := range made {
			r.portByName[p.Name] = p
		}
	}
	for _, p := range r.v.Ports {
		if bp, ok := r.portByName[bottomName(p.ID)]; ok {
			r.routes = append(r.routes, model.Route{TopID: p.ID, PodID: pod, ResourceType: brain.RoutePort, BottomID: bp.ID, NetworkID: n.ID})
		}
	}
	for _, s := range r.v.Subnets {
		if bp, ok := r.portByName[GatewayPortPrefix+s.ID]; ok {
			r.routes = append(r.routes, model.Route{TopID: s.ID, PodID: pod, ResourceType: brain.RouteGatewayPort, BottomID: bp.ID, NetworkID: n.ID})
		}
	}
	return nil
}

// recordRoutes records the routes and forgets those of resources gone from
// the top.
func (r *ensureRun) recordRoutes(ctx context.Context) error {
	var stale []model.Route
	for _, old := range r.v.Routes {
		if !slices.ContainsFunc(r.routes, func(x model.Route) bool { return x.TopID == old.TopID && x.ResourceType == old.ResourceType }) {
			stale = append(stale, old)
		}
	}
	if err := r.h.Svc.DeleteRoutes(ctx, stale...); err != nil {
		return err
	}
	return r.h.Svc.PutRoutes(ctx, r.routes...)
}
