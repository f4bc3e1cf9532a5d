package bpf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/test/netns"
)

// privateBPFFS mounts a bpffs of its own in a temp dir and unmounts it at
// cleanup, so tests never need (or touch) /sys/fs/bpf.
func privateBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount private bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount private bpffs: %v", err)
		}
	})
	return filepath.Join(dir, "l2span")
}

// addVeth creates the veth pair name <-> name+"p" in ns, both up.
func addVeth(t testing.TB, ns *netns.NS, name string) {
	t.Helper()
	h := ns.Handle()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, n := range []string{name, name + "p"} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func newManager(t testing.TB, ns *netns.NS, pinDir string, mode Mode) *Manager {
	t.Helper()
	m, err := New(Options{NetnsPath: ns.Path(), PinDir: pinDir, Mode: mode})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mustSet(t testing.TB, m *Manager, as []Attachment) Result {
	t.Helper()
	res, err := m.Set(context.Background(), as)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	return res
}

func attachmentFor(ifname, own string, prefixes []string, gws ...string) Attachment {
	a := Attachment{Interface: ifname, OwnDVRMAC: mustMAC(own)}
	for _, p := range prefixes {
		a.RemoteDVRPrefixes = append(a.RemoteDVRPrefixes, macaddr.MustParsePrefix(p))
	}
	for _, g := range gws {
		a.GatewayIPs = append(a.GatewayIPs, netip.MustParseAddr(g))
	}
	return a
}

// kernelView is what the kernel says is attached to ifname, read without
// the Manager: TCX programs by query, legacy filters by netlink.
func kernelView(t testing.TB, ns *netns.NS, ifname string) (ingress, egress []string) {
	t.Helper()
	l, err := ns.Handle().LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	names := func(ids []link.AttachedProgram) []string {
		var out []string
		for _, a := range ids {
			p, err := ebpf.NewProgramFromID(a.ID)
			if err != nil {
				t.Fatal(err)
			}
			info, err := p.Info()
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, "tcx:"+info.Name)
		}
		return out
	}
	err = ns.Do(func() error {
		for _, d := range []struct {
			at  ebpf.AttachType
			out *[]string
		}{{ebpf.AttachTCXIngress, &ingress}, {ebpf.AttachTCXEgress, &egress}} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: d.at})
			if err != nil {
				return fmt.Errorf("query tcx: %w", err)
			}
			*d.out = append(*d.out, names(r.Programs)...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		parent uint32
		out    *[]string
	}{{netlink.HANDLE_MIN_INGRESS, &ingress}, {netlink.HANDLE_MIN_EGRESS, &egress}} {
		fs, err := ns.Handle().FilterList(l, d.parent)
		if err != nil {
			continue // no clsact
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				*d.out = append(*d.out, fmt.Sprintf("cls:%s", bf.Name))
			}
		}
	}
	return ingress, egress
}

func wantAttached(t testing.TB, ns *netns.NS, ifname string, mode Mode, attached bool) {
	t.Helper()
	in, eg := kernelView(t, ns, ifname)
	var wantIn, wantEg []string
	if attached {
		p := "tcx:"
		if mode == ModeLegacyTC {
			p = "cls:"
		}
		wantIn, wantEg = []string{p + "l2s_to_overlay"}, []string{p + "l2s_to_pod"}
	}
	if fmt.Sprint(in) != fmt.Sprint(wantIn) || fmt.Sprint(eg) != fmt.Sprint(wantEg) {
		t.Errorf("%s: ingress %v egress %v, want ingress %v egress %v", ifname, in, eg, wantIn, wantEg)
	}
}

func TestManagerLifecycle(t *testing.T) {
	for _, mode := range []Mode{ModeTCX, ModeLegacyTC} {
		t.Run(mode.String(), func(t *testing.T) { testManagerLifecycle(t, mode) })
	}
}

