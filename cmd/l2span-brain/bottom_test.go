package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/neutrontest"
)

// TestBottomJobsThroughBinary runs the real l2span-brain with a bottom
// configuration: the first port of a network in a pod makes the brain's job
// pool create the bottom network in that pod's (real) Neutron.
func TestBottomJobsThroughBinary(t *testing.T) {
	srv := neutrontest.Shared(t)
	dir := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"pods": map[string]any{"pod1": map[string]any{"auth": "noauth", "endpoint": srv.URL, "project_id": "l2span-bin-test"}}})
	cfgPath := filepath.Join(dir, "bottom.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBrainProc(t, "sqlite://"+filepath.Join(dir, "b.db"), filepath.Join(dir, "brain.log"), "--bottom-config", cfgPath)
	c := p.client(t)
	ctx := context.Background()
	if _, err := c.CreatePod(ctx, api.Pod{ID: "pod1", AZ: "az1"}); err != nil {
		t.Fatal(err)
	}
	// A VNI no earlier run left in the shared Neutron (tests may repeat).
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "bin", Type: api.TypeSharedVXLAN, SegmentationID: 100000 + rand.IntN(800000)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:07:01"}); err != nil {
		t.Fatal(err)
	}
	want := "l2span-" + n.ID
	deadline := time.Now().Add(60 * time.Second)
	for {
		pages, err := networks.List(srv.Client(), networks.ListOpts{Name: want}).AllPages(ctx)
		if err == nil {
			if got, _ := networks.ExtractNetworks(pages); len(got) == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			jobs, _ := c.ListJobs(ctx, api.ListOptions{})
			t.Fatalf("bottom network %s not in Neutron after 60s; jobs %+v\n%s", want, jobs, readLog(filepath.Join(dir, "brain.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}
	jobs, err := c.ListJobs(ctx, api.ListOptions{})
	if err != nil || len(jobs.Items) == 0 {
		t.Fatalf("jobs: %v %+v", err, jobs)
	}
	t.Logf("bottom job: %s %s state=%s attempts=%d", jobs.Items[0].Type, jobs.Items[0].PodID, jobs.Items[0].State, jobs.Items[0].Attempts)
}
