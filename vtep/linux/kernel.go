package linux

import (
	"net"
	"net/netip"
)

// kernel is the one seam between the diff logic and netlink. Devices are
// named, never indexed, so a fake can hold plain maps. The real
// implementation is nlKernel; tests use a fake that records state.
type kernel interface {
	// Links lists every device of the namespace.
	Links() ([]kLink, error)
	AddBridge(name string, mtu int) error
	AddVXLAN(name string, a vxlanAttrs, mtu int) error
	DelLink(name string) error
	SetUp(name string) error
	SetMTU(name string, mtu int) error
	// SetMaster enslaves name to master; master "" releases it.
	SetMaster(name, master string) error
	// PortFlags reads the bridge-port flags of an enslaved device.
	PortFlags(name string) (learning, neighSuppress bool, err error)
	SetPortFlags(name string, learning, neighSuppress bool) error

	// FDB lists the forwarding entries on dev: its own (NTF_SELF, with a
	// VTEP for a VXLAN device) and its bridge's (NTF_MASTER).
	FDB(dev string) ([]fdbEntry, error)
	// AddFDB and DelFDB apply entries in order and return one error per
	// entry (nil where it succeeded). Added entries are marked owned.
	AddFDB(dev string, es []fdbEntry) []error
	DelFDB(dev string, es []fdbEntry) []error
	// Neighs lists IPv4 and IPv6 neighbor entries on dev.
	Neighs(dev string) ([]neighEntry, error)
	AddNeighs(dev string, es []neighEntry) []error
	DelNeighs(dev string, es []neighEntry) []error
}

// kLink is what the backend needs to know about one device.
type kLink struct {
	Name   string
	Kind   string // "bridge", "vxlan", "veth", ...
	Master string // name of the master device, "" if none
	Up     bool
	MTU    int
	VXLAN  *vxlanAttrs // set for Kind "vxlan"
}

// vxlanAttrs are the attributes of a VXLAN device the backend manages; a
// device whose attributes differ from the wanted ones is recreated.
type vxlanAttrs struct {
	VNI      uint32
	Local    netip.Addr
	Underlay string // device name, "" for none
	Port     uint16
	Learning bool
}

// fdbEntry is one forwarding entry. Self entries live in the VXLAN
// device's own table (MAC -> VTEP; the all-zero MAC floods); master
// entries live in the bridge's table and point the MAC at the VXLAN port,
// which the bridge needs to forward known unicast without flooding and to
// answer ARP/ND for it (neigh_suppress).
type fdbEntry struct {
	MAC    net.HardwareAddr
	VTEP   netip.Addr // self entries only
	Master bool
	// Owned marks entries this backend wrote (NTF_EXT_LEARNED). Entries
	// the kernel learned, or an operator added, are not owned.
	Owned bool
	// Append adds one more VTEP to a MAC (flood entries) instead of
	// replacing its VTEP. Only meaningful for AddFDB.
	Append bool
}

// neighEntry is one IP -> MAC neighbor entry on the bridge.
type neighEntry struct {
	IP        netip.Addr
	MAC       net.HardwareAddr
	Owned     bool // NTF_EXT_LEARNED
	Permanent bool // NUD_PERMANENT
}
