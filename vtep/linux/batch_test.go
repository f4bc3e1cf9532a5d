package linux

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// neighMsg must encode exactly what the netlink library sends for the same
// neighbor, so the batch path and the handle path are interchangeable.
func TestNeighMsgMatchesLibrary(t *testing.T) {
	for _, n := range []netlink.Neigh{
		fdbNeigh(7, fdbEntry{MAC: mustMAC("02:00:00:00:02:02"), VTEP: netip.MustParseAddr("198.51.100.12"), Owned: true}),
		fdbNeigh(7, fdbEntry{MAC: mustMAC("02:00:00:00:02:02"), Master: true, Owned: true}),
		neighNeigh(9, neighEntry{IP: netip.MustParseAddr("2001:db8::2"), MAC: mustMAC("02:00:00:00:02:02"), Owned: true}),
		neighNeigh(9, neighEntry{IP: netip.MustParseAddr("203.0.113.2"), MAC: mustMAC("02:00:00:00:02:02")}),
	} {
		flags := unix.NLM_F_CREATE | unix.NLM_F_REPLACE
		got := neighMsg(unix.RTM_NEWNEIGH, uint16(flags), &n)

		req := nl.NewNetlinkRequest(unix.RTM_NEWNEIGH, flags)
		req.AddData(&netlink.Ndmsg{Family: uint8(n.Family), Index: uint32(n.LinkIndex), State: uint16(n.State), Flags: uint8(n.Flags)})
		ip := n.IP.To4()
		if ip == nil {
			ip = n.IP.To16()
		}
		if ip != nil {
			req.AddData(nl.NewRtAttr(unix.NDA_DST, ip))
		}
		req.AddData(nl.NewRtAttr(unix.NDA_LLADDR, []byte(n.HardwareAddr)))
		want := req.Serialize()
		// The library sets NLM_F_REQUEST and its own sequence number; do()
		// fills those in for the batch path.
		want[6] &^= unix.NLM_F_REQUEST
		copy(want[8:16], make([]byte, 8))
		if !bytes.Equal(got, want) {
			t.Errorf("%v:\n got %x\nwant %x", n, got, want)
		}
	}
	_ = net.IPv4len
}
