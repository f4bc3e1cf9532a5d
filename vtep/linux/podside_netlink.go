package linux

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/internal/nsexec"
)

var _ vipKernel = (*nlKernel)(nil)

func (k *nlKernel) Addrs(dev string) ([]netip.Prefix, error) {
	l, err := k.link(dev)
	if err != nil {
		return nil, err
	}
	as, err := dump(func() ([]netlink.Addr, error) { return k.h.AddrList(l, unix.AF_UNSPEC) })
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

func nlAddr(a netip.Prefix) *netlink.Addr {
	bits := 32
	if a.Addr().Is6() {
		bits = 128
	}
	na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), bits)}}
	if a.Addr().Is6() {
		na.Flags = unix.IFA_F_NODAD // the address moves: no duplicate detection delay
	}
	return na
}

func (k *nlKernel) AddAddr(dev string, a netip.Prefix) error {
	l, err := k.link(dev)
	if err != nil {
		return err
	}
	return k.h.AddrReplace(l, nlAddr(a))
}

func (k *nlKernel) DelAddr(dev string, a netip.Prefix) error {
	l, err := k.link(dev)
	if err != nil {
		return err
	}
	return k.h.AddrDel(l, nlAddr(a))
}

// Announce sends a gratuitous ARP request (sender and target a, broadcast)
// from dev; every host of the segment updates its entry for a. IPv6
// addresses are added with NODAD and the kernel's own unsolicited
// advertisements are left to it.
func (k *nlKernel) Announce(dev string, a netip.Addr) error {
	if !a.Is4() {
		return nil
	}
	l, err := k.link(dev)
	if err != nil {
		return err
	}
	mac := l.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("announce %s on %s: no ethernet address", a, dev)
	}
	ns := netns.None()
	if k.nsPath != "" {
		if ns, err = netns.GetFromPath(k.nsPath); err != nil {
			return fmt.Errorf("open netns %s: %w", k.nsPath, err)
		}
		defer ns.Close()
	}
	frame := garp(mac, a)
	return nsexec.Run(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Attrs().Index, Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("send gratuitous arp for %s on %s: %w", a, dev, err)
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garp is an Ethernet frame with an ARP request whose sender and target
// are both a, from mac to broadcast.
func garp(mac net.HardwareAddr, a netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	arp := f[14:]
	binary.BigEndian.PutUint16(arp[0:], 1)             // Ethernet
	binary.BigEndian.PutUint16(arp[2:], unix.ETH_P_IP) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1) // request
	ip := a.As4()
	copy(arp[8:14], mac)
	copy(arp[14:18], ip[:])
	copy(arp[24:28], ip[:]) // target hardware address stays zero
	return f
}
