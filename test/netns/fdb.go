package netns

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
)

// FDBDst returns the remote VTEP that dev's own (NTF_SELF) FDB entry for
// mac points at, read from the kernel of ns.
func FDBDst(ns *NS, dev, mac string) (netip.Addr, error) {
	link, err := ns.Handle().LinkByName(dev)
	if err != nil {
		return netip.Addr{}, err
	}
	neighs, err := ns.Handle().NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, n := range neighs {
		if strings.EqualFold(n.HardwareAddr.String(), mac) && n.Flags&netlink.NTF_SELF != 0 && n.IP != nil {
			a, _ := netip.AddrFromSlice(n.IP)
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no fdb entry for %s on %s in %s", mac, dev, ns.Name())
}
