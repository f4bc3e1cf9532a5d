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
