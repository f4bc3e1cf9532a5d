//go:build linux

package netns_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
)

func TestNSLifecycle(t *testing.T) {
	netns.RequireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		ns := netns.New(t, "a")
		name = ns.Name()
		if !strings.HasPrefix(name, netns.Tag(t)+"-") || len(netns.Tag(t)) != 9 {
			t.Fatalf("name %q, tag %q", name, netns.Tag(t))
		}
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Fatal(err)
		}
		out := ns.MustExec("ip", "-o", "link", "show", "lo")
		if !strings.Contains(string(out), "UP") {
			t.Fatalf("lo not up: %s", out)
		}
		if _, err := ns.Start("sleep", "60"); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("netns %s left behind: %v", name, err)
	}
}

func TestRigSameSegment(t *testing.T) {
	r := netns.NewRig(t)
	gw := r.AddGateway("pod1", "gwa")
	if gw.VTEP != netip.MustParseAddr("198.51.100.11") {
		t.Fatalf("vtep %s", gw.VTEP)
	}
	seg := r.AddSegment(gw, "seg0")
	gw2 := r.AddGateway("pod1", "gwb")
	r.Attach(seg, gw2, "seg0")
	a := r.AddVM("pod1", seg, "a", netns.MustMAC("02:00:00:00:01:01"),
		netip.MustParsePrefix("203.0.113.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	b := r.AddVM("pod1", seg, "b", netns.MustMAC("02:00:00:00:01:02"),
		netip.MustParsePrefix("203.0.113.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ip := range []netip.Addr{b.IPv4.Addr(), b.IPv6.Addr()} {
		if err := netns.Ping(ctx, a.NS, ip); err != nil {
			t.Fatal(err)
		}
	}
	// The gateways reach each other on the underlay.
	if err := netns.Ping(ctx, gw.NS, gw2.VTEP); err != nil {
		t.Fatal(err)
	}
	p, err := netns.StartPinger(b.NS, a.IPv4.Addr(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	sent, got := p.Stop(200 * time.Millisecond)
	if sent < 5 || got != sent {
		t.Fatalf("continuous ping: sent %d received %d", sent, got)
	}
}
