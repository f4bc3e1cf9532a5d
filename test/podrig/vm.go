package podrig

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// VM is a tenant machine plugged into a compute host.
type VM struct {
	*NS
	Host *Host
	MAC  net.HardwareAddr
	IPs  []netip.Prefix
	Tap  string
}

// PlugVM plugs a VM for Neutron port portID of network networkID into h
// the way Nova/os-vif does for the Linux bridge agent: a veth whose host
// end is tap<port id[:11]>, enslaved to brq<network id[:11]> (created when
// absent); eth0 in the VM's namespace has the port's MAC and ips.
func (r *Rig) PlugVM(h *Host, portID, networkID string, mac net.HardwareAddr, ips ...netip.Prefix) (*VM, error) {
	r.mu.Lock()
	r.nVM++
	n := r.nVM
	r.mu.Unlock()
	ns, err := r.ns(fmt.Sprintf("vm%d", n))
	if err != nil {
		return nil, err
	}
	tap := "tap" + portID[:11]
	br := "brq" + networkID[:11]
	if _, err := h.Run("ip", "link", "show", br); err != nil {
		if _, err := h.Run("ip", "link", "add", br, "type", "bridge"); err != nil && !strings.Contains(err.Error(), "File exists") {
			return nil, err
		}
	}
	cmds := [][]string{
		{"ip", "link", "add", tap, "mtu", fmt.Sprint(VMMTU), "type", "veth", "peer", "name", "eth0", "mtu", fmt.Sprint(VMMTU), "netns", ns.Name},
		{"ip", "link", "set", tap, "master", br},
		{"ip", "link", "set", tap, "up"},
		{"ip", "link", "set", br, "up"},
	}
	for _, c := range cmds {
		if _, err := h.Run(c...); err != nil {
			return nil, err
		}
	}
	vcmds := [][]string{{"ip", "link", "set", "eth0", "address", mac.String()}}
	for _, ip := range ips {
		vcmds = append(vcmds, []string{"ip", "addr", "add", ip.String(), "dev", "eth0", "nodad"})
	}
	vcmds = append(vcmds, []string{"ip", "link", "set", "eth0", "up"})
	for _, c := range vcmds {
		if _, err := ns.Run(c...); err != nil {
			return nil, err
		}
	}
	return &VM{NS: ns, Host: h, MAC: mac, IPs: ips, Tap: tap}, nil
}

// Ping sends one echo request to ip from the VM, waiting up to 1 s.
func (v *VM) Ping(ip netip.Addr) error {
	_, err := v.Run("ping", "-c1", "-W1", ip.String())
	return err
}

// FDBDst is the VTEP the host's vxlan-<segment> device sends mac to (its
// own NTF_SELF entry, as l2population writes it).
func (h *Host) FDBDst(segment int, mac string) (netip.Addr, error) {
	out, err := h.Run("bridge", "fdb", "show", "dev", fmt.Sprintf("vxlan-%d", segment))
	if err != nil {
		return netip.Addr{}, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.EqualFold(f[0], mac) {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dst" {
				return netip.ParseAddr(f[i+1])
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no fdb entry for %s on vxlan-%d in %s", mac, segment, h.Name)
}
