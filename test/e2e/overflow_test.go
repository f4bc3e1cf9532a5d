package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// A bulk create of 3,000 remote ports makes the agent write 6,000 FDB and
// neighbor entries at once; with a neighbor-watch socket buffer far too
// small for that the kernel drops notifications (ENOBUFS) and the
// subscription dies. The agent counts it, subscribes again and still
// repairs an entry deleted behind its back at once afterwards, long before
// the resync (60 s here) would.
func TestKernelWatchSurvivesOverflow(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2, func(a *[]string) {
		*a = append(*a, "--resync-interval", "60s", "--metrics-listen", "127.0.0.1:9697", "--kernel-watch-buffer", "4096")
	})
	s.createPorts(t)
	pingAll(t, s.vms, 10*time.Second)
	gw, vni := s.gws[0], s.net.SegmentationID
	burst := make([]api.PortCreate, 3000)
	for i := range burst {
		burst[i] = api.PortCreate{NetworkID: s.net.ID, PodID: "pod2", MAC: fmt.Sprintf("fa:16:3e:01:%02x:%02x", i>>8, i&0xff),
			IPs: []string{fmt.Sprintf("2001:db8::1:%x", i+1)}}
	}
	if _, err := s.client.CreatePorts(context.Background(), burst); err != nil {
		t.Fatal(err)
	}
	last := burst[len(burst)-1].MAC
	eventually(t, 30*time.Second, "burst programmed", func() error {
		_, err := fdbDst(gw, vni, last)
		return err
	})
	eventually(t, 10*time.Second, "overflow counted", func() error {
		v := agentMetric(t, gw, "l2span_agent_kernel_watch_resubscribes_total")
		if n, _ := strconv.ParseFloat(v, 64); n < 1 {
			return fmt.Errorf("l2span_agent_kernel_watch_resubscribes_total = %q: the burst did not overflow the watch", v)
		}
		return nil
	})
	// Entries deleted behind the agent's back after the burst come back at
	// once, from the new subscription.
	for i, mac := range []string{burst[7].MAC, burst[1234].MAC} {
		start := time.Now()
		gw.MustExec("bridge", "fdb", "del", mac, "dev", fmt.Sprintf("l2sv%d", vni), "dst", s.gws[1].VTEP.String(), "self")
		eventually(t, 10*time.Second, "deleted fdb entry restored after the overflow", func() error {
			_, err := fdbDst(gw, vni, mac)
			return err
		})
		t.Logf("drift %d after the overflow repaired in %s", i, time.Since(start).Round(time.Millisecond))
	}
}
