package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
)

// ErrNotFound is what a Bottom returns for a resource that does not exist.
var ErrNotFound = errors.New("bottom resource not found")

// Bottom is one pod's Neutron as the sync job needs it: the narrow seam
// that a fake replaces in unit tests. Creates take lists so an
// implementation can use Neutron's bulk create (one call for many).
type Bottom interface {
	FindNetworks(ctx context.Context, projectID, name string) ([]Network, error)
	CreateNetwork(ctx context.Context, spec Network) (Network, error)
	DeleteNetwork(ctx context.Context, id string) error
	ListSubnets(ctx context.Context, networkID string) ([]Subnet, error)
	CreateSubnets(ctx context.Context, specs []Subnet) ([]Subnet, error)
	DeleteSubnet(ctx context.Context, id string) error
	ListPorts(ctx context.Context, networkID string) ([]Port, error)
	CreatePorts(ctx context.Context, specs []Port) ([]Port, error)
	DeletePort(ctx context.Context, id string) error
}

// Network is a bottom network; the provider fields are empty when Neutron
// is to choose the segment.
type Network struct {
	ID, Name, ProjectID string
	NetworkType         string
	PhysicalNetwork     string
	SegmentationID      int
}

// Subnet is a bottom subnet. GatewayIP "" means no gateway.
type Subnet struct {
	ID, Name, ProjectID, NetworkID string
	CIDR, GatewayIP                string
	EnableDHCP                     bool
}

// Port is a bottom port with fixed MAC and IPs.
type Port struct {
	ID, Name, ProjectID, NetworkID string
	MAC, DeviceOwner               string
	FixedIPs                       []FixedIP
}

// FixedIP is one IP of a port in one subnet.
type FixedIP struct{ SubnetID, IP string }

// Bottoms gives the Bottom of a pod and its configuration.
type Bottoms interface {
	Bottom(ctx context.Context, pod api.Pod) (Bottom, PodConfig, error)
}

// NamePrefix marks bottom resources made by l2span: "l2span-<top id>". The
// name is how a re-run after a crash finds what an earlier run created
// before it could record the route.
const NamePrefix = "l2span-"

func bottomName(topID string) string { return NamePrefix + topID }

// NetworkSync is the handler of brain.JobNetworkSync: it makes the bottom
// network of a top network in one pod match the top, level-triggered. With
// ports in the pod: the network (provider attributes by type), its subnets
// (same CIDR and gateway IP in every pod) and the pod's ports (MAC and IPs
// allocated at the top). With none, or the network deleted at the top: the
// pod's bottom ports, subnets and network are deleted, in that order.
type NetworkSync struct {
	Svc     *brain.Service
	Bottoms Bottoms
}

// Run implements Handler.
func (h NetworkSync) Run(ctx context.Context, j api.Job) error {
	v, err := h.Svc.BottomView(ctx, j.Resource, j.PodID)
	if err != nil {
		return fmt.Errorf("read top state: %w", err)
	}
	b, pc, err := h.Bottoms.Bottom(ctx, v.Pod)
	if err != nil {
		return err
	}
	if !v.Exists || len(v.Ports) == 0 {
		return h.teardown(ctx, b, pc, v, j.Resource)
	}
	return h.ensure(ctx, b, pc, v)
}

