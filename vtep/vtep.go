// Package vtep defines what a gateway's dataplane must hold for the spanned
// networks of its pod, and the Dataplane seam that backends (linux, hwvtep)
// implement. It imports nothing from brain or agent.
package vtep

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Config is the complete desired state of one gateway's overlay dataplane.
// Set(Config) is idempotent: applying the same Config twice changes nothing.
type Config struct {
	Networks []Network
}

// Network is one spanned network as a gateway programs it.
type Network struct {
	// VNI is the inter-pod overlay VNI.
	VNI uint32
	// LocalInterface carries the pod-local segment and is bridged to the
	// overlay. Empty means no local attachment is made (nothing to bridge yet).
	LocalInterface string
	// Flood lists the remote VTEPs that receive BUM traffic (head-end
	// replication), one per remote pod (its designated forwarder).
	Flood []netip.Addr
	// MACs are remote unicast MACs and the VTEP that reaches each. Empty when
	// MAC population is off (flood-and-learn).
	MACs []MACEntry
	// Neighbors are remote IP->MAC bindings used for ARP/ND suppression.
	Neighbors []Neighbor
	// Learn turns on source-MAC learning on the overlay device (population off).
	Learn bool
	// PodSide, when set, makes the gateway a tunnel endpoint of its pod's
	// own VXLAN mesh for this network (the pod's Neutron points its compute
	// hosts at the gateway through shadow ports): a second VXLAN device on
	// the pod's segment is the network's local interface, so LocalInterface
	// must then be empty.
	PodSide *PodSide
}

// PodSide is a network's side in the gateway's own pod: the pod's bottom
// VXLAN segment and the pod's tunnel endpoints on it. The pod-side device
// sends from the backend's pod VTEP address (a per-pod virtual IP the
// designated forwarder holds), on the pod's VXLAN UDP port.
type PodSide struct {
	// Segment is the pod's VXLAN segmentation id of the network.
	Segment uint32
	// Flood lists the pod's compute VTEPs with ports on the network: BUM
	// traffic from other pods is replicated to each.
	Flood []netip.Addr
	// MACs are the pod's own ports and the compute VTEP behind each.
	MACs []MACEntry
}

// MACEntry is a remote MAC reachable through a remote VTEP.
type MACEntry struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
	// Seq is the brain's mobility sequence of the MAC's port (how often it
	// moved between pods); the EVPN backend sends it as the MAC Mobility
	// extended community. Backends without sequence numbers ignore it.
	Seq uint32
}

// Neighbor binds a remote IP to its MAC.
type Neighbor struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// Counts says how many entries of each kind a backend holds or changed.
type Counts struct {
	Networks  int
	MACs      int
	Flood     int
	Neighbors int
}

// Result reports what one Set really did.
type Result struct {
	Added   Counts
	Removed Counts
}

// Dataplane is implemented by each backend.
type Dataplane interface {
	// Set makes the dataplane hold exactly cfg for the networks this backend
	// owns, reading back the actual state first and changing only what
	// differs. It applies as much as it can and returns every error joined.
	Set(ctx context.Context, cfg Config) (Result, error)
	// Close releases handles; it never removes programmed state.
	Close() error
}

// MACSource is a dataplane that learns local MACs by itself (a hardware
// switch): LocalMACs is the full current set, and LocalMACsChanged is
// signalled (coalesced) when it may have changed, including after a
// reconnect.
type MACSource interface {
	LocalMACs() []LocalMAC
	LocalMACsChanged() <-chan struct{}
}

// SessionSource is a dataplane that speaks a routing protocol to its
// pod's fabric (EVPN): Sessions is each neighbor's state now.
type SessionSource interface {
	Sessions() []Session
}

// Session is one BGP neighbor of a SessionSource.
type Session struct {
	Peer     string
	RemoteAS uint32
	// State is "established", "idle", "active", "connect", ...
	State string
	// Since is when the session came up; zero when it is not up.
	Since time.Time
	// Received and Advertised count the routes accepted from and sent to
	// the neighbor.
	Received, Advertised int
}

// LocalMAC is a MAC a dataplane learned on its own local ports, in a network
// it owns.
type LocalMAC struct {
	VNI uint32
	MAC net.HardwareAddr
	// IP is the address the dataplane saw with the MAC; invalid when none.
	IP netip.Addr
	// Locator is the tunnel endpoint behind which the dataplane reaches
	// the MAC (the switch's own, or the fabric VTEP that advertised it).
	Locator netip.Addr
	// Sequenced says the dataplane carries MAC mobility sequence numbers
	// (EVPN): Seq is the fabric's, and a MAC whose Seq is not newer than
	// the brain's placement elsewhere is a stale report, not a move.
	Sequenced bool
	Seq       uint32
	// Sticky is a static MAC of the pod (MAC Mobility sticky bit): it
	// stays in this pod whatever the sequence numbers say.
	Sticky bool
}

