package httpapi_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// watcher collects a watch's events in the background.
type watcher struct {
	events chan api.WatchEvent
	done   chan error
	cancel context.CancelFunc
}

// watch follows pod on the full-network stream older agents use.
func watch(t *testing.T, c *api.Client, pod string, since int64) *watcher {
	return follow(t, c.WatchFull, pod, since)
}

// watchDeltas follows pod on the delta stream.
func watchDeltas(t *testing.T, c *api.Client, pod string, since int64) *watcher {
	return follow(t, c.Watch, pod, since)
}

// follow runs one watch call in the background, heartbeats left out.
func follow(t *testing.T, watchFn func(context.Context, string, int64, time.Duration, func(api.WatchEvent) error) error, pod string, since int64) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{events: make(chan api.WatchEvent, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- watchFn(ctx, pod, since, 5*time.Second, func(ev api.WatchEvent) error {
			if ev.Type == api.EventHeartbeat {
				return nil
			}
			w.events <- ev
			return nil
		})
	}()
	t.Cleanup(cancel)
	return w
}

func (w *watcher) next(t *testing.T) api.WatchEvent {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case err := <-w.done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return api.WatchEvent{}
}

func remoteMACs(n api.NetworkState) []string {
	var out []string
	for _, p := range n.RemotePorts {
		out = append(out, p.MAC)
	}
	return out
}

func TestWatch(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b := startBrain(t, url, testConfig, httpapi.Options{})
		c := b.client
		threePods(t, c)
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN}))
		must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}))
		p1 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01", IPs: []string{"203.0.113.5"}}))

		w := watch(t, c, "pod2", 0)
		snap := w.next(t)
		if snap.Type != api.EventSnapshot || len(snap.State.Networks) != 0 {
			t.Fatalf("pod2 is not spanned yet, snapshot: %+v", snap)
		}
		if snap.State.DVRBaseMACs["pod1"] != "fa:16:3f:00:00:00/24" {
			t.Fatalf("dvr base macs: %+v", snap.State.DVRBaseMACs)
		}
		// A port in pod2 spans the network: pod2 sees pod1's port.
		p2 := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02", IPs: []string{"203.0.113.6"}}))
		ev := w.next(t)
		if ev.Type != api.EventUpdate || len(ev.Networks) != 1 {
			t.Fatalf("update: %+v", ev)
		}
		ns := ev.Networks[0]
		if ns.VNI != uint32(n.SegmentationID) || !slices.Equal(ns.RemotePods, []string{"pod1"}) ||
			!slices.Equal(remoteMACs(ns), []string{"fa:16:3e:00:00:01"}) || ns.RemotePorts[0].IPs[0] != "203.0.113.5" ||
			len(ns.Subnets) != 1 || ns.Subnets[0].GatewayIP != "203.0.113.1" || ns.LocalSegment.PodID != "pod2" {
			t.Fatalf("pod2's network state: %+v", ns)
		}
		rev := ev.Revision
		// pod2's own ports are not in its remote list; pod1's new port is.
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:04"}))
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:03"}))
		var last api.WatchEvent
		for last.Revision < rev+2 {
			last = w.next(t)
		}
		if got := remoteMACs(last.Networks[0]); !slices.Equal(got, []string{"fa:16:3e:00:00:01", "fa:16:3e:00:00:03"}) {
			t.Fatalf("remote MACs: %v", got)
		}
		// A watcher that reconnects with its revision gets what it missed.
		w.cancel()
		if err := c.DeletePort(ctx, p1.ID); err != nil {
			t.Fatal(err)
		}
		w2 := watch(t, c, "pod2", last.Revision)
		ev = w2.next(t)
		if ev.Type != api.EventUpdate || !slices.Equal(remoteMACs(ev.Networks[0]), []string{"fa:16:3e:00:00:03"}) {
			t.Fatalf("resumed watch: %+v", ev)
		}
		// pod1 loses its last port... the network leaves pod1's span only
		// when pod1 has no port; here pod2's view loses pod1 entirely once
		// pod1's ports are gone.
		l := must[api.List[api.Port]](t)(c.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"pod_id": "pod1"}}))
		for _, p := range l.Items {
			if err := c.DeletePort(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
		for {
			ev = w2.next(t)
			if len(ev.Removed) > 0 {
				break
			}
		}
		if !slices.Equal(ev.Removed, []string{n.ID}) {
			t.Fatalf("network not removed from pod2's state: %+v", ev)
		}
		// A pod-wide change (dvr_base_mac) comes as a snapshot.
		must[api.Pod](t)(c.UpdatePod(ctx, api.Pod{ID: "pod3", DVRBaseMAC: "fa:16:40:00:00:00/24"}))
		ev = w2.next(t)
		if ev.Type != api.EventSnapshot || ev.State.DVRBaseMACs["pod3"] != "fa:16:40:00:00:00/24" {
			t.Fatalf("pod change: %+v %+v", ev, ev.State)
		}
		// A watcher the delta log no longer reaches is cut off, and one
		// resuming from a revision older than the log gets a snapshot.
		b.hub.SetLogWeight(1)
		must[api.Pod](t)(c.UpdatePod(ctx, api.Pod{ID: "pod3", DVRBaseMAC: "fa:16:41:00:00:00/24"}))
		select {
		case err := <-w2.done:
			t.Logf("slow watcher cut off: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("a watcher behind the log was not cut off")
		}
		w3 := watch(t, c, "pod2", 1)
		if ev := w3.next(t); ev.Type != api.EventSnapshot || ev.State.DVRBaseMACs["pod3"] != "fa:16:41:00:00:00/24" {
			t.Fatalf("revision older than the log: %+v", ev)
		}
		_ = p2
	})
}