func testManagerLifecycle(t *testing.T, mode Mode) {
	netns.RequireRoot(t)
	pins := privateBPFFS(t)
	ns := netns.New(t, "gw")
	addVeth(t, ns, "seg0")
	addVeth(t, ns, "seg1")

	a0 := attachmentFor("seg0", "fa:16:3f:aa:00:01",
		[]string{"fa:16:3f:01:00:00/32", "fa:16:40:00:00:00/24"}, "203.0.113.254", "2001:db8::fffe")
	a1 := attachmentFor("seg1", "fa:16:3f:aa:00:01", []string{"fa:16:3f:01:00:00/32"}, "198.51.100.1")

	m := newManager(t, ns, pins, mode)
	if m.Mode() != mode {
		t.Fatalf("mode %v, want %v", m.Mode(), mode)
	}
	res := mustSet(t, m, []Attachment{a0})
	if want := (Result{Attached: 2, EntriesWritten: 3}); res != want {
		t.Errorf("first Set: %+v, want %+v", res, want)
	}
	wantAttached(t, ns, "seg0", mode, true)
	wantAttached(t, ns, "seg1", mode, false)

	// Idempotent: the same state again changes nothing.
	if res := mustSet(t, m, []Attachment{a0}); res.Changed() {
		t.Errorf("second Set changed %+v", res)
	}

	// The agent exits (Close never detaches) and a new one re-adopts:
	// attachments are kept and switched to the new programs in place, maps
	// and counters are the pinned ones.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wantAttached(t, ns, "seg0", mode, true)
	m2 := newManager(t, ns, pins, mode)
	res = mustSet(t, m2, []Attachment{a0})
	if want := (Result{Replaced: 2}); res != want {
		t.Errorf("Set after restart: %+v, want %+v", res, want)
	}
	if res := mustSet(t, m2, []Attachment{a0}); res.Changed() {
		t.Errorf("Set after restart, again: changed %+v", res)
	}
	wantAttached(t, ns, "seg0", mode, true)

	// A second interface, one prefix fewer on the first.
	a0b := a0
	a0b.RemoteDVRPrefixes = a0.RemoteDVRPrefixes[:1]
	res = mustSet(t, m2, []Attachment{a0b, a1})
	if want := (Result{Attached: 2, EntriesWritten: 2, EntriesDeleted: 1}); res != want {
		t.Errorf("Set with seg1: %+v, want %+v", res, want)
	}
	wantAttached(t, ns, "seg1", mode, true)

	// An invalid attachment leaves its interface as it is.
	bad := a1
	bad.OwnDVRMAC = net.HardwareAddr{1, 2, 3}
	res, err := m2.Set(context.Background(), []Attachment{a0b, bad})
	if err == nil {
		t.Error("Set with an invalid attachment: no error")
	}
	if res.Changed() {
		t.Errorf("Set with an invalid attachment changed %+v", res)
	}
	wantAttached(t, ns, "seg1", mode, true)

	// Frames through the real attachment: a DHCP discover sent into seg0
	// (untagged, and with a VLAN tag the receiving stack moves into skb
	// metadata before TC) is dropped and counted.
	before, err := m2.Counters()
	if err != nil {
		t.Fatal(err)
	}
	discover := ipv4(protoUDP, "0.0.0.0", "255.255.255.255", 0, 0, udp(68, 67, make([]byte, 240)))
	sendFrame(t, ns, "seg0p", cat(eth(bcast, vmMAC, etIPv4), discover))
	sendFrame(t, ns, "seg0p", cat(eth(bcast, vmMAC, etIPv4, [2]uint16{etQ, 100}), discover))
	sendFrame(t, ns, "seg0p", cat(eth(bcast, vmMAC, etARP, [2]uint16{etQ, 100}), arp(1, vmMAC, "203.0.113.5", "00:00:00:00:00:00", "203.0.113.254")))
	waitCounters(t, m2, before, map[string]uint64{ActionDroppedDHCP: 2, ActionDroppedARP: 1})

	// Removal detaches and empties the maps.
	res = mustSet(t, m2, []Attachment{a0b})
	if want := (Result{Detached: 2, EntriesDeleted: 2}); res != want {
		t.Errorf("Set without seg1: %+v, want %+v", res, want)
	}
	wantAttached(t, ns, "seg1", mode, false)
	res = mustSet(t, m2, nil)
	if want := (Result{Detached: 2, EntriesDeleted: 2}); res != want {
		t.Errorf("Set(nil): %+v, want %+v", res, want)
	}
	wantAttached(t, ns, "seg0", mode, false)
	if ents, _ := os.ReadDir(filepath.Join(pins, "links")); len(ents) != 0 {
		t.Errorf("link pins left: %v", ents)
	}
}

// TestManagerInterfaceGone: a deleted interface takes its attachment with
// it; the next Set drops the defunct pin and the stale entries.
func TestManagerInterfaceGone(t *testing.T) {
	netns.RequireRoot(t)
	pins := privateBPFFS(t)
	ns := netns.New(t, "gw")
	addVeth(t, ns, "seg0")
	m := newManager(t, ns, pins, ModeTCX)
	a := attachmentFor("seg0", "fa:16:3f:aa:00:01", []string{"fa:16:3f:01:00:00/32"}, "203.0.113.254")
	mustSet(t, m, []Attachment{a})
	l, err := ns.Handle().LinkByName("seg0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle().LinkDel(l); err != nil {
		t.Fatal(err)
	}
	res, err := m.Set(context.Background(), []Attachment{a})
	if err == nil {
		t.Errorf("Set with a missing interface: err %v", err)
	}
	if want := (Result{EntriesDeleted: 2}); res != want {
		t.Errorf("Set with a missing interface: %+v, want %+v", res, want)
	}
	if ents, _ := os.ReadDir(filepath.Join(pins, "links")); len(ents) != 0 {
		t.Errorf("link pins left: %v", ents)
	}
}

func TestNewRefusesNonBPFFS(t *testing.T) {
	netns.RequireRoot(t)
	if _, err := New(Options{PinDir: t.TempDir()}); err == nil {
		t.Fatal("New on a tmpfs pin dir: no error")
	}
}

// sendFrame writes one raw frame out of ifname in ns.
func sendFrame(t testing.TB, ns *netns.NS, ifname string, frame []byte) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("send frame on %s: %v", ifname, err)
	}
}

// waitCounters waits until the counters rose by at least delta over before.
func waitCounters(t testing.TB, m *Manager, before, delta map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		now, err := m.Counters()
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for k, d := range delta {
			if now[k]-before[k] < d {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters %v, want a rise of %v over %v", now, delta, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
