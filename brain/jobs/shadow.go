package jobs

import (
	"slices"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/model"
)

// Shadow ports (Tricircle's cross-Neutron VXLAN design): for every port of
// an overlay network that lives in another pod, the pod's Neutron holds a
// port with the same MAC and IPs bound to the pod's l2span gateway host,
// whose binding profile names the gateway's shadow tunnel IP. The pod's
// l2span_bottom mechanism driver records a shadow agent with that tunnel
// IP and makes the port ACTIVE, so Neutron's L2 population tells every
// compute host of the network "this MAC is behind the gateway".
const (
	// ShadowPortPrefix names a shadow port: "l2span-shadow-<top port id>".
	ShadowPortPrefix = NamePrefix + "shadow-"
	// ShadowOwner is the device_owner of shadow ports.
	ShadowOwner = "l2span:shadow"
	// ShadowProfileKey is the binding:profile key that carries the shadow
	// tunnel IP (read by the l2span_bottom driver).
	ShadowProfileKey = "l2span_tunnel_ip"
	// DefaultShadowHost is the binding host of shadow ports when the pod's
	// config names none.
	DefaultShadowHost = "l2span-gateway"
)

func shadowName(topID string) string { return ShadowPortPrefix + topID }

// wantShadows lists the top ports that get a shadow port in this pod: the
// VM and driver ports of other pods (not the DHCP and gateway ports the
// brain reserved there, which stay in their pods), of an overlay network
// whose bottom network here is VXLAN, when the pod has a shadow tunnel IP.
func (r *ensureRun) wantShadows() []model.Port {
	if r.pc.ShadowTunnelIP == "" || r.n.Type != model.TypeSharedVXLAN && r.n.Type != model.TypeMixedVLANVXLAN {
		return nil
	}
	if r.net.NetworkType != "" && r.net.NetworkType != model.SegmentVXLAN {
		return nil
	}
	var out []model.Port
	for _, p := range r.v.Remote {
		if !brain.IsReserved(p) && !p.Duplicate {
			out = append(out, p)
		}
	}
	return out
}

// sameShadow reports whether a bottom shadow port still matches its top
// port and this pod's gateway.
func (r *ensureRun) sameShadow(b Port, p model.Port) bool {
	return samePort(b, p) && b.HostID == r.pc.shadowHost() && b.ShadowIP == r.pc.ShadowTunnelIP && b.DeviceOwner == ShadowOwner
}

// shadowSpecs are the shadow ports to create: those wanted and not kept by
// prunePorts. A port whose IPs lie in no subnet of this pod's network yet
// is left for the next run.
func (r *ensureRun) shadowSpecs() []Port {
	var specs []Port
	for _, p := range r.wantShadows() {
		if _, ok := r.portByName[shadowName(p.ID)]; ok {
			continue
		}
		bp := Port{Name: shadowName(p.ID), ProjectID: r.pc.project(), NetworkID: r.net.ID, MAC: p.MAC,
			DeviceOwner: ShadowOwner, DeviceID: p.ID, HostID: r.pc.shadowHost(), ShadowIP: r.pc.ShadowTunnelIP}
		ok := true
		for _, ip := range p.IPs {
			sid, err := r.subnetFor(ip)
			if err != nil {
				ok = false
				break
			}
			bp.FixedIPs = append(bp.FixedIPs, FixedIP{SubnetID: sid, IP: ip})
		}
		if ok {
			specs = append(specs, bp)
		}
	}
	slices.SortFunc(specs, func(a, b Port) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return specs
}
