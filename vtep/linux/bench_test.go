package linux

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/vtep"
)

const benchMACs = 100_000

// benchConfig is one network with n remote MACs spread over 16 VTEPs.
func benchConfig(n int) vtep.Config {
	nw := vtep.Network{VNI: 4242, MACs: make([]vtep.MACEntry, 0, n)}
	for i := range n {
		mac := net.HardwareAddr{0x02, 0x42, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		nw.MACs = append(nw.MACs, vtep.MACEntry{MAC: mac, VTEP: netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i%16)})})
	}
	return vtep.Config{Networks: []vtep.Network{nw}}
}

// BenchmarkProgram100k programs 100,000 remote MACs into a fresh VXLAN
// device: through the backend (Set: read back, diff, batched netlink
// writes), through the backend writing one netlink round trip per entry
// (the plain netlink.Handle path), and with `bridge -batch` of the very
// same entries (self MAC -> VTEP and master MAC -> port, both
// extern_learn) into an identical device. Each MAC is two kernel entries.
//
//	sudo go test -run '^$' -bench Program100k -benchtime 3x ./vtep/linux/
func BenchmarkProgram100k(b *testing.B) {
	netns.RequireRoot(b)
	if _, err := exec.LookPath("bridge"); err != nil {
		b.Skip("skipping: no bridge binary (iproute2)")
	}
	cfg := benchConfig(benchMACs)
	local := netip.MustParseAddr("192.0.2.1")
	per := map[string]time.Duration{}

	runBackend := func(name string, batched bool) {
		b.Run(name, func(b *testing.B) {
			ns := netns.New(b, "bench")
			be, err := New(Options{NetnsPath: ns.Path(), LocalVTEP: local, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			if !batched {
				be.k.(*nlKernel).raw = nil
			}
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				if _, err := be.Set(context.Background(), vtep.Config{}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				res, err := be.Set(context.Background(), cfg)
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if res.Added.MACs != benchMACs {
					b.Fatalf("added %d MACs", res.Added.MACs)
				}
			}
			per[name] = total / time.Duration(b.N)
			b.ReportMetric(float64(2*benchMACs)/per[name].Seconds(), "entries/s")
		})
	}
	runBackend("l2span", true)
	runBackend("l2span-handle", false)

	// A resync over 100k programmed MACs: two dumps and a diff, no write.
	b.Run("l2span-resync", func(b *testing.B) {
		ns := netns.New(b, "bench")
		be, err := New(Options{NetnsPath: ns.Path(), LocalVTEP: local, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close()
		if _, err := be.Set(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			res, err := be.Set(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if res != (vtep.Result{}) {
				b.Fatalf("resync changed %+v", res)
			}
		}
	})

	b.Run("bridge-batch", func(b *testing.B) {
		ns := netns.New(b, "bench")
		file := filepath.Join(b.TempDir(), "fdb.batch")
		f, err := os.Create(file)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(f)
		for _, m := range cfg.Networks[0].MACs {
			fmt.Fprintf(w, "fdb add %s dev l2sv4242 self permanent extern_learn dst %s\n", m.MAC, m.VTEP)
			fmt.Fprintf(w, "fdb add %s dev l2sv4242 master static extern_learn\n", m.MAC)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		// The same devices the backend makes.
		setup := [][]string{
			{"ip", "link", "add", "l2sb4242", "type", "bridge"},
			{"ip", "link", "add", "l2sv4242", "type", "vxlan", "id", "4242", "local", local.String(), "dstport", "4789", "nolearning"},
			{"ip", "link", "set", "l2sv4242", "master", "l2sb4242"},
			{"bridge", "link", "set", "dev", "l2sv4242", "learning", "off", "neigh_suppress", "on"},
			{"ip", "link", "set", "l2sb4242", "up"},
			{"ip", "link", "set", "l2sv4242", "up"},
		}
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			_, _ = ns.Exec(context.Background(), "ip", "link", "del", "l2sv4242")
			_, _ = ns.Exec(context.Background(), "ip", "link", "del", "l2sb4242")
			for _, argv := range setup {
				ns.MustExec(argv...)
			}
			b.StartTimer()
			start := time.Now()
			out, err := exec.Command("bridge", "-netns", ns.Name(), "-batch", file).CombinedOutput()
			total += time.Since(start)
			if err != nil {
				b.Fatalf("bridge -batch: %v: %s", err, out)
			}
		}
		per["bridge-batch"] = total / time.Duration(b.N)
		b.ReportMetric(float64(2*benchMACs)/per["bridge-batch"].Seconds(), "entries/s")
	})

	if bb, ok := per["bridge-batch"]; ok && per["l2span"] > 0 {
		b.Logf("100k MACs (200k entries): l2span %v, l2span-handle %v, bridge-batch %v; bridge-batch/l2span = %.2fx, bridge-batch/l2span-handle = %.2fx",
			per["l2span"].Round(time.Millisecond), per["l2span-handle"].Round(time.Millisecond), bb.Round(time.Millisecond),
			float64(bb)/float64(per["l2span"]), float64(bb)/float64(per["l2span-handle"]))
	}
}
