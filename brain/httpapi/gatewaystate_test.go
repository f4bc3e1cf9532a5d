package httpapi_test

import (
	"context"
	"slices"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// The registered gateways of every pod travel in each pod's state; a new
// gateway, a moved VTEP and a deletion reach watchers as snapshots, and the
// agents' periodic refresh does not bump the revision.
func TestPodStateCarriesRegisteredGateways(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := startBrain(t, url, testConfig, httpapi.Options{}).client
		threePods(t, c)
		st := must[api.PodState](t)(c.PodState(ctx, "pod1"))
		if st.Gateways == nil || len(st.Gateways) != 0 {
			t.Fatalf("no gateway yet: want an empty list, got %#v", st.Gateways)
		}
		w := watch(t, c, "pod1", 0)
		w.next(t) // snapshot
		gw := api.Gateway{ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12", Backend: "linux"}
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw))
		ev := w.next(t)
		want := []api.PodGateway{{ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12"}}
		if ev.Type != api.EventSnapshot || !slices.Equal(ev.State.Gateways, want) {
			t.Fatalf("after registering pod2-gw: %+v", ev)
		}
		rev := ev.Revision
		// A refresh (same pod and VTEP, new status) changes nothing.
		gw.Status = &api.GatewayStatus{Healthy: true}
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw))
		if got := must[int64](t)(revision(ctx, c)); got != rev {
			t.Fatalf("a refresh bumped the revision %d -> %d", rev, got)
		}
		// A second gateway and a VTEP change are each a snapshot, by id.
		must[api.Gateway](t)(c.RegisterGateway(ctx, api.Gateway{ID: "pod1-gw", PodID: "pod1", VTEP: "2001:db8::11", Backend: "linux"}))
		gw.VTEP = "198.51.100.22"
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw))
		want = []api.PodGateway{{ID: "pod1-gw", PodID: "pod1", VTEP: "2001:db8::11"}, {ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.22"}}
		for ev = w.next(t); !slices.Equal(ev.State.Gateways, want); ev = w.next(t) {
			if ev.Type != api.EventSnapshot {
				t.Fatalf("a gateway change came as %+v", ev)
			}
		}
		if err := c.DeleteGateway(ctx, "pod1-gw"); err != nil {
			t.Fatal(err)
		}
		ev = w.next(t)
		if ev.Type != api.EventSnapshot || !slices.Equal(ev.State.Gateways, want[1:]) {
			t.Fatalf("after deleting pod1-gw: %+v", ev)
		}
	})
}

func revision(ctx context.Context, c *api.Client) (int64, error) {
	st, err := c.PodState(ctx, "pod3")
	return st.Revision, err
}

// On the delta stream a gateway change is the pod-wide part of a delta,
// carrying every gateway (an empty list once none is left), and the model a
// brain loads at start carries the gateways registered before.
func TestDeltaWatchCarriesRegisteredGateways(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b := startBrain(t, url, testConfig, httpapi.Options{})
		c := b.client
		threePods(t, c)
		w := watchDeltas(t, c, "pod1", 0)
		if ev := w.next(t); ev.Type != api.EventSnapshot || ev.State.Gateways == nil || len(ev.State.Gateways) != 0 {
			t.Fatalf("snapshot: want an empty gateway list, got %+v", ev)
		}
		gw := api.Gateway{ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12", Backend: "linux"}
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw))
		want := []api.PodGateway{{ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12"}}
		ev := w.next(t)
		if ev.Type != api.EventDelta || ev.Pod == nil || !slices.Equal(ev.Pod.Gateways, want) || len(ev.Networks)+len(ev.Changes) != 0 {
			t.Fatalf("after registering pod2-gw: %+v", ev)
		}
		m, err := b.svc.LoadModel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.PodState("pod3").Gateways; len(got) != 1 || got[0].ID != "pod2-gw" || got[0].VTEP != "198.51.100.12" {
			t.Fatalf("a freshly loaded model's gateways: %+v", got)
		}
		// A refresh changes nothing; the next event is the pod change.
		gw.Status = &api.GatewayStatus{Healthy: true}
		must[api.Gateway](t)(c.RegisterGateway(ctx, gw))
		must[api.Pod](t)(c.UpdatePod(ctx, api.Pod{ID: "pod3", DVRBaseMAC: "fa:16:40:00:00:00/24"}))
		ev = w.next(t)
		if ev.Type != api.EventDelta || ev.Pod == nil || ev.Pod.DVRBaseMACs["pod3"] == "" || !slices.Equal(ev.Pod.Gateways, want) {
			t.Fatalf("after a refresh and a pod change: %+v", ev)
		}
		if err := c.DeleteGateway(ctx, "pod2-gw"); err != nil {
			t.Fatal(err)
		}
		ev = w.next(t)
		if ev.Type != api.EventDelta || ev.Pod == nil || ev.Pod.Gateways == nil || len(ev.Pod.Gateways) != 0 || ev.Pod.DVRBaseMACs["pod3"] == "" {
			t.Fatalf("after deleting pod2-gw: want an empty list and the rest of the pod-wide part, got %+v", ev)
		}
	})
}
