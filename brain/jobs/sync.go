package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/model"
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

// Port is a bottom port with fixed IPs; MAC "" on create lets Neutron
// choose it.
type Port struct {
	ID, Name, ProjectID, NetworkID string
	MAC, DeviceOwner, DeviceID     string
	FixedIPs                       []FixedIP
	// HostID is binding:host_id; ShadowIP the shadow tunnel IP its
	// binding:profile names (ShadowProfileKey), "" for none.
	HostID, ShadowIP string
	// Status is Neutron's (read only).
	Status string
}

// FixedIP is one IP of a port in one subnet.
type FixedIP struct{ SubnetID, IP string }

// Bottoms gives the Bottom of a pod and its configuration.
type Bottoms interface {
	Bottom(ctx context.Context, pod model.Pod) (Bottom, PodConfig, error)
}

// NamePrefix marks bottom resources made by l2span: "l2span-<top id>". The
// name is how a re-run after a crash finds what an earlier run created
// before it could record the route.
const NamePrefix = "l2span-"

func bottomName(topID string) string { return NamePrefix + topID }

// GatewayPortPrefix names the bottom port that holds a subnet's gateway IP
// in a pod: "l2span-gw-<top subnet id>".
const GatewayPortPrefix = NamePrefix + "gw-"

// GatewayOwner is the device_owner of the bottom gateway port. It is a
// plain reserved port, not a network:router_interface_distributed one,
// because l2span makes no bottom router: a router interface port with no
// router (device_id "") is one Neutron's L3/DVR code paths do not expect,
// while a plain port only holds the IP (Neutron hands it to no one else)
// and the MAC Neutron chose for it in this pod. A bottom router can adopt
// it later with add_router_interface(port_id), which keeps IP and MAC.
const GatewayOwner = "l2span:gateway"

// ReservedDHCPDeviceID is Neutron's device_id for a DHCP port that waits
// for a DHCP agent: the agent that serves the network takes this port
// (neutron/agent/linux/dhcp.py _setup_reserved_dhcp_port) instead of
// creating its own, so the pod's DHCP server answers from the IP the brain
// allocated at the top.
const ReservedDHCPDeviceID = "reserved_dhcp_port"

// realPorts counts the ports of VMs and drivers, not those the brain
// reserved for itself.
func realPorts(ps []model.Port) int {
	n := 0
	for _, p := range ps {
		if !brain.IsReserved(p) {
			n++
		}
	}
	return n
}

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
func (h NetworkSync) Run(ctx context.Context, j model.Job) error {
	v, err := h.Svc.BottomView(ctx, j.Resource, j.PodID)
	if err != nil {
		return fmt.Errorf("read top state: %w", err)
	}
	b, pc, err := h.Bottoms.Bottom(ctx, v.Pod)
	if err != nil {
		return err
	}
	if !v.Exists || realPorts(v.Ports) == 0 {
		return h.teardown(ctx, b, pc, v, j.Resource)
	}
	return h.ensure(ctx, b, pc, v)
}

// ours reports whether l2span made a bottom port (by its name), and it is
// still l2span's: a bottom router that adopted the gateway port owns it now.
func ours(p Port) bool {
	return strings.HasPrefix(p.Name, NamePrefix) && !strings.HasPrefix(p.DeviceOwner, "network:router_interface")
}

// samePort reports whether a bottom port still matches the top port.
func samePort(b Port, p model.Port) bool {
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

// teardown deletes the pod's bottom resources of the network that l2span
// made: its ports (by name), then the subnets, then the network; then
// forgets their routes and releases the pod's reserved top ports. Ports it
// did not make are never deleted: a DHCP agent's port goes with the subnet
// (Neutron deletes it); any other (a router interface, a VM someone booted
// on the bottom network) keeps the subnets and network in place, and the
// job fails at once, without retries, naming those ports: it runs again
// when they are detached and the job is retried, or when the network gets
// a port in the pod again (which re-adopts the bottom network by name).
func (h NetworkSync) teardown(ctx context.Context, b Bottom, pc PodConfig, v brain.BottomView, topID string) error {
	nets, err := b.FindNetworks(ctx, pc.project(), bottomName(topID))
	if err != nil {
		return fmt.Errorf("find bottom network: %w", err)
	}
	var foreign []string
	var keptNets []string
	for _, net := range nets {
		ports, err := b.ListPorts(ctx, net.ID)
		if err != nil {
			return fmt.Errorf("list bottom ports: %w", err)
		}
		others := 0
		for _, p := range ports {
			if !ours(p) {
				if p.DeviceOwner != "network:dhcp" {
					others++
					foreign = append(foreign, fmt.Sprintf("%s (device_owner %q, device_id %q)", p.ID, p.DeviceOwner, p.DeviceID))
				}
				continue
			}
			if err := b.DeletePort(ctx, p.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete bottom port %s: %w", p.ID, err)
			}
		}
		if others > 0 {
			keptNets = append(keptNets, net.ID)
			continue
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
	// Forget the routes of what is gone: all, or the ports' when the
	// network stays.
	gone := v.Routes
	if len(keptNets) > 0 {
		gone = slices.DeleteFunc(slices.Clone(v.Routes), func(r model.Route) bool {
			return r.ResourceType == brain.RouteNetwork || r.ResourceType == brain.RouteSubnet
		})
	}
	if err := h.Svc.DeleteRoutes(ctx, gone...); err != nil {
		return err
	}
	// The top ports reserved for the pod go last: their IPs stay taken
	// until the bottom ports that held them are gone.
	for _, kind := range []string{brain.ReservedDHCP, brain.ReservedGateway} {
		if err := h.Svc.DeleteReservedPort(ctx, kind, topID, v.Pod.ID); err != nil {
			return fmt.Errorf("release the %s port of pod %s: %w", kind, v.Pod.ID, err)
		}
	}
	if len(foreign) > 0 {
		return Permanent(fmt.Errorf("bottom network %s kept: ports not made by l2span are on it: %s; detach or delete them, then retry the job",
			strings.Join(keptNets, ", "), strings.Join(foreign, ", ")))
	}
	return nil
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
	// ShadowTunnelIP is the pod's shadow tunnel IP: the virtual IP its
	// l2span gateways hold for the pod's compute hosts. Set, every port of
	// an overlay network in another pod gets a shadow port in this pod,
	// bound to ShadowHost with this IP in its binding profile (the pod's
	// Neutron loads the l2span_bottom mechanism driver).
	ShadowTunnelIP string `json:"shadow_tunnel_ip,omitempty"`
	// ShadowHost is the binding host of the shadow ports (default
	// "l2span-gateway").
	ShadowHost string `json:"shadow_host,omitempty"`
	// TimeoutSeconds bounds one Neutron call (default 30).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

func (c PodConfig) project() string {
	if c.ProjectID == "" && c.Auth == "noauth" {
		return "l2span"
	}
	return c.ProjectID
}

func (c PodConfig) shadowHost() string {
	if c.ShadowHost == "" {
		return DefaultShadowHost
	}
	return c.ShadowHost
}

func (c PodConfig) physnet(top string) string {
	if b, ok := c.Physnets[top]; ok {
		return b
	}
	return top
}
