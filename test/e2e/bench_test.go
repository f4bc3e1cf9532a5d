package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// BenchmarkConvergence measures the time from the brain answering a port
// create to the port's FDB entry being in the kernel of every remote
// gateway, with 8 pods (one gateway each) spanning one network. The
// arrival is taken from netlink notifications in each gateway namespace,
// so polling adds nothing to the figure.
func BenchmarkConvergence(b *testing.B) {
	netns.RequireRoot(b)
	const pods = 8
	l := newLab(b)
	ctx := context.Background()
	n, err := l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "bench", Type: api.TypeSharedVXLAN})
	if err != nil {
		b.Fatal(err)
	}
	var gws []*netns.Gateway
	for i := 1; i <= pods; i++ {
		pod := fmt.Sprintf("pod%d", i)
		l.mkPod(pod, "az1")
		gw := l.addGateway(pod, "gw")
		l.rig.AddSegment(gw, fmt.Sprintf("seg%d", n.SegmentationID))
		gws = append(gws, gw)
	}
	for _, gw := range gws {
		l.startAgent(gw, func(a *[]string) { *a = append(*a, "--log-level", "warn") })
	}
	// One port per pod spans the network everywhere.
	for i, gw := range gws {
		if _, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: gw.Pod, MAC: fmt.Sprintf("fa:16:3e:ff:00:%02x", i)}); err != nil {
			b.Fatal(err)
		}
	}
	for i, gw := range gws {
		other := (i + 1) % pods
		eventually(b, 20*time.Second, "network spanned into "+gw.Name(), func() error {
			_, err := fdbDst(gw, n.SegmentationID, fmt.Sprintf("fa:16:3e:ff:00:%02x", other))
			return err
		})
	}

	// Per gateway, a netlink subscription reports when a MAC lands.
	type arrival struct {
		gw  int
		mac string
		at  time.Time
	}
	arrivals := make(chan arrival, 4096)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, gw := range gws {
		ch := make(chan netlink.NeighUpdate, 1024)
		if err := netlink.NeighSubscribeAt(gw.NsHandle(), ch, done); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range ch {
				if u.Type == unix.RTM_NEWNEIGH && u.Family == syscall.AF_BRIDGE && u.Flags&netlink.NTF_SELF != 0 && u.IP != nil {
					arrivals <- arrival{i, u.HardwareAddr.String(), time.Now()}
				}
			}
		}()
	}
	defer func() { close(done); wg.Wait() }()

	var lat []time.Duration
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		home := k % pods
		mac := fmt.Sprintf("fa:16:3e:aa:%02x:%02x", k/256, k%256)
		_, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: gws[home].Pod, MAC: mac,
			IPs: []string{netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + k%250)}).String()}})
		acked := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		waiting := map[int]bool{}
		for i := range gws {
			if i != home {
				waiting[i] = true
			}
		}
		timeout := time.After(10 * time.Second)
		for len(waiting) > 0 {
			select {
			case a := <-arrivals:
				if a.mac == mac && waiting[a.gw] {
					delete(waiting, a.gw)
					lat = append(lat, max(a.at.Sub(acked), 0))
				}
			case <-timeout:
				b.Fatalf("port %s not in %d gateways after 10s", mac, len(waiting))
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat)), "samples")
}

// BenchmarkFailover measures, per run, the time from kill -9 of pod2's
// designated forwarder (agent killed, host links down) to the first ping
// reply from pod1 through the standby, with the tuned gossip timers and
// with memberlist's LAN defaults, side by side. It reports the median.
func BenchmarkFailover(b *testing.B) {
	netns.RequireRoot(b)
	modes := []struct {
		name string
		args []string
	}{
		{"tuned", nil},
		{"fast", fastGossip},
		{"memberlist-defaults", []string{"--gossip-probe-interval", "1s", "--gossip-probe-timeout", "500ms", "--gossip-suspicion-mult", "4"}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			h := newHALab(b, append([]string{"--log-level", "warn"}, mode.args...)...)
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				df := h.df(1)
				if df < 0 {
					b.Fatal("pod2 has no single forwarder")
				}
				victim := h.gws[1][df]
				agent := h.agents[victim.Pod+"-"+victim.Host]
				agent.kill(syscall.SIGKILL)
				killHost(b, victim, h.net.SegmentationID)
				killed := time.Now()
				for netns.PingOnce(h.vms[0].NS, h.vms[1].IPv4.Addr(), 20*time.Millisecond) != nil {
					if time.Since(killed) > 30*time.Second {
						b.Fatal("no reply through the standby within 30s")
					}
				}
				times = append(times, time.Since(killed))
				reviveHost(b, victim, h.net.SegmentationID)
				agent.restart()
				eventually(b, 30*time.Second, "network moved back", func() error {
					if h.df(1) != df {
						return fmt.Errorf("not yet")
					}
					return nil
				})
				eventually(b, 30*time.Second, "pod1 points back at the DF", func() error {
					dst, err := fdbDst(h.gws[0][h.df(0)], h.net.SegmentationID, "fa:16:3e:00:00:02")
					if err == nil && dst != victim.VTEP {
						return fmt.Errorf("still %s", dst)
					}
					return err
				})
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms")
			b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
