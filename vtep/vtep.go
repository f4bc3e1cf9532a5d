// Package vtep defines what a gateway's dataplane must hold for the spanned
// networks of its pod, and the Dataplane seam that backends (linux, hwvtep)
// implement. It imports nothing from brain or agent.
package vtep

import (
	"context"
	"net"
	"net/netip"
	"slices"
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
}

// MACEntry is a remote MAC reachable through a remote VTEP.
type MACEntry struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
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

// LocalMAC is a MAC a dataplane learned on its own local ports, in a network
// it owns.
type LocalMAC struct {
	VNI uint32
	MAC net.HardwareAddr
	// IP is the address the dataplane saw with the MAC; invalid when none.
	IP netip.Addr
	// Locator is the dataplane's own tunnel endpoint for the MAC.
	Locator netip.Addr
}

// Normalize sorts and de-duplicates every list so that two Configs with the
// same content compare equal and diffs are stable.
func (c Config) Normalize() Config {
	out := Config{Networks: make([]Network, 0, len(c.Networks))}
	for _, n := range c.Networks {
		n.Flood = slices.Clone(n.Flood)
		slices.SortFunc(n.Flood, func(a, b netip.Addr) int { return a.Compare(b) })
		n.Flood = slices.Compact(n.Flood)
		n.MACs = slices.Clone(n.MACs)
		slices.SortFunc(n.MACs, func(a, b MACEntry) int { return compareBytes(a.MAC, b.MAC) })
		n.MACs = slices.CompactFunc(n.MACs, func(a, b MACEntry) bool { return compareBytes(a.MAC, b.MAC) == 0 })
		n.Neighbors = slices.Clone(n.Neighbors)
		slices.SortFunc(n.Neighbors, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
		n.Neighbors = slices.CompactFunc(n.Neighbors, func(a, b Neighbor) bool { return a.IP == b.IP })
		out.Networks = append(out.Networks, n)
	}
	slices.SortFunc(out.Networks, func(a, b Network) int { return int(int64(a.VNI) - int64(b.VNI)) })
	return out
}

func compareBytes(a, b []byte) int {
	return slices.Compare(a, b)
}
