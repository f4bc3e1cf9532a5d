package linux

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/l2span/l2span/vtep"
)

// DefaultPodPort is the VXLAN UDP port of a pod's own mesh: Neutron's Linux
// bridge agents leave the kernel's default, the legacy 8472.
const DefaultPodPort = 8472

// PodOptions make the gateway a tunnel endpoint of its own pod's VXLAN mesh
// (vtep.Network.PodSide). The pod's Neutron binds every shadow port to the
// address VTEP, so that address must move with the designated forwarder
// rather than the shadow ports: the backend holds VTEP on Dev exactly while
// it serves a pod side (it is the forwarder), announcing it with gratuitous
// ARP when it takes it, and drops it when it serves none.
type PodOptions struct {
	// VTEP is the pod-side tunnel address with its prefix length on Dev
	// (the pod's shadow tunnel IP); invalid means no pod side.
	VTEP netip.Prefix
	// Dev holds VTEP; "" means Options.UnderlayDev.
	Dev string
	// Port is the pod's VXLAN UDP port; 0 means DefaultPodPort.
	Port uint16
	// Announce is how many gratuitous ARPs a takeover sends, 200 ms apart
	// (0 means 3).
	Announce int
}

func (o PodOptions) withDefaults(underlay string) (PodOptions, error) {
	if !o.VTEP.IsValid() {
		return o, nil
	}
	if o.Dev == "" {
		o.Dev = underlay
	}
	if o.Dev == "" {
		return o, errors.New("pod vtep: no device to hold it (set the pod vtep device or the underlay device)")
	}
	if o.Port == 0 {
		o.Port = DefaultPodPort
	}
	if o.Announce == 0 {
		o.Announce = 3
	}
	return o, nil
}

// vipKernel is the seam for the pod VTEP address; nlKernel implements it.
// A kernel that does not (the dry run of Check) leaves the address alone.
type vipKernel interface {
	Addrs(dev string) ([]netip.Prefix, error)
	AddAddr(dev string, a netip.Prefix) error
	DelAddr(dev string, a netip.Prefix) error
	// Announce sends one gratuitous ARP (IPv4) or unsolicited neighbor
	// advertisement (IPv6) for a from dev.
	Announce(dev string, a netip.Addr) error
}

// PodSideName is the name of the pod-side VXLAN device of (overlay) vni.
func (b *Backend) PodSideName(vni uint32) string {
	return b.opts.Prefix + "p" + strconv.FormatUint(uint64(vni), 10)
}

// podSideLocal makes n's pod-side device its local interface; a pod side
// the backend cannot serve is dropped with an error.
func (b *Backend) podSideLocal(n vtep.Network, errs *errList) vtep.Network {
	switch {
	case n.PodSide == nil:
	case !b.opts.Pod.VTEP.IsValid():
		errs.add(fmt.Errorf("network vni %d: pod side wanted but no pod vtep configured", n.VNI))
		n.PodSide = nil
	case n.LocalInterface != "":
		errs.add(fmt.Errorf("network vni %d: pod side and local interface %s both set", n.VNI, n.LocalInterface))
		n.PodSide = nil
	case n.PodSide.Segment == 0 || n.PodSide.Segment > maxVNI:
		errs.add(fmt.Errorf("network vni %d: pod segment %d: out of range 1-%d", n.VNI, n.PodSide.Segment, maxVNI))
		n.PodSide = nil
	default:
		n.LocalInterface = b.PodSideName(n.VNI)
	}
	return n
}

