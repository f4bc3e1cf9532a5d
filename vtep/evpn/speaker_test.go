package evpn

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// testSpeaker is a real GoBGP (embedded, not listening, no neighbor).
func testSpeaker(t *testing.T, sock string) *speaker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := Options{ASN: 65000, RouterID: self, ListenPort: -1, SocketDir: t.TempDir(), SpeakerSocket: sock,
		Logger: slog.New(slog.DiscardHandler)}
	s, err := startSpeaker(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exportRoutes(n int) map[key]route {
	want := map[key]route{}
	for vni := uint32(100); vni < 102; vni++ {
		r := route{VNI: vni, Type: typeMulticast, NextHop: self}
		want[r.key()] = r
		for i := range n {
			r := route{VNI: vni, Type: typeMACIP, MAC: mac(fmt.Sprintf("fa:16:3e:00:%02x:%02x", i>>8, i&0xff)), NextHop: self, Seq: uint32(i % 3)}
			want[r.key()] = r
		}
	}
	return want
}

// syncExport is one export pass as syncBGP runs it.
func (s *speaker) syncExport(t *testing.T, attrs netAttrs, want map[key]route) (withdrawn, advertised int) {
	t.Helper()
	ctx := context.Background()
	for k, r := range want {
		var err error
		if want[k], err = attrs.fill(r); err != nil {
			t.Fatal(err)
		}
	}
	ours, _, err := s.list(ctx, nil, self)
	if err != nil {
		t.Fatal(err)
	}
	w, a := exportDiff(ours, want)
	if err := s.send(ctx, attrs, w, a); err != nil {
		t.Fatal(err)
	}
	return len(w), len(a)
}

// TestSpeakerRDChange: routes advertised under an old RD template are
// withdrawn when the agent comes back with another, through GoBGP itself;
// and a second pass changes nothing.
func TestSpeakerRDChange(t *testing.T) {
	s := testSpeaker(t, "")
	defer s.stop()
	want := exportRoutes(2500) // more than one AddPathStream message
	old := netAttrs{asn: 65000, rd: "192.0.2.10:{vni}", rt: DefaultTemplate}
	if w, a := s.syncExport(t, old, want); w != 0 || a != len(want) {
		t.Fatalf("first pass: withdrew %d advertised %d, want 0 %d", w, a, len(want))
	}
	if w, a := s.syncExport(t, old, exportRoutes(2500)); w != 0 || a != 0 {
		t.Fatalf("same again: withdrew %d advertised %d", w, a)
	}
	now := netAttrs{asn: 65000, rd: DefaultTemplate, rt: DefaultTemplate}
	if w, a := s.syncExport(t, now, exportRoutes(2500)); w != len(want) || a != len(want) {
		t.Fatalf("RD changed: withdrew %d advertised %d, want %d each", w, a, len(want))
	}
	ours, _, err := s.list(context.Background(), nil, self)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != len(want) {
		t.Fatalf("%d routes of ours in the RIB, want %d", len(ours), len(want))
	}
	for _, r := range ours {
		if d := fmt.Sprintf("65000:%d", r.VNI); rdString(r.RD) != d {
			t.Fatalf("route %+v under rd %s, want %s", r, rdString(r.RD), d)
		}
	}
}

// TestSpeakerKeptAcrossClients is l2span-bgpd's case: a second client
// (the restarted agent) finds BGP running with its routes and neighbors,
// and neither restarts BGP nor re-adds a neighbor.
func TestSpeakerKeptAcrossClients(t *testing.T) {
	emb := testSpeaker(t, "")
	defer emb.stop()
	sock := emb.opts.SocketDir + "/gobgp.sock"
	emb.opts.Neighbors = []Neighbor{{Address: netip.MustParseAddr("192.0.2.99"), RemoteAS: 65000}}
	emb.opts.RestartTime, emb.opts.HoldTime = DefaultRestartTime, DefaultHoldTime
	attrs := netAttrs{asn: 65000, rd: DefaultTemplate, rt: DefaultTemplate}
	emb.syncExport(t, attrs, exportRoutes(10))
	if err := emb.addPeers(context.Background()); err != nil {
		t.Fatal(err)
	}

	c := testSpeaker(t, sock) // a client of the same server
	defer c.close()
	c.opts.Neighbors = emb.opts.Neighbors
	if started, err := c.ensureGlobal(context.Background()); err != nil || started {
		t.Fatalf("ensureGlobal on a running speaker: started %v err %v", started, err)
	}
	if w, a := c.syncExport(t, attrs, exportRoutes(10)); w != 0 || a != 0 {
		t.Fatalf("restarted client: withdrew %d advertised %d, want nothing", w, a)
	}
	if err := c.addPeers(context.Background()); err != nil || !c.peersAdded {
		t.Fatalf("addPeers on a configured speaker: %v", err)
	}
	n := 0
	stream, err := c.client.ListPeer(context.Background(), &api.ListPeerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d neighbors, want 1", n)
	}
	// Another AS: BGP is restarted (and its routes go).
	c.opts.ASN = 65001
	if started, err := c.ensureGlobal(context.Background()); err != nil || !started {
		t.Fatalf("ensureGlobal with another AS: started %v err %v", started, err)
	}
	if ours, _, _ := c.list(context.Background(), nil, self); len(ours) != 0 {
		t.Fatalf("%d routes after a restart of BGP", len(ours))
	}
}
