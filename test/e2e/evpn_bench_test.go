package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/test/frrtest"
	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/vtep"
	"github.com/l2span/l2span/vtep/evpn"
	"github.com/l2span/l2span/vtep/linux"
)

// benchMACs is 100k; L2SPAN_EVPN_BENCH_MACS sets another count.
var benchMACs = func() int {
	if n, err := strconv.Atoi(os.Getenv("L2SPAN_EVPN_BENCH_MACS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}()

// BenchmarkEVPNInstall100k: 100k remote MACs exported by the EVPN backend
// (l2span-bgpd, GoBGP) -> extern_learn in an FRR VTEP's kernel, beside
// the same FRR learning 100k MACs from another FRR VTEP (their local
// MACs: 100k bridge FDB entries added at once), in the same run. Each
// iteration times both from the first action (Set; bridge -batch) to the
// last entry in the receiving kernel, then removes them (not timed).
func BenchmarkEVPNInstall100k(b *testing.B) {
	frrtest.Require(b)
	netns.RequireRoot(b)
	rig := netns.NewRig(b)
	bin := binaries(b)
	gwHost, rxHost, txHost := rig.AddGateway("pod1", "gw"), rig.AddGateway("pod1", "rx"), rig.AddGateway("pod1", "tx")
	const vniGW, vniFRR = 100, 200
	rx := frrtest.Start(b, rxHost.NS, frrtest.Config{ASN: 65000, RouterID: rxHost.VTEP, VNIs: []uint32{vniGW, vniFRR},
		Neighbors: []netip.Addr{gwHost.VTEP, txHost.VTEP}})
	frrtest.Start(b, txHost.NS, frrtest.Config{ASN: 65000, RouterID: txHost.VTEP, VNIs: []uint32{vniFRR},
		Neighbors: []netip.Addr{rxHost.VTEP}})
	sock := filepath.Join(b.TempDir(), "bgpd.sock")
	startProc(b, gwHost.NS, "bgpd-gw", bin+"/l2span-bgpd", "--socket", sock, "--log-level", "warn")
	eventually(b, 10*time.Second, "l2span-bgpd socket", func() error { _, err := os.Stat(sock); return err })
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	be, err := evpn.New(context.Background(), evpn.Options{ASN: 65000, VTEP: gwHost.VTEP, SpeakerSocket: sock,
		Neighbors: []evpn.Neighbor{{Address: rxHost.VTEP, RemoteAS: 65000}}, HoldTime: 9 * time.Second, ImportWait: 2 * time.Second,
		Overlay: linux.Options{NetnsPath: gwHost.Path(), LocalVTEP: gwHost.VTEP, UnderlayDev: gwHost.UnderlayDev, Port: 4790}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()

	// tx's local MACs: entries on a bridge port of br200 that never age.
	txHost.MustExec("ip", "link", "add", "hb0", "type", "veth", "peer", "name", "hb1")
	txHost.MustExec("ip", "link", "set", "hb0", "master", fmt.Sprintf("br%d", vniFRR))
	txHost.MustExec("ip", "link", "set", fmt.Sprintf("br%d", vniFRR), "type", "bridge", "ageing_time", "360000")
	txHost.MustExec("ip", "link", "set", "hb1", "up") // dynamic entries need a port with carrier
	txHost.MustExec("ip", "link", "set", "hb0", "up")
	macs := make([]vtep.MACEntry, benchMACs)
	remote := netip.MustParseAddr("203.0.113.200") // another pod's gateway
	for i := range benchMACs {
		macs[i] = vtep.MACEntry{MAC: net.HardwareAddr{0x02, 0xbe, 0, byte(i >> 16), byte(i >> 8), byte(i)}, VTEP: remote}
	}
	// FRR's side uses another MAC range each run (third byte): tx's zebra
	// misses some of 100k deletions, so a run cannot count on a clean slate.
	batches := func(run int) (add, del string) {
		var a, d strings.Builder
		for i := range benchMACs {
			m := net.HardwareAddr{0x02, 0xbe, byte(run + 1), byte(i >> 16), byte(i >> 8), byte(i)}
			fmt.Fprintf(&a, "fdb add %s dev hb0 master dynamic\n", m)
			fmt.Fprintf(&d, "fdb del %s dev hb0 master\n", m)
		}
		add, del = filepath.Join(b.TempDir(), "fdb-add.batch"), filepath.Join(b.TempDir(), "fdb-del.batch")
		if err := os.WriteFile(add, []byte(a.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(del, []byte(d.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return add, del
	}
	ctx := context.Background()
	set := func(with []vtep.MACEntry) {
		if _, err := be.Set(ctx, vtep.Config{Networks: []vtep.Network{{VNI: vniGW, MACs: with}}}); err != nil {
			b.Fatal(err)
		}
	}
	set(nil)
	eventually(b, 30*time.Second, "rx's sessions up", func() error {
		for _, p := range []netip.Addr{gwHost.VTEP, txHost.VTEP} {
			if st, err := rx.PeerState(p); err != nil || st != "Established" {
				return fmt.Errorf("%s: %s %v", p, st, err)
			}
		}
		return nil
	})

	var gwRates, frrRates []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch, unbatch := batches(i)
		b.StartTimer()
		start := time.Now()
		set(macs)
		setDone := time.Since(start)
		waitExtern(b, rx, vniGW, gwHost.VTEP, 0, benchMACs)
		gw := time.Since(start)
		start = time.Now()
		txHost.MustExec("bridge", "-batch", batch)
		waitExtern(b, rx, vniFRR, txHost.VTEP, byte(i+1), benchMACs)
		frr := time.Since(start)
		gwRates = append(gwRates, float64(benchMACs)/gw.Seconds())
		frrRates = append(frrRates, float64(benchMACs)/frr.Seconds())
		b.Logf("run %d: l2span %s (Set returned after %s, %.0f MACs/s), FRR %s (%.0f MACs/s)", i, gw.Round(time.Millisecond),
			setDone.Round(time.Millisecond), gwRates[i], frr.Round(time.Millisecond), frrRates[i])
		b.StopTimer()
		set(nil)
		// One by one: a link-down flush of 100k entries overflows
		// zebra's netlink socket and leaves some advertised.
		txHost.MustExec("bridge", "-batch", unbatch)
		waitExtern(b, rx, vniGW, gwHost.VTEP, 0, 0)
		b.StartTimer()
	}
	b.ReportMetric(slices.Min(gwRates), "l2span-min-MACs/s")
	b.ReportMetric(slices.Max(gwRates), "l2span-max-MACs/s")
	b.ReportMetric(slices.Min(frrRates), "frr-min-MACs/s")
	b.ReportMetric(slices.Max(frrRates), "frr-max-MACs/s")
	var ratio float64
	for i := range gwRates {
		ratio += gwRates[i] / frrRates[i]
	}
	b.ReportMetric(ratio/float64(len(gwRates)), "l2span/frr")
	b.ReportMetric(0, "ns/op")
}

// waitExtern waits until the router's kernel has exactly want extern_learn
// entries of the MAC range 02:be:<run>:... toward dst on vx<vni>, polling
// a netlink dump.
func waitExtern(b *testing.B, r *frrtest.Router, vni uint32, dst netip.Addr, run byte, want int) {
	b.Helper()
	link, err := r.NS.Handle().LinkByName(fmt.Sprintf("vx%d", vni))
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	defer func() { b.Logf("vx%d: %d entries toward %s", vni, want, dst) }()
	n := -1
	for time.Now().Before(deadline) {
		es, err := r.NS.Handle().NeighList(link.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			b.Fatal(err)
		}
		n = 0
		for _, e := range es {
			if e.Flags&netlink.NTF_EXT_LEARNED != 0 && e.IP.Equal(dst.AsSlice()) && e.HardwareAddr[0] == 0x02 && e.HardwareAddr[1] == 0xbe && e.HardwareAddr[2] == run {
				n++
			}
		}
		if n == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("vx%d in %s: %d extern_learn entries toward %s, want %d", vni, r.NS.Name(), n, dst, want)
}