func (h NetworkSync) ensure(ctx context.Context, b Bottom, pc PodConfig, v brain.BottomView) error {
	n := v.Network
	pod := v.Pod.ID
	nets, err := b.FindNetworks(ctx, pc.project(), bottomName(n.ID))
	if err != nil {
		return fmt.Errorf("find bottom network: %w", err)
	}
	var net Network
	fresh := len(nets) == 0
	if fresh {
		spec := Network{Name: bottomName(n.ID), ProjectID: pc.project()}
		switch n.Type {
		case api.TypeSharedVLAN:
			phys := strings.SplitN(v.Segment.PhysicalNetwork, "#", 2)[0]
			if phys == "" {
				phys = n.PhysicalNetwork
			}
			spec.NetworkType, spec.PhysicalNetwork, spec.SegmentationID = api.SegmentVLAN, pc.physnet(phys), n.SegmentationID
		case api.TypeSharedVXLAN:
			spec.NetworkType, spec.SegmentationID = api.SegmentVXLAN, n.SegmentationID
		}
		if net, err = b.CreateNetwork(ctx, spec); err != nil {
			return fmt.Errorf("create bottom network: %w", err)
		}
	} else {
		slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.ID, b.ID) })
		net = nets[0]
	}
	routes := []api.Route{{TopID: n.ID, PodID: pod, ResourceType: brain.RouteNetwork, BottomID: net.ID, NetworkID: n.ID}}

	if n.Type == api.TypeMixedVLANVXLAN && (net.NetworkType == api.SegmentVLAN || net.NetworkType == api.SegmentVXLAN) &&
		(v.Segment.NetworkType != net.NetworkType || v.Segment.SegmentationID != net.SegmentationID) {
		rep := api.SegmentReport{PodID: pod, NetworkType: net.NetworkType, SegmentationID: net.SegmentationID, PhysicalNetwork: net.PhysicalNetwork}
		if _, err := h.Svc.ReportSegment(ctx, n.ID, rep); err != nil {
			return fmt.Errorf("record bottom segment %s %d: %w", net.NetworkType, net.SegmentationID, err)
		}
	}

	// What exists: nothing on a network this run created.
	var haveSubs []Subnet
	var havePorts []Port
	if !fresh {
		if haveSubs, err = b.ListSubnets(ctx, net.ID); err != nil {
			return fmt.Errorf("list bottom subnets: %w", err)
		}
		if havePorts, err = b.ListPorts(ctx, net.ID); err != nil {
			return fmt.Errorf("list bottom ports: %w", err)
		}
	}

	// Ports that are no longer wanted (or differ) go first: they hold IPs
	// and MACs that the ports to create may need.
	wantPorts := map[string]api.Port{}
	for _, p := range v.Ports {
		wantPorts[bottomName(p.ID)] = p
	}
	portByName := map[string]Port{}
	for _, p := range havePorts {
		if !strings.HasPrefix(p.Name, NamePrefix) {
			continue // not ours (a bottom DHCP agent's or router's port)
		}
		want, ok := wantPorts[p.Name]
		_, dup := portByName[p.Name]
		if !ok || dup || !samePort(p, want) {
			if err := b.DeletePort(ctx, p.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom port %s: %w", p.ID, err)
			}
			continue
		}
		portByName[p.Name] = p
	}

	wantSubs := map[string]api.Subnet{}
	for _, s := range v.Subnets {
		wantSubs[bottomName(s.ID)] = s
	}
	subByName := map[string]Subnet{}
	for _, s := range haveSubs {
		if !strings.HasPrefix(s.Name, NamePrefix) {
			continue
		}
		want, ok := wantSubs[s.Name]
		_, dup := subByName[s.Name]
		if !ok || dup || s.CIDR != want.CIDR {
			if err := b.DeleteSubnet(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom subnet %s: %w", s.ID, err)
			}
			continue
		}
		subByName[s.Name] = s
	}
	var newSubs []Subnet
	for _, s := range v.Subnets {
		if _, ok := subByName[bottomName(s.ID)]; !ok {
			newSubs = append(newSubs, Subnet{Name: bottomName(s.ID), ProjectID: pc.project(), NetworkID: net.ID,
				CIDR: s.CIDR, GatewayIP: s.GatewayIP, EnableDHCP: true})
		}
	}
	if len(newSubs) > 0 {
		made, err := b.CreateSubnets(ctx, newSubs)
		if err != nil {
			return fmt.Errorf("create bottom subnets: %w", err)
		}
		for _, s := range made {
			subByName[s.Name] = s
		}
	}
	subnetFor := func(ip string) (string, error) {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return "", err
		}
		for _, s := range subByName {
			if pf, err := netip.ParsePrefix(s.CIDR); err == nil && pf.Contains(a) {
				return s.ID, nil
			}
		}
		return "", fmt.Errorf("IP %s is in no subnet of network %s", ip, n.ID)
	}
	for _, s := range v.Subnets {
		if bs, ok := subByName[bottomName(s.ID)]; ok {
			routes = append(routes, api.Route{TopID: s.ID, PodID: pod, ResourceType: brain.RouteSubnet, BottomID: bs.ID, NetworkID: n.ID})
		}
	}

	var newPorts []Port
	for _, p := range v.Ports {
		if _, ok := portByName[bottomName(p.ID)]; ok {
			continue
		}
		bp := Port{Name: bottomName(p.ID), ProjectID: pc.project(), NetworkID: net.ID, MAC: p.MAC, DeviceOwner: p.DeviceOwner}
		for _, ip := range p.IPs {
			sid, err := subnetFor(ip)
			if err != nil {
				return Permanent(fmt.Errorf("port %s: %w", p.ID, err))
			}
			bp.FixedIPs = append(bp.FixedIPs, FixedIP{SubnetID: sid, IP: ip})
		}
		newPorts = append(newPorts, bp)
	}
	if len(newPorts) > 0 {
		made, err := b.CreatePorts(ctx, newPorts)
		if err != nil {
			return fmt.Errorf("create bottom ports: %w", err)
		}
		for _, p := range made {
			portByName[p.Name] = p
		}
	}
	for _, p := range v.Ports {
		if bp, ok := portByName[bottomName(p.ID)]; ok {
			routes = append(routes, api.Route{TopID: p.ID, PodID: pod, ResourceType: brain.RoutePort, BottomID: bp.ID, NetworkID: n.ID})
		}
	}

	// Record the routes; forget those of resources gone from the top.
	var stale []api.Route
	for _, r := range v.Routes {
		if !slices.ContainsFunc(routes, func(x api.Route) bool { return x.TopID == r.TopID && x.ResourceType == r.ResourceType }) {
			stale = append(stale, r)
		}
	}
	if err := h.Svc.DeleteRoutes(ctx, stale...); err != nil {
		return err
	}
	return h.Svc.PutRoutes(ctx, routes...)
}

