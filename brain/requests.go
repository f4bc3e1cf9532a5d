package brain

// NetworkCreate asks for a top network.
type NetworkCreate struct {
	// ID is the id the client wants (the ML2 driver passes Neutron's); ""
	// lets the brain choose one.
	ID        string
	ManagedBy string
	Name      string
	Type      string
	AZHints   []string
	External  bool
	// SegmentationID requests a specific VLAN id or VNI (admin).
	SegmentationID  int
	PhysicalNetwork string
	// GatewayPerPod gives each pod its own gateway IP; it cannot change
	// after create.
	GatewayPerPod bool
}

// NetworkUpdate changes a network: only the name may change; AZHints is
// accepted only when equal to the current value. Nil fields stay.
type NetworkUpdate struct {
	Name    *string
	AZHints *[]string
	// External switches a network to or from external; it changes
	// az_hints with it (a pod id when external, AZs when not).
	External *bool
}

// SegmentReport is the bottom segment a pod chose for a mixed_vlan_vxlan
// network.
type SegmentReport struct {
	PodID           string
	NetworkType     string
	SegmentationID  int
	PhysicalNetwork string
}

// PortCreate asks for a port bound in a pod; ID "" lets the brain choose.
type PortCreate struct {
	ID          string
	NetworkID   string
	PodID       string
	MAC         string
	IPs         []string
	DeviceOwner string
}

// PortUpdate moves a port to another pod, changes its IPs, or clears its
// duplicate mark. Nil fields stay.
type PortUpdate struct {
	PodID *string
	IPs   *[]string
	// MobilitySeq, with a move, must be newer than the port's.
	MobilitySeq    *int64
	ClearDuplicate bool
}
