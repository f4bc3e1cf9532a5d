// Package model holds the brain's domain rows: what the store keeps and the
// service reasons about. It knows nothing of the wire (brain/api) or of SQL.
package model

import "time"

// Network types (type drivers).
const (
	TypeLocal          = "local"
	TypeSharedVLAN     = "shared_vlan"
	TypeSharedVXLAN    = "shared_vxlan"
	TypeMixedVLANVXLAN = "mixed_vlan_vxlan"
)

// Bottom segment network types.
const (
	SegmentVLAN  = "vlan"
	SegmentVXLAN = "vxlan"
	SegmentFlat  = "flat"
	SegmentLocal = "local"
)

// AllNetworks is the change-log key of a change that touches every pod's
// state (e.g. a pod's dvr_base_mac).
const AllNetworks = "*"

// Pod is one bottom OpenStack cloud in exactly one availability zone.
type Pod struct {
	ID, AZ, Region string
	// DVRBaseMAC is the pod's Neutron dvr_base_mac prefix, stored as
	// "aa:bb:cc:dd:ee:ff/len".
	DVRBaseMAC string
	NeutronURL string
	CreatedAt  time.Time
}

// Network is a top network.
type Network struct {
	ID, Name, Type string
	AZHints        []string
	External       bool
	// SegmentationID is the allocated VLAN id or overlay VNI; 0 for local.
	SegmentationID  int
	PhysicalNetwork string
	GatewayPerPod   bool
	// ManagedBy names the system that owns the network ("neutron" for the
	// ML2 driver's); "" for networks made through the API by hand.
	ManagedBy string
	// ProjectID is the Neutron project (tenant) owning the network; Shared
	// lets ports of other projects join it.
	ProjectID string
	Shared    bool
	// Segments are the network's per-pod segments, ordered by pod, when the
	// reader asked for them.
	Segments  []Segment
	CreatedAt time.Time
}

// Segment is the piece of a top network inside one pod.
type Segment struct {
	NetworkID, PodID string
	NetworkType      string
	SegmentationID   int
	// PhysicalNetwork is stored as bottom_physical_network#pod_id.
	PhysicalNetwork string
	// PodSide is the pod's own tunnel endpoints on the segment, read back
	// from the pod's Neutron by the network's sync job.
	PodSide   PodSide
	CreatedAt time.Time
}

// PodSide is what a pod's Neutron says about a VXLAN segment there: the
// tunneling IPs of the hosts with ports on it (sorted) and, for each port
// bound to such a host, its MAC and that host's tunneling IP (by MAC). Its
// gateway replicates BUM traffic to VTEPs and sends a port's frames to its
// host. Empty until a sync job read it.
type PodSide struct {
	VTEPs []string      `json:"vteps,omitempty"`
	Ports []PodSidePort `json:"ports,omitempty"`
}

// PodSidePort is a port of a pod and the VTEP of the host it is bound on.
type PodSidePort struct {
	MAC  string `json:"mac"`
	VTEP string `json:"vtep"`
}

// Empty reports whether nothing is known.
func (p PodSide) Empty() bool { return len(p.VTEPs) == 0 && len(p.Ports) == 0 }

// Subnet of a top network.
type Subnet struct {
	ID, NetworkID, CIDR, GatewayIP string
	CreatedAt                      time.Time
}

// Port is a port bound in one pod.
type Port struct {
	ID, NetworkID, PodID, MAC string
	IPs                       []string
	DeviceOwner               string
	// ProjectID is the Neutron project of the port.
	ProjectID string
	// MobilitySeq grows with every move of the port to another pod.
	MobilitySeq int64
	// Duplicate freezes a MAC that moved too often.
	Duplicate bool
	// Reserved marks a port the brain holds for itself in its pod; the
	// service sets it, the store does not keep it.
	Reserved  bool
	CreatedAt time.Time
}

// Gateway is an agent registered as a gateway of its pod.
type Gateway struct {
	ID, PodID, VTEP, Backend, DVRMAC string
	PopulateMACs                     bool
	LastSeen                         time.Time
	Revision                         int64
	// Status is the agent's last report of itself as the document it sent
	// (nil if never): the brain keeps it and hands it back, unread.
	Status []byte
}

// Job states.
const (
	JobNew     = "new"
	JobRunning = "running"
	JobSuccess = "success"
	JobFailed  = "failed"
)

// Job is a durable unit of work on a bottom cloud, unique per (type,
// resource, pod).
type Job struct {
	ID, Type, Resource, PodID, State string
	Attempts                         int
	LastError                        string
	NextRunAt                        *time.Time
	LeaseOwner                       string
	LeaseUntil                       *time.Time
	Rerun                            bool
	CreatedAt, UpdatedAt             time.Time
}

// Route maps a top resource to the bottom resource made for it in one pod.
type Route struct {
	TopID, PodID, ResourceType, BottomID string
	// NetworkID is the top network the resource belongs to.
	NetworkID string
	CreatedAt time.Time
}

// Page selects a page of a list ordered by id: ids after Marker, at most
// Limit (0: the store's default).
type Page struct {
	Limit  int
	Marker string
}

// List is a page of results; Next is the marker of the following page, ""
// on the last.
type List[T any] struct {
	Items []T
	Next  string
}

// PodFilter filters pods; empty fields match everything.
type PodFilter struct{ AZ string }

// NetworkFilter filters networks.
type NetworkFilter struct {
	Name, Type, ManagedBy string
	// ProjectIDs narrows to networks of these projects (empty: all).
	ProjectIDs []string
}

// SubnetFilter filters subnets.
type SubnetFilter struct{ NetworkID string }

// PortFilter filters ports.
type PortFilter struct {
	NetworkID, PodID, MAC string
	Duplicate             bool
	// ProjectIDs narrows to ports of these projects (empty: all).
	ProjectIDs []string
}

// GatewayFilter filters gateways.
type GatewayFilter struct{ PodID string }

// JobFilter filters jobs.
type JobFilter struct{ Type, State, PodID, Resource string }

// RouteFilter filters routes.
type RouteFilter struct{ TopID, PodID, NetworkID, ResourceType string }

// Token roles.
const (
	RoleAdmin  = "admin"
	RoleDriver = "driver"
	RoleAgent  = "agent"
	RoleReader = "reader"
)

// Token is an API credential. The store keeps only a hash of its secret.
type Token struct {
	ID string
	// SecretHash is the SHA-256 of the secret part, hex.
	SecretHash string
	Role       string
	// PodID and GatewayID bind an agent token to one gateway of one pod.
	PodID, GatewayID string
	// Projects scope a driver token to these Neutron projects (empty: all).
	Projects    []string
	Description string
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
}
