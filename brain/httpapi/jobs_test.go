package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// TestJobsAPI: port changes enqueue one network_sync job per (network, pod)
// in their own transaction; /v1/jobs lists, filters, shows and retries them.
func TestJobsAPI(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cfg := testConfig
		cfg.BottomJobs = true
		b := startBrain(t, url, cfg, httpapi.Options{})
		c := b.client
		mkPods(t, c, api.Pod{ID: "pod1", AZ: "az1"}, api.Pod{ID: "pod2", AZ: "az1"})
		n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
		for i, pod := range []string{"pod1", "pod1", "pod2"} {
			must[api.Port](t)(c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: pod, MAC: "fa:16:3e:00:00:0" + string(rune('1'+i))}))
		}
		all := must[api.List[api.Job]](t)(c.ListJobs(ctx, api.ListOptions{}))
		if len(all.Items) != 2 {
			t.Fatalf("want one job per pod, got %+v", all.Items)
		}
		l := must[api.List[api.Job]](t)(c.ListJobs(ctx, api.ListOptions{Filters: map[string]string{
			"type": brain.JobNetworkSync, "pod_id": "pod1", "state": api.JobNew, "resource": n.ID}}))
		if len(l.Items) != 1 || l.Items[0].Attempts != 0 || l.Items[0].NextRunAt == nil {
			t.Fatalf("filtered: %+v", l.Items)
		}
		j := l.Items[0]
		if got := must[api.Job](t)(c.GetJob(ctx, j.ID)); got.ID != j.ID || got.PodID != "pod1" {
			t.Fatalf("show: %+v", got)
		}
		if l := must[api.List[api.Job]](t)(c.ListJobs(ctx, api.ListOptions{Limit: 1})); len(l.Items) != 1 || l.Next == "" {
			t.Fatalf("paging: %+v", l)
		}
		_, err := c.ListJobs(ctx, api.ListOptions{Filters: map[string]string{"state": "bogus"}})
		wantError(t, err, http.StatusBadRequest, "state")
		_, err = c.GetJob(ctx, "nope")
		if statusOf(err) != http.StatusNotFound {
			t.Fatalf("missing job: %v", err)
		}
		_, err = c.RetryJob(ctx, "nope")
		if statusOf(err) != http.StatusNotFound {
			t.Fatalf("retry missing job: %v", err)
		}
		if r := must[api.Job](t)(c.RetryJob(ctx, j.ID)); r.ID != j.ID || r.State != api.JobNew {
			t.Fatalf("retry: %+v", r)
		}
		// Removing the pod's ports reuses the same job (dedup).
		ports := must[api.List[api.Port]](t)(c.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"pod_id": "pod1"}}))
		for _, p := range ports.Items {
			if err := c.DeletePort(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
		if l := must[api.List[api.Job]](t)(c.ListJobs(ctx, api.ListOptions{})); len(l.Items) != 2 {
			t.Fatalf("after deletes: %+v", l.Items)
		}
		if r := must[api.List[api.Route]](t)(c.ListRoutes(ctx, n.ID, "")); len(r.Items) != 0 {
			t.Fatalf("routes: %+v", r)
		}
	})
}