// ensurePodSide makes n's pod-side VXLAN device exist with the right
// attributes (it is then enslaved and brought up as n's local interface),
// or deletes it when n has no pod side. byName is updated.
func (b *Backend) ensurePodSide(n vtep.Network, byName map[string]kLink, errs *errList) {
	name := b.PodSideName(n.VNI)
	have, exists := byName[name]
	if exists && have.Kind != "vxlan" {
		if n.PodSide != nil {
			errs.add(fmt.Errorf("network vni %d: device %s exists and is a %s, not vxlan", n.VNI, name, have.Kind))
		}
		return
	}
	if n.PodSide == nil {
		if exists {
			if err := b.k.DelLink(name); err != nil {
				errs.add(fmt.Errorf("delete %s: %w", name, err))
				return
			}
			delete(byName, name)
			b.log.Info("deleted pod-side device", "dev", name, "vni", n.VNI)
		}
		return
	}
	// Learning stays on, as on the pod's own agents' devices: a port the
	// brain has not read back from the pod's Neutron yet is still reached.
	want := vxlanAttrs{VNI: n.PodSide.Segment, Local: b.opts.Pod.VTEP.Addr(), Underlay: b.opts.Pod.Dev,
		Port: b.opts.Pod.Port, Learning: true}
	if exists && (have.VXLAN == nil || *have.VXLAN != want) {
		b.log.Info("recreating pod-side device with new attributes", "dev", name, "have", fmt.Sprint(have.VXLAN), "want", fmt.Sprint(want))
		if err := b.k.DelLink(name); err != nil {
			errs.add(fmt.Errorf("delete %s to recreate it: %w", name, err))
			return
		}
		exists = false
	}
	if exists {
		return
	}
	if err := b.k.AddVXLAN(name, want, b.opts.MTU); err != nil {
		errs.add(fmt.Errorf("add pod-side vxlan %s: %w", name, err))
		return
	}
	b.log.Info("created pod-side device", "dev", name, "vni", n.VNI, "segment", n.PodSide.Segment, "local", want.Local, "port", want.Port)
	byName[name] = kLink{Name: name, Kind: "vxlan", MTU: b.opts.MTU, VXLAN: &want}
}

// syncPodSide programs n's pod-side FDB: the pod's ports -> their compute
// VTEPs, and a flood entry per compute VTEP.
func (b *Backend) syncPodSide(n vtep.Network, res *vtep.Result, errs *errList) {
	if n.PodSide == nil {
		return
	}
	b.syncDevFDB(b.PodSideName(n.VNI), n.VNI, n.PodSide.MACs, n.PodSide.Flood, res, errs)
}

// syncVIP holds the pod VTEP address on its device exactly while the
// backend serves a pod side, and announces it when it takes it.
func (b *Backend) syncVIP(k kernel, serve bool, errs *errList) {
	vip := b.opts.Pod.VTEP
	vk, ok := k.(vipKernel)
	if !vip.IsValid() || !ok {
		return
	}
	dev := b.opts.Pod.Dev
	addrs, err := vk.Addrs(dev)
	if err != nil {
		errs.add(fmt.Errorf("list addresses of %s: %w", dev, err))
		return
	}
	held := false
	for _, a := range addrs {
		if a.Addr() == vip.Addr() {
			held = true
		}
	}
	switch {
	case serve && !held:
		if err := vk.AddAddr(dev, vip); err != nil {
			errs.add(fmt.Errorf("take pod vtep %s on %s: %w", vip, dev, err))
			return
		}
		b.log.Info("took the pod vtep", "addr", vip, "dev", dev)
		b.announce(vk, dev, vip.Addr(), b.opts.Pod.Announce)
	case !serve && held:
		if err := vk.DelAddr(dev, vip); err != nil {
			errs.add(fmt.Errorf("release pod vtep %s on %s: %w", vip, dev, err))
			return
		}
		b.log.Info("released the pod vtep", "addr", vip, "dev", dev)
	}
}

// announce sends n announcements of a, the first now and the others 200 ms
// apart in the background (a lost first one must not leave the pod's hosts
// on the old holder until their neighbor entries expire).
func (b *Backend) announce(vk vipKernel, dev string, a netip.Addr, n int) {
	if err := vk.Announce(dev, a); err != nil {
		b.log.Warn("announce pod vtep", "addr", a, "dev", dev, "err", err)
	}
	if n <= 1 {
		return
	}
	time.AfterFunc(200*time.Millisecond, func() { b.announce(vk, dev, a, n-1) })
}
