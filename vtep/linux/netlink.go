package linux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nlKernel is the real kernel: one persistent netlink.Handle for devices
// and dumps, and one raw NETLINK_ROUTE socket that writes neighbor and FDB
// entries in batches (many RTM_NEWNEIGH in one sendmsg, acks read back by
// sequence number), which is several times faster than a round trip per
// entry.
type nlKernel struct {
	h   *netlink.Handle
	raw *batchConn // nil: write entries one by one through h
	// nsPath is the namespace ("" for the caller's), for packet sockets.
	nsPath string
}

var _ kernel = (*nlKernel)(nil)

// openNetlink opens the handle and the batch socket in the namespace at
// path ("" for the current one).
func openNetlink(path string) (*nlKernel, error) {
	ns := netns.None()
	if path != "" {
		var err error
		ns, err = netns.GetFromPath(path)
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", path, err)
		}
		defer ns.Close()
	}
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	raw, err := openBatchConn(ns)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &nlKernel{h: h, raw: raw, nsPath: path}, nil
}

// Close closes both sockets.
func (k *nlKernel) Close() error {
	k.h.Close()
	if k.raw != nil {
		return k.raw.Close()
	}
	return nil
}

// retry a dump that the kernel interrupted because the table changed.
func dump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func (k *nlKernel) Links() ([]kLink, error) {
	ls, err := dump(k.h.LinkList)
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(ls))
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]kLink, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		kl := kLink{
			Name:   a.Name,
			Kind:   l.Type(),
			Master: names[a.MasterIndex],
			Up:     a.Flags&net.FlagUp != 0,
			MTU:    a.MTU,
		}
		if vx, ok := l.(*netlink.Vxlan); ok {
			local, _ := netip.AddrFromSlice(vx.SrcAddr)
			kl.VXLAN = &vxlanAttrs{
				VNI:      uint32(vx.VxlanId),
				Local:    local.Unmap(),
				Underlay: names[vx.VtepDevIndex],
				Port:     uint16(vx.Port),
				Learning: vx.Learning,
			}
		}
		out = append(out, kl)
	}
	return out, nil
}

func (k *nlKernel) link(name string) (netlink.Link, error) {
	return k.h.LinkByName(name)
}

func (k *nlKernel) AddBridge(name string, mtu int) error {
	return k.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
}

func (k *nlKernel) AddVXLAN(name string, a vxlanAttrs, mtu int) error {
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   int(a.VNI),
		SrcAddr:   a.Local.AsSlice(),
		Port:      int(a.Port), // 0 would mean the legacy 8472
		Learning:  a.Learning,
	}
	if a.Underlay != "" {
		ul, err := k.link(a.Underlay)
		if err != nil {
			return fmt.Errorf("underlay %s: %w", a.Underlay, err)
		}
		vx.VtepDevIndex = ul.Attrs().Index
	}
	return k.h.LinkAdd(vx)
}

func (k *nlKernel) DelLink(name string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkDel(l)
}

func (k *nlKernel) SetUp(name string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkSetUp(l)
}

func (k *nlKernel) SetMTU(name string, mtu int) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkSetMTU(l, mtu)
}

func (k *nlKernel) SetMaster(name, master string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	if master == "" {
		return k.h.LinkSetNoMaster(l)
	}
	m, err := k.link(master)
	if err != nil {
		return err
	}
	return k.h.LinkSetMaster(l, m)
}

func (k *nlKernel) PortFlags(name string) (learning, neighSuppress bool, err error) {
	l, err := k.link(name)
	if err != nil {
		return false, false, err
	}
	pi, err := k.h.LinkGetProtinfo(l)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false, false, err
	}
	return pi.Learning, pi.NeighSuppress, nil
}

func (k *nlKernel) SetPortFlags(name string, learning, neighSuppress bool) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return errors.Join(k.h.LinkSetLearning(l, learning), k.h.LinkSetBrNeighSuppress(l, neighSuppress))
}