// TestWatchAcrossReplicas runs two brains on one PostgreSQL database: a
// watcher on one sees a change made through the other.
func TestWatchAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := sharedPostgres(t)
	a := startBrain(t, url, testConfig, httpapi.Options{})
	b := startBrain(t, url, testConfig, httpapi.Options{})
	ctx := context.Background()
	threePods(t, a.client)
	n := must[api.Network](t)(a.client.CreateNetwork(ctx, api.NetworkCreate{Name: "ha", Type: api.TypeSharedVXLAN}))
	must[api.Port](t)(a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
	w := watch(t, b.client, "pod1", 0)
	w.next(t)
	must[api.Port](t)(a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
	ev := w.next(t)
	if len(ev.Networks) != 1 || !slices.Equal(remoteMACs(ev.Networks[0]), []string{"fa:16:3e:00:00:02"}) {
		t.Fatalf("replica b's watcher: %+v", ev)
	}
	// Both replicas allocate from one pool without collisions.
	seen := map[int]bool{}
	for i := range 10 {
		c := a.client
		if i%2 == 1 {
			c = b.client
		}
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: fmt.Sprint(i), Type: api.TypeSharedVXLAN}))
		if seen[n.SegmentationID] {
			t.Fatalf("VNI %d given twice", n.SegmentationID)
		}
		seen[n.SegmentationID] = true
	}
}

// A watch resumed at the current revision hears a heartbeat at once (not
// after the heartbeat period): the agent takes it as "the watch is up".
func TestWatchResumedAtCurrentRevisionHeartbeatsAtOnce(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/brain.db", testConfig, httpapi.Options{Heartbeat: time.Minute})
	threePods(t, b.client)
	rev, err := b.svc.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan api.WatchEvent, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go b.client.Watch(wctx, "pod1", rev, time.Minute, func(ev api.WatchEvent) error {
		select {
		case got <- ev:
		default:
		}
		return nil
	})
	select {
	case ev := <-got:
		if ev.Type != api.EventHeartbeat || ev.Revision != rev {
			t.Fatalf("first event %+v, want a heartbeat at %d", ev, rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a watch resumed at the current revision heard nothing")
	}
}