// Normalize is NormalizeConflicts without the report, for backends: the
// agent normalises (and reports) before it hands a Config over.
func (c Config) Normalize() Config {
	out, _ := c.NormalizeConflicts()
	return out
}

// Conflict is an entry normalisation left out because another entry of the
// same network claims the same key: a MAC behind two VTEPs, or an IP bound
// to two MACs.
type Conflict struct {
	VNI uint32
	// Key is the MAC (of a MACEntry) or the IP (of a Neighbor) claimed twice.
	Key string
	// Kept is the VTEP (MAC) that stays, Dropped the one left out.
	Kept, Dropped string
}

func (c Conflict) String() string {
	return fmt.Sprintf("vni %d: %s claimed by both %s and %s; kept %s", c.VNI, c.Key, c.Kept, c.Dropped, c.Kept)
}

// NormalizeConflicts sorts and de-duplicates every list so that two Configs
// with the same content compare equal and diffs are stable. Of entries that
// conflict, the lowest VTEP (for a MAC) or MAC (for an IP) stays, whatever
// the input order; each one left out is returned as a Conflict. Exact
// duplicates are merged silently.
func (c Config) NormalizeConflicts() (Config, []Conflict) {
	out := Config{Networks: make([]Network, 0, len(c.Networks))}
	var conflicts []Conflict
	for _, n := range c.Networks {
		n.Flood = slices.Clone(n.Flood)
		slices.SortFunc(n.Flood, netip.Addr.Compare)
		n.Flood = slices.Compact(n.Flood)
		n.MACs, conflicts = normalizeMACs(n.VNI, n.MACs, conflicts)
		n.Neighbors, conflicts = normalizeNeighbors(n.VNI, n.Neighbors, conflicts)
		if n.PodSide != nil {
			ps := *n.PodSide
			ps.Flood = slices.Clone(ps.Flood)
			slices.SortFunc(ps.Flood, netip.Addr.Compare)
			ps.Flood = slices.Compact(ps.Flood)
			ps.MACs, conflicts = normalizeMACs(n.VNI, ps.MACs, conflicts)
			// A MAC both remote and local: the remote entry (the brain's
			// placement of the port in another pod) stays.
			ps.MACs = slices.DeleteFunc(ps.MACs, func(e MACEntry) bool {
				i, found := slices.BinarySearchFunc(n.MACs, e.MAC, func(m MACEntry, t net.HardwareAddr) int { return bytes.Compare(m.MAC, t) })
				if found {
					conflicts = append(conflicts, Conflict{VNI: n.VNI, Key: "mac " + e.MAC.String(), Kept: n.MACs[i].VTEP.String(), Dropped: "pod-side " + e.VTEP.String()})
				}
				return found
			})
			n.PodSide = &ps
		}
		out.Networks = append(out.Networks, n)
	}
	slices.SortFunc(out.Networks, func(a, b Network) int { return cmp.Compare(a.VNI, b.VNI) })
	return out, conflicts
}

// normalizeMACs sorts by MAC and VTEP and keeps the first entry of each
// MAC; each distinct VTEP left out is a conflict.
func normalizeMACs(vni uint32, in []MACEntry, conflicts []Conflict) ([]MACEntry, []Conflict) {
	sorted := slices.Clone(in)
	slices.SortFunc(sorted, func(a, b MACEntry) int {
		return cmp.Or(bytes.Compare(a.MAC, b.MAC), a.VTEP.Compare(b.VTEP))
	})
	out := sorted[:0] // in place: out never passes the entry being read
	var prev MACEntry
	for _, e := range sorted {
		switch {
		case len(out) == 0 || !bytes.Equal(out[len(out)-1].MAC, e.MAC):
			out = append(out, e)
		case e.VTEP != prev.VTEP: // not a repeat of the entry before
			kept := out[len(out)-1]
			conflicts = append(conflicts, Conflict{VNI: vni, Key: "mac " + e.MAC.String(), Kept: kept.VTEP.String(), Dropped: e.VTEP.String()})
		}
		prev = e
	}
	return out, conflicts
}

// normalizeNeighbors sorts by IP and MAC and keeps the first entry of each
// IP; each distinct MAC left out is a conflict.
func normalizeNeighbors(vni uint32, in []Neighbor, conflicts []Conflict) ([]Neighbor, []Conflict) {
	sorted := slices.Clone(in)
	slices.SortFunc(sorted, func(a, b Neighbor) int {
		return cmp.Or(a.IP.Compare(b.IP), bytes.Compare(a.MAC, b.MAC))
	})
	out := sorted[:0]
	var prev Neighbor
	for _, e := range sorted {
		switch {
		case len(out) == 0 || out[len(out)-1].IP != e.IP:
			out = append(out, e)
		case !bytes.Equal(e.MAC, prev.MAC): // not a repeat of the entry before
			kept := out[len(out)-1]
			conflicts = append(conflicts, Conflict{VNI: vni, Key: "ip " + e.IP.String(), Kept: kept.MAC.String(), Dropped: e.MAC.String()})
		}
		prev = e
	}
	return out, conflicts
}
