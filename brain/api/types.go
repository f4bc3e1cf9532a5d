// Package api holds the brain's wire types and a typed Go client. The agent
// and l2spanctl reach the brain only through this package.
package api

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

// Pod is one bottom OpenStack cloud in exactly one availability zone.
type Pod struct {
	ID     string `json:"id"`
	AZ     string `json:"az"`
	Region string `json:"region,omitempty"`
	// DVRBaseMAC is the pod's Neutron dvr_base_mac prefix, e.g. "fa:16:3f:00:00:00/24".
	DVRBaseMAC string `json:"dvr_base_mac,omitempty"`
	// NeutronURL is the pod's bottom Neutron endpoint.
	NeutronURL string    `json:"neutron_url,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Network is a top network.
type Network struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	AZHints  []string `json:"az_hints"`
	External bool     `json:"external,omitempty"`
	// SegmentationID is the allocated VLAN id (shared_vlan) or overlay VNI
	// (shared_vxlan, mixed_vlan_vxlan); 0 for local.
	SegmentationID int `json:"segmentation_id,omitempty"`
	// PhysicalNetwork is the physnet a shared_vlan id was allocated on.
	PhysicalNetwork string `json:"physical_network,omitempty"`
	// GatewayPerPod gives each pod its own gateway IP (Tricircle's way)
	// instead of the same (anycast) gateway IP in every pod.
	GatewayPerPod bool `json:"gateway_per_pod,omitempty"`
	// ManagedBy names the system that owns the network ("neutron").
	ManagedBy string `json:"managed_by,omitempty"`
	// ProjectID is the Neutron project owning the network; a Shared
	// network takes ports of every project.
	ProjectID string    `json:"project_id,omitempty"`
	Shared    bool      `json:"shared,omitempty"`
	Segments  []Segment `json:"segments,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// NetworkCreate is the body of POST /v1/networks.
type NetworkCreate struct {
	// ID is optional: a client that has its own id (Neutron's) passes it,
	// a lowercase UUID; 409 if a network has it already.
	ID        string   `json:"id,omitempty"`
	ManagedBy string   `json:"managed_by,omitempty"`
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	AZHints   []string `json:"az_hints"`
	External  bool     `json:"external,omitempty"`
	// SegmentationID requests a specific VLAN id or VNI (admin).
	SegmentationID  int    `json:"segmentation_id,omitempty"`
	PhysicalNetwork string `json:"physical_network,omitempty"`
	// GatewayPerPod: each pod's bottom subnet gets its own gateway IP,
	// allocated at the top, instead of the subnet's. Not for local or
	// external networks (one pod); cannot change after create.
	GatewayPerPod bool   `json:"gateway_per_pod,omitempty"`
	ProjectID     string `json:"project_id,omitempty"`
	Shared        bool   `json:"shared,omitempty"`
}

// NetworkUpdate is the body of PUT /v1/networks/{id}. Only the name may change;
// az_hints is accepted only when equal to the current value.
type NetworkUpdate struct {
	Name    *string   `json:"name,omitempty"`
	AZHints *[]string `json:"az_hints,omitempty"`
	// External switches the network to or from external, with az_hints
	// (exactly one pod id when external, AZs when not).
	External *bool `json:"external,omitempty"`
}

// Segment is the piece of a top network inside one pod.
type Segment struct {
	NetworkID      string `json:"network_id"`
	PodID          string `json:"pod_id"`
	NetworkType    string `json:"network_type"`
	SegmentationID int    `json:"segmentation_id,omitempty"`
	// PhysicalNetwork is stored as bottom_physical_network#pod_id.
	PhysicalNetwork string    `json:"physical_network,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
}

// SegmentReport is the body of POST /v1/networks/{id}/segments: a pod reports
// the bottom segment it chose for a mixed_vlan_vxlan network.
type SegmentReport struct {
	PodID           string `json:"pod_id"`
	NetworkType     string `json:"network_type"`
	SegmentationID  int    `json:"segmentation_id"`
	PhysicalNetwork string `json:"physical_network,omitempty"`
}

// Subnet of a top network.
type Subnet struct {
	ID        string    `json:"id"`
	NetworkID string    `json:"network_id"`
	CIDR      string    `json:"cidr"`
	GatewayIP string    `json:"gateway_ip,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Port is a port (VM interface, DHCP port, router port) bound in one pod.
type Port struct {
	ID          string   `json:"id"`
	NetworkID   string   `json:"network_id"`
	PodID       string   `json:"pod_id"`
	MAC         string   `json:"mac"`
	IPs         []string `json:"ips"`
	DeviceOwner string   `json:"device_owner,omitempty"`
	ProjectID   string   `json:"project_id,omitempty"`
	// MobilitySeq grows with every move of the port to another pod, like
	// EVPN's MAC mobility sequence number: an older placement never wins.
	MobilitySeq int64 `json:"mobility_seq"`
	// Duplicate is set when the MAC moved too often (active in two pods at
	// once); the port is frozen at its last good placement until cleared.
	Duplicate bool `json:"duplicate,omitempty"`
	// Reserved marks a port the brain holds for itself in its pod (the
	// pod's DHCP or gateway port): not a driver's to sync or delete.
	Reserved  bool      `json:"reserved,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// PortUpdate is the body of PUT /v1/ports/{id}: a move to another pod (a
// re-bound VM), new IPs, or clearing a duplicate mark.
type PortUpdate struct {
	PodID *string   `json:"pod_id,omitempty"`
	IPs   *[]string `json:"ips,omitempty"`
	// MobilitySeq, when set with a move, must be newer than the port's:
	// a placement reported out of order is refused (409).
	MobilitySeq    *int64 `json:"mobility_seq,omitempty"`
	ClearDuplicate bool   `json:"clear_duplicate,omitempty"`
}

// PortCreate is the body of POST /v1/ports, or one element of a bulk create.
type PortCreate struct {
	ID          string   `json:"id,omitempty"`
	NetworkID   string   `json:"network_id"`
	PodID       string   `json:"pod_id"`
	MAC         string   `json:"mac"`
	IPs         []string `json:"ips"`
	DeviceOwner string   `json:"device_owner,omitempty"`
	ProjectID   string   `json:"project_id,omitempty"`
}

// BulkPortCreate is the body of POST /v1/ports with many ports; all or none.
type BulkPortCreate struct {
	Ports []PortCreate `json:"ports"`
}

// Ports is the response of a bulk create.
type Ports struct {
	Ports []Port `json:"ports"`
}

// Gateway is an agent registered as a gateway of its pod.
type Gateway struct {
	ID      string `json:"id"`
	PodID   string `json:"pod_id"`
	VTEP    string `json:"vtep"`
	Backend string `json:"backend"`
	DVRMAC  string `json:"dvr_mac,omitempty"`
	// PopulateMACs false means flood-and-learn on this gateway.
	PopulateMACs bool      `json:"populate_macs"`
	LastSeen     time.Time `json:"last_seen"`
	Revision     int64     `json:"revision"`
	// Status is what the agent last reported of itself (nil if never).
	Status *GatewayStatus `json:"status,omitempty"`
}

// GatewayStatus is an agent's own view, refreshed with its registration.
type GatewayStatus struct {
	// Healthy is false while the gateway withdrew from forwarder election
	// (its dataplane fails).
	Healthy bool `json:"healthy"`
	// Forwarding and Standby count the spanned networks this gateway
	// forwards as its pod's designated forwarder, and those another gateway
	// of the pod forwards.
	Forwarding int `json:"forwarding"`
	Standby    int `json:"standby"`
	// Weight is the gateway's forwarder-election weight (--weight).
	Weight int `json:"weight,omitempty"`
	// ForwardedVNIs are the overlay VNIs this gateway forwards as its pod's
	// designated forwarder, as of its last applied plan.
	ForwardedVNIs []uint32 `json:"forwarded_vnis,omitempty"`
	// BrainConnected says whether the agent's watch of the brain is up.
	BrainConnected bool `json:"brain_connected"`
	// Counters are the eBPF programs' packet counters by action.
	Counters map[string]uint64 `json:"counters,omitempty"`
	// BGPSessions are an EVPN gateway's sessions to its pod's fabric.
	BGPSessions []BGPSession `json:"bgp_sessions,omitempty"`
}

// BGPSession is one BGP neighbor of an EVPN gateway.
type BGPSession struct {
	Peer     string `json:"peer"`
	RemoteAS uint32 `json:"remote_as"`
	State    string `json:"state"`
	// Since is when the session came up (absent while it is down).
	Since      *time.Time `json:"since,omitempty"`
	Received   int        `json:"received"`
	Advertised int        `json:"advertised"`
}

// List is a page of results. Next is the marker for the following page, empty
// on the last page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ErrorBody is every error response: {"error":{"code","message","field"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names what went wrong and, for input errors, which field.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// PodState is what a pod's gateways must program.
type PodState struct {
	PodID    string `json:"pod_id"`
	Revision int64  `json:"revision"`
	// Networks spanned into this pod and at least one other pod.
	Networks []NetworkState `json:"networks"`
	// DVRBaseMACs maps every other pod with a dvr_base_mac to its prefix.
	DVRBaseMACs map[string]string `json:"dvr_base_macs,omitempty"`
	// Gateways are every pod's registered gateways: an agent honours a
	// gossip member only if its pod, VTEP and gateway id are listed here.
	Gateways []PodGateway `json:"gateways"`
}

// PodGateway is a registered gateway as pod states carry it.
type PodGateway struct {
	ID    string `json:"id"`
	PodID string `json:"pod_id"`
	VTEP  string `json:"vtep"`
}

// NetworkState is one spanned network as seen from one pod.
type NetworkState struct {
	NetworkID string `json:"network_id"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	// VNI is the inter-pod overlay VNI.
	VNI          uint32          `json:"vni"`
	LocalSegment Segment         `json:"local_segment"`
	RemotePods   []string        `json:"remote_pods"`
	RemotePorts  []RemotePort    `json:"remote_ports"`
	Subnets      []SubnetGateway `json:"subnets,omitempty"`
	// PodSide is the pod's own side of its segment, when known.
	PodSide *PodSide `json:"pod_side,omitempty"`
}

// PodSide is what the pod's own Neutron says about the network's VXLAN
// segment there: the compute VTEPs with ports on it, and each local port's
// MAC with the VTEP of the host it is bound on. A gateway serving the pod
// side floods to VTEPs and sends a port's frames to its host.
type PodSide struct {
	VTEPs []string      `json:"vteps,omitempty"`
	Ports []PodSidePort `json:"ports,omitempty"`
}

// PodSidePort is a local port and the VTEP of its host.
type PodSidePort struct {
	MAC  string `json:"mac"`
	VTEP string `json:"vtep"`
}

// RemotePort is a port of the network bound in another pod.
type RemotePort struct {
	MAC   string   `json:"mac"`
	IPs   []string `json:"ips,omitempty"`
	PodID string   `json:"pod_id"`
	Seq   int64    `json:"seq,omitempty"`
}

// SubnetGateway is a subnet's CIDR and its (anycast) gateway IP.
type SubnetGateway struct {
	CIDR      string `json:"cidr"`
	GatewayIP string `json:"gateway_ip,omitempty"`
}

// Watch event types, streamed as one JSON object per line.
const (
	// EventSnapshot carries the full state; the client replaces what it has.
	EventSnapshot = "snapshot"
	// EventUpdate (the stream without delta=1, for older agents) carries
	// the changed networks whole and those removed.
	EventUpdate = "update"
	// EventDelta (the stream with delta=1) carries what changed: networks
	// that entered the state whole, networks removed, patches to the
	// others (remote ports added, changed or gone; a new header), and the
	// pod-wide part when it changed.
	EventDelta = "delta"
	// EventHeartbeat keeps the stream alive; Revision is the latest known.
	EventHeartbeat = "heartbeat"
)

// WatchEvent is one line of GET /v1/pods/{pod}/state?watch=true&since=REV.
type WatchEvent struct {
	Type     string `json:"type"`
	Revision int64  `json:"revision"`
	// State is set on snapshots.
	State *PodState `json:"state,omitempty"`
	// Networks are, on updates, the changed networks' full states; on
	// deltas, networks that entered the pod's state (or are replaced
	// whole).
	Networks []NetworkState `json:"networks,omitempty"`
	// Removed are networks no longer spanned into the pod (updates,
	// deltas). On the full-network stream a change to pods (e.g. a
	// dvr_base_mac) is sent as a snapshot.
	Removed []string `json:"removed,omitempty"`
	// Changes patch networks the client keeps (deltas), by network id.
	Changes []NetworkDelta `json:"changes,omitempty"`
	// Pod, when set, replaces the pod-wide part of the state (deltas).
	Pod *PodWide `json:"pod,omitempty"`
}

// NetworkDelta patches one network of a pod's state. Apply Header, then
// RemovedMACs, then Upserted (a MAC may be in both only if it left with one
// port and came back with another; upserted wins).
type NetworkDelta struct {
	NetworkID string `json:"network_id"`
	// Header, when set, replaces everything of the network but its remote
	// ports.
	Header *NetworkHeader `json:"header,omitempty"`
	// RemovedMACs are remote ports gone from the network.
	RemovedMACs []string `json:"removed_macs,omitempty"`
	// Upserted are remote ports added or changed, keyed by MAC.
	Upserted []RemotePort `json:"upserted,omitempty"`
}

// NetworkHeader is a NetworkState without its remote ports.
type NetworkHeader struct {
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	VNI          uint32          `json:"vni"`
	LocalSegment Segment         `json:"local_segment"`
	RemotePods   []string        `json:"remote_pods"`
	Subnets      []SubnetGateway `json:"subnets,omitempty"`
	PodSide      *PodSide        `json:"pod_side,omitempty"`
}

// PodWide is the part of a pod's state that is not per network; a delta
// that carries it carries all of it.
type PodWide struct {
	DVRBaseMACs map[string]string `json:"dvr_base_macs"`
	// Gateways replace PodState.Gateways (an empty list, never absent,
	// when none is registered).
	Gateways []PodGateway `json:"gateways"`
}

// AgentDataplane is an agent's view of its dataplane (GET /dataplane on the
// agent's metrics listener): what the plan wants and the drift between it
// and what the kernel or switch holds now.
type AgentDataplane struct {
	Pod       string `json:"pod"`
	GatewayID string `json:"gateway_id"`
	Revision  int64  `json:"revision"`
	Healthy   bool   `json:"healthy"`
	// Networks this gateway forwards, with their wanted entry counts.
	Networks []AgentNetwork `json:"networks"`
	// Standby lists VNIs another gateway of the pod forwards.
	Standby []uint32 `json:"standby,omitempty"`
	// Unreachable lists, per VNI, remote pods without a live gateway.
	Unreachable map[string][]string `json:"unreachable,omitempty"`
	// Drift is what a reconcile now would add and remove; nil when the
	// backend cannot tell without acting.
	Drift *AgentDrift `json:"drift,omitempty"`
	// LastError is why the last reconcile failed; empty when it did not.
	// Networks, Standby and Unreachable are then still the last plan that
	// reached the dataplane in full.
	LastError string `json:"last_error,omitempty"`
	// Skipped says what of the last plan could not be placed (a MAC or IP
	// claimed twice, a bad dvr_base_mac, ...).
	Skipped []string `json:"skipped,omitempty"`
	// InsecureGossip is true when the agent gossips without a key.
	InsecureGossip bool `json:"insecure_gossip,omitempty"`
	// IgnoredMembers are gossip members the last plan left out because
	// the brain has no gateway registered as they claim.
	IgnoredMembers []AgentIgnoredMember `json:"ignored_members,omitempty"`
}

// AgentIgnoredMember is a gossip member whose claim the brain does not back.
type AgentIgnoredMember struct {
	Name      string `json:"name"`
	Addr      string `json:"addr,omitempty"`
	Pod       string `json:"pod,omitempty"`
	GatewayID string `json:"gateway_id,omitempty"`
	VTEP      string `json:"vtep,omitempty"`
	// Reason is unregistered, wrong_pod, wrong_vtep or name_mismatch.
	Reason string `json:"reason"`
}

// AgentNetwork is one forwarded network as planned.
type AgentNetwork struct {
	VNI            uint32 `json:"vni"`
	LocalInterface string `json:"local_interface,omitempty"`
	MACs           int    `json:"macs"`
	Flood          int    `json:"flood"`
	Neighbors      int    `json:"neighbors"`
}

// AgentDrift counts entries that differ from the plan.
type AgentDrift struct {
	AddNetworks, AddMACs, AddFlood, AddNeighbors             int
	RemoveNetworks, RemoveMACs, RemoveFlood, RemoveNeighbors int
}
