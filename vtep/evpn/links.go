package evpn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// links keeps the veth pairs that join each network's overlay bridge to
// its pod-side bridge: "<prefix>x<VNI>" (in the overlay bridge) and
// "<prefix>y<VNI>" (in the pod-side bridge). The backend owns veths named
// so; it never touches another device.
type links struct {
	h      *netlink.Handle
	prefix string
	mtu    int
}

func openLinks(nsPath, prefix string, mtu int) (*links, error) {
	var h *netlink.Handle
	var err error
	if nsPath == "" {
		h, err = netlink.NewHandle()
	} else {
		var ns netns.NsHandle
		if ns, err = netns.GetFromPath(nsPath); err == nil {
			h, err = netlink.NewHandleAt(ns)
			ns.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink for veths: %w", err)
	}
	return &links{h: h, prefix: prefix, mtu: mtu}, nil
}

func (l *links) close() error {
	l.h.Close()
	return nil
}

// ensure makes a veth pair exist, up, for each VNI.
func (l *links) ensure(vnis []uint32, overlay, fabric func(uint32) string) error {
	var errs []error
	for _, vni := range vnis {
		a, z := overlay(vni), fabric(vni)
		la, errA := l.h.LinkByName(a)
		lz, errZ := l.h.LinkByName(z)
		if errA == nil && errZ == nil && la.Type() == "veth" && lz.Type() == "veth" {
			for _, ln := range []netlink.Link{la, lz} {
				if ln.Attrs().OperState != netlink.OperUp && ln.Attrs().Flags&1 == 0 {
					if err := l.h.LinkSetUp(ln); err != nil {
						errs = append(errs, fmt.Errorf("set %s up: %w", ln.Attrs().Name, err))
					}
				}
			}
			continue
		}
		// Half a pair (or something else by that name, of ours by
		// pattern) is replaced.
		for _, ln := range []netlink.Link{la, lz} {
			if ln != nil && ln.Type() == "veth" {
				l.h.LinkDel(ln)
			}
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: l.mtu}, PeerName: z}
		if err := l.h.LinkAdd(v); err != nil {
			errs = append(errs, fmt.Errorf("add veth %s <-> %s: %w", a, z, err))
			continue
		}
		for _, name := range []string{a, z} {
			if err := l.h.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
				errs = append(errs, fmt.Errorf("set %s up: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// prune deletes the veth pairs of VNIs not in vnis.
func (l *links) prune(vnis []uint32) error {
	want := map[uint32]bool{}
	for _, v := range vnis {
		want[v] = true
	}
	all, err := l.h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, ln := range all {
		rest, ok := strings.CutPrefix(ln.Attrs().Name, l.prefix+"x")
		if !ok || ln.Type() != "veth" || rest == "" || rest[0] == '0' {
			continue
		}
		vni, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || want[uint32(vni)] {
			continue
		}
		if err := l.h.LinkDel(ln); err != nil { // takes its peer with it
			errs = append(errs, fmt.Errorf("delete veth %s: %w", ln.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