// samePort reports whether a bottom port still matches the top port.
func samePort(b Port, p api.Port) bool {
	if !strings.EqualFold(b.MAC, p.MAC) || len(b.FixedIPs) != len(p.IPs) {
		return false
	}
	for _, f := range b.FixedIPs {
		if !slices.Contains(p.IPs, f.IP) {
			return false
		}
	}
	return true
}

// teardown deletes the pod's bottom resources of the network: ports, then
// subnets, then the network; then forgets their routes.
func (h NetworkSync) teardown(ctx context.Context, b Bottom, pc PodConfig, v brain.BottomView, topID string) error {
	nets, err := b.FindNetworks(ctx, pc.project(), bottomName(topID))
	if err != nil {
		return fmt.Errorf("find bottom network: %w", err)
	}
	for _, net := range nets {
		ports, err := b.ListPorts(ctx, net.ID)
		if err != nil {
			return fmt.Errorf("list bottom ports: %w", err)
		}
		for _, p := range ports {
			if err := b.DeletePort(ctx, p.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom port %s: %w", p.ID, err)
			}
		}
		subs, err := b.ListSubnets(ctx, net.ID)
		if err != nil {
			return fmt.Errorf("list bottom subnets: %w", err)
		}
		for _, s := range subs {
			if err := b.DeleteSubnet(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom subnet %s: %w", s.ID, err)
			}
		}
		if err := b.DeleteNetwork(ctx, net.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete bottom network %s: %w", net.ID, err)
		}
	}
	return h.Svc.DeleteRoutes(ctx, v.Routes...)
}

// PodConfig is how the brain reaches one pod's Neutron.
type PodConfig struct {
	// Auth is "noauth" (tests; Endpoint is Neutron), "password" or
	// "application_credential" (Keystone at AuthURL).
	Auth string `json:"auth"`
	// Endpoint is the Neutron URL; default: the pod's neutron_url. With
	// Keystone it overrides the catalog.
	Endpoint                    string `json:"endpoint,omitempty"`
	AuthURL                     string `json:"auth_url,omitempty"`
	Region                      string `json:"region,omitempty"`
	Username                    string `json:"username,omitempty"`
	Password                    string `json:"password,omitempty"`
	UserDomainName              string `json:"user_domain_name,omitempty"`
	ProjectName                 string `json:"project_name,omitempty"`
	ProjectDomainName           string `json:"project_domain_name,omitempty"`
	ApplicationCredentialID     string `json:"application_credential_id,omitempty"`
	ApplicationCredentialSecret string `json:"application_credential_secret,omitempty"`
	// ProjectID owns the bottom resources (default "l2span"; with Keystone,
	// empty means the token's project).
	ProjectID string `json:"project_id,omitempty"`
	// Physnets maps a top physical network to the pod's bottom one
	// (default: the same name).
	Physnets map[string]string `json:"physnets,omitempty"`
	// TimeoutSeconds bounds one Neutron call (default 30).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

func (c PodConfig) project() string {
	if c.ProjectID == "" && c.Auth == "noauth" {
		return "l2span"
	}
	return c.ProjectID
}

func (c PodConfig) physnet(top string) string {
	if b, ok := c.Physnets[top]; ok {
		return b
	}
	return top
}
