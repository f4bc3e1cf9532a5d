package httpapi_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// TestWatchDeltas: with delta=1 a network entering the pod's state comes
// whole, then each port change as that one port, a pod change as the
// pod-wide part.
func TestWatchDeltas(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+filepath.Join(t.TempDir(), "brain.db"), testConfig, httpapi.Options{})
	c := b.client
	threePods(t, c)
	n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN}))
	for i := range 200 {
		mac := "fa:16:3e:01:00:" + string("0123456789abcdef"[i/16]) + string("0123456789abcdef"[i%16])
		must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: mac}))
	}
	w := watchDeltas(t, c, "pod2", 0)
	if ev := w.next(t); ev.Type != api.EventSnapshot || len(ev.State.Networks) != 0 {
		t.Fatalf("snapshot: %+v", ev)
	}
	must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))
	ev := w.next(t)
	if ev.Type != api.EventDelta || len(ev.Networks) != 1 || len(ev.Networks[0].RemotePorts) != 200 || len(ev.Changes) != 0 {
		t.Fatalf("spread: want the network whole, got %d networks %d changes", len(ev.Networks), len(ev.Changes))
	}
	p := must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:09", IPs: []string{"203.0.113.9"}}))
	ev = w.next(t)
	if line, _ := json.Marshal(ev); len(ev.Networks) != 0 || len(ev.Changes) != 1 || ev.Changes[0].Header != nil ||
		len(ev.Changes[0].Upserted) != 1 || ev.Changes[0].Upserted[0].MAC != "fa:16:3e:00:00:09" || len(line) > 400 {
		t.Fatalf("one port: want one upsert, got %s", line)
	}
	if err := c.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	ev = w.next(t)
	if len(ev.Changes) != 1 || !slices.Equal(ev.Changes[0].RemovedMACs, []string{"fa:16:3e:00:00:09"}) {
		t.Fatalf("delete: %+v", ev)
	}
	// A subnet changes the header only.
	must[api.Subnet](t)(c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}))
	ev = w.next(t)
	if len(ev.Changes) != 1 || ev.Changes[0].Header == nil || len(ev.Changes[0].Header.Subnets) != 1 || len(ev.Changes[0].Upserted) != 0 {
		t.Fatalf("subnet: %+v", ev)
	}
	must[api.Pod](t)(c.UpdatePod(ctx, api.Pod{ID: "pod3", DVRBaseMAC: "fa:16:40:00:00:00/24"}))
	ev = w.next(t)
	if ev.Type != api.EventDelta || ev.Pod == nil || ev.Pod.DVRBaseMACs["pod3"] != "fa:16:40:00:00:00/24" {
		t.Fatalf("pod change: %+v", ev)
	}
	// Resuming from a revision the log holds replays only what was missed.
	w.cancel()
	must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod3", MAC: "fa:16:3e:00:00:03"}))
	w2 := watchDeltas(t, c, "pod2", ev.Revision)
	ev = w2.next(t)
	if ev.Type != api.EventDelta || len(ev.Changes) != 1 || ev.Changes[0].Header == nil ||
		!slices.Equal(ev.Changes[0].Header.RemotePods, []string{"pod1", "pod3"}) || len(ev.Changes[0].Upserted) != 1 {
		t.Fatalf("resumed: %+v", ev)
	}
}