func (k *nlKernel) FDB(dev string) ([]fdbEntry, error) {
	l, err := k.link(dev)
	if err != nil {
		return nil, err
	}
	idx := l.Attrs().Index
	ns, err := dump(func() ([]netlink.Neigh, error) { return k.h.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return nil, err
	}
	out := make([]fdbEntry, 0, len(ns))
	for _, n := range ns {
		if n.LinkIndex != idx || len(n.HardwareAddr) != 6 {
			continue
		}
		// The device's own entries carry NTF_SELF; its bridge's entries
		// come without it (and with NDA_MASTER), not with NTF_MASTER.
		e := fdbEntry{
			MAC:    n.HardwareAddr,
			Master: n.Flags&unix.NTF_SELF == 0,
			Owned:  n.Flags&unix.NTF_EXT_LEARNED != 0,
		}
		if !e.Master {
			e.VTEP, _ = netip.AddrFromSlice(n.IP)
			e.VTEP = e.VTEP.Unmap()
		}
		out = append(out, e)
	}
	return out, nil
}

func (k *nlKernel) Neighs(dev string) ([]neighEntry, error) {
	l, err := k.link(dev)
	if err != nil {
		return nil, err
	}
	idx := l.Attrs().Index
	ns, err := dump(func() ([]netlink.Neigh, error) { return k.h.NeighList(idx, unix.AF_UNSPEC) })
	if err != nil {
		return nil, err
	}
	out := make([]neighEntry, 0, len(ns))
	for _, n := range ns {
		if n.LinkIndex != idx || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		out = append(out, neighEntry{
			IP:        ip.Unmap(),
			MAC:       n.HardwareAddr,
			Owned:     n.Flags&unix.NTF_EXT_LEARNED != 0,
			Permanent: n.State&unix.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

// fdbNeigh is the netlink form of an FDB entry on the device at idx.
func fdbNeigh(idx int, e fdbEntry) netlink.Neigh {
	n := netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		HardwareAddr: e.MAC,
	}
	if e.Master {
		// NUD_NOARP is "static"; NUD_PERMANENT on a bridge means "local"
		// (delivered to the bridge itself), which would be wrong here.
		n.Flags = unix.NTF_MASTER
		n.State = unix.NUD_NOARP
	} else {
		n.Flags = unix.NTF_SELF
		n.State = unix.NUD_PERMANENT
		n.IP = e.VTEP.AsSlice()
	}
	if e.Owned {
		n.Flags |= unix.NTF_EXT_LEARNED
	}
	return n
}

func neighNeigh(idx int, e neighEntry) netlink.Neigh {
	n := netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_INET,
		IP:           e.IP.AsSlice(),
		HardwareAddr: e.MAC,
		State:        unix.NUD_PERMANENT,
	}
	if e.IP.Is6() {
		n.Family = unix.AF_INET6
	}
	if e.Owned {
		n.Flags = unix.NTF_EXT_LEARNED
	}
	return n
}

func errAll(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func (k *nlKernel) writeNeighs(dev string, ns []netlink.Neigh, add []bool, del bool) []error {
	if k.raw != nil {
		msgs := make([][]byte, len(ns))
		for i := range ns {
			flags := uint16(unix.NLM_F_CREATE | unix.NLM_F_REPLACE)
			typ := uint16(unix.RTM_NEWNEIGH)
			switch {
			case del:
				typ, flags = unix.RTM_DELNEIGH, 0
			case add[i]:
				flags = unix.NLM_F_CREATE | unix.NLM_F_APPEND
			}
			msgs[i] = neighMsg(typ, flags, &ns[i])
		}
		return k.raw.do(msgs)
	}
	errs := make([]error, len(ns))
	for i := range ns {
		switch {
		case del:
			errs[i] = k.h.NeighDel(&ns[i])
		case add[i]:
			errs[i] = k.h.NeighAppend(&ns[i])
		default:
			errs[i] = k.h.NeighSet(&ns[i])
		}
	}
	return errs
}

func (k *nlKernel) AddFDB(dev string, es []fdbEntry) []error {
	l, err := k.link(dev)
	if err != nil {
		return errAll(len(es), err)
	}
	ns := make([]netlink.Neigh, len(es))
	app := make([]bool, len(es))
	for i, e := range es {
		ns[i] = fdbNeigh(l.Attrs().Index, e)
		app[i] = e.Append
	}
	return k.writeNeighs(dev, ns, app, false)
}

func (k *nlKernel) DelFDB(dev string, es []fdbEntry) []error {
	l, err := k.link(dev)
	if err != nil {
		return errAll(len(es), err)
	}
	ns := make([]netlink.Neigh, len(es))
	for i, e := range es {
		ns[i] = fdbNeigh(l.Attrs().Index, e)
		ns[i].Flags &^= unix.NTF_EXT_LEARNED
	}
	return k.writeNeighs(dev, ns, nil, true)
}

func (k *nlKernel) AddNeighs(dev string, es []neighEntry) []error {
	l, err := k.link(dev)
	if err != nil {
		return errAll(len(es), err)
	}
	ns := make([]netlink.Neigh, len(es))
	for i, e := range es {
		ns[i] = neighNeigh(l.Attrs().Index, e)
	}
	return k.writeNeighs(dev, ns, make([]bool, len(es)), false)
}

func (k *nlKernel) DelNeighs(dev string, es []neighEntry) []error {
	l, err := k.link(dev)
	if err != nil {
		return errAll(len(es), err)
	}
	ns := make([]netlink.Neigh, len(es))
	for i, e := range es {
		ns[i] = neighNeigh(l.Attrs().Index, e)
		ns[i].Flags = 0
	}
	return k.writeNeighs(dev, ns, nil, true)
}
