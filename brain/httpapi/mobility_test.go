package httpapi_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

func ptr[T any](v T) *T { return &v }

func TestPortMobility(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cfg := testConfig
		cfg.DupMoves, cfg.DupWindow = 3, time.Minute
		b := startBrain(t, url, cfg, httpapi.Options{})
		c := b.client
		threePods(t, c)
		mkPods(t, c, api.Pod{ID: "pod4", AZ: "az2"})
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN, AZHints: []string{"az1", "az2"}}))
		p := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
		if p.MobilitySeq != 0 {
			t.Fatalf("new port seq %d", p.MobilitySeq)
		}

		// A VM moves pod1 -> pod4: the seq grows, pod2 sees the new
		// placement, pod1's segment goes (its last port left).
		moved := must[api.Port](t)(c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod4")}))
		if moved.PodID != "pod4" || moved.MobilitySeq != 1 {
			t.Fatalf("moved: %+v", moved)
		}
		st := must[api.PodState](t)(c.PodState(ctx, "pod2"))
		rp := st.Networks[0].RemotePorts
		if len(rp) != 1 || rp[0].PodID != "pod4" || rp[0].Seq != 1 || !slices.Equal(st.Networks[0].RemotePods, []string{"pod4"}) {
			t.Fatalf("pod2's view after the move: %+v", st.Networks[0])
		}
		// Out of scope: refused, nothing changes.
		_, err := c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod3")})
		wantError(t, err, 409, "pod_id")
		// An older placement arriving late never wins.
		_, err = c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod1"), MobilitySeq: ptr(int64(1))})
		wantError(t, err, 409, "mobility_seq")
		got := must[api.Port](t)(c.GetPort(ctx, p.ID))
		if got.PodID != "pod4" {
			t.Fatalf("stale placement applied: %+v", got)
		}
		// A newer one does, and carries its sequence.
		got = must[api.Port](t)(c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod1"), MobilitySeq: ptr(int64(7))}))
		if got.PodID != "pod1" || got.MobilitySeq != 7 {
			t.Fatalf("newer placement: %+v", got)
		}
		// Third move within the window: detected as a duplicate, frozen in
		// its last good placement (pod1), reported.
		_, err = c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod4")})
		wantError(t, err, 409, "pod_id")
		if !strings.Contains(err.Error(), "duplicate MAC") {
			t.Fatalf("duplicate error: %v", err)
		}
		got = must[api.Port](t)(c.GetPort(ctx, p.ID))
		if !got.Duplicate || got.PodID != "pod1" {
			t.Fatalf("frozen port: %+v", got)
		}
		dups := must[api.List[api.Port]](t)(c.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"duplicate": "true"}}))
		if len(dups.Items) != 1 || dups.Items[0].ID != p.ID {
			t.Fatalf("duplicate listing: %+v", dups)
		}
		if !metricHas(t, b, "l2span_brain_duplicate_macs 1") {
			t.Fatal("metric l2span_brain_duplicate_macs is not 1")
		}
		_, err = c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod4")})
		wantError(t, err, 409, "pod_id")
		// Cleared by the operator, it moves again.
		got = must[api.Port](t)(c.UpdatePort(ctx, p.ID, api.PortUpdate{ClearDuplicate: true}))
		if got.Duplicate {
			t.Fatalf("not cleared: %+v", got)
		}
		got = must[api.Port](t)(c.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: ptr("pod4"), IPs: &[]string{"2001:db8::4"}}))
		if got.PodID != "pod4" || got.MobilitySeq != 8 || got.IPs[0] != "2001:db8::4" {
			t.Fatalf("after clearing: %+v", got)
		}
	})
}

// A local network's only port may move with the whole network; a second
// pod is still refused.
func TestLocalNetworkMove(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, brain.Config{VNIRanges: testConfig.VNIRanges}, httpapi.Options{}).client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "loc", Type: api.TypeLocal}))
		p1 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		must[api.Port](t)(c.UpdatePort(ctx, p1.ID, api.PortUpdate{PodID: ptr("pod2")}))
		segs := must[[]api.Segment](t)(c.ListSegments(ctx, n.ID))
		if len(segs) != 1 || segs[0].PodID != "pod2" {
			t.Fatalf("local network after moving its only port: %+v", segs)
		}
		p2 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
		_, err := c.UpdatePort(ctx, p2.ID, api.PortUpdate{PodID: ptr("pod3")})
		wantError(t, err, 409, "pod_id")
	})
}

func metricHas(t *testing.T, b *testBrain, line string) bool {
	t.Helper()
	resp, err := http.Get(b.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return strings.Contains(sb.String(), "\n"+line+"\n")
}

// Bottom-cloud jobs show in the metrics by state.
func TestJobsMetric(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cfg := testConfig
		cfg.BottomJobs = true
		b := startBrain(t, url, cfg, httpapi.Options{})
		threePods(t, b.client)
		n := must[api.Network](t)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		must[api.Port](t)(b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		must[api.Port](t)(b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
		if !metricHas(t, b, `l2span_brain_jobs{state="new"} 2`) {
			t.Fatal(`l2span_brain_jobs{state="new"} is not 2 after ports in two pods`)
		}
	})
}

// Ports the brain reserves for a pod (its DHCP port) are flagged so that
// drivers syncing from Neutron leave them alone.
func TestReservedPortsFlagged(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b := startBrain(t, url, testConfig, httpapi.Options{})
		threePods(t, b.client)
		n := must[api.Network](t)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		must[api.Subnet](t)(b.client.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}))
		vm := must[api.Port](t)(b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
		dhcp, err := b.svc.ReservePort(ctx, brain.ReservedDHCP, n.ID, "pod1")
		if err != nil {
			t.Fatal(err)
		}
		got := must[api.Port](t)(b.client.GetPort(ctx, dhcp.ID))
		if !got.Reserved || got.DeviceOwner != "network:dhcp" {
			t.Fatalf("reserved DHCP port: %+v", got)
		}
		if p := must[api.Port](t)(b.client.GetPort(ctx, vm.ID)); p.Reserved {
			t.Fatalf("a VM port flagged reserved: %+v", p)
		}
		l := must[api.List[api.Port]](t)(b.client.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"network_id": n.ID}}))
		reserved := 0
		for _, p := range l.Items {
			if p.Reserved {
				reserved++
			}
		}
		if len(l.Items) != 2 || reserved != 1 {
			t.Fatalf("list: %d ports, %d reserved", len(l.Items), reserved)
		}
	})
}
