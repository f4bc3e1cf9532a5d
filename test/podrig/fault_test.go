package podrig

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// TestNeutronDownDuringCreates: pod2's Neutron is down while ports are
// created at the top in pod1. Their shadow ports in pod2 cannot be made:
// the network's sync job in pod2 fails and retries with backoff (its error
// visible in the jobs API), pod1 is not held up, and once pod2's Neutron is
// back every shadow port is there, nothing lost.
func TestNeutronDownDuringCreates(t *testing.T) {
	r := Shared(t)
	ctx := context.Background()
	p1, p2 := r.Pods[0], r.Pods[1]
	c := brainFor(t, r, "--vni-ranges", "4600:4699")
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "down", Type: "shared_vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	// A port in pod2 spreads the network there.
	anchor, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: p2.ID, MAC: "fa:16:3e:17:02:01", IPs: []string{"192.0.2.201"}, DeviceOwner: "compute:nova"})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFor(60*time.Second, "anchor's bottom port in pod2", func() error {
		b, err := portNamed(ctx, p2, "l2span-"+anchor.ID)
		if err == nil && b == nil {
			err = fmt.Errorf("not there")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	p2.StopNeutron()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := p2.StartNeutron(); err != nil {
				t.Errorf("restart pod2's neutron-server: %v", err)
			}
		}
	})
	var ports []api.Port
	for i := range 3 {
		p, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: p1.ID, MAC: fmt.Sprintf("fa:16:3e:17:01:%02x", i+1),
			IPs: []string{fmt.Sprintf("192.0.2.%d", 101+i)}, DeviceOwner: "compute:nova"})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	// pod1 goes on; pod2's job fails and retries.
	for _, p := range ports {
		if err := waitFor(60*time.Second, "bottom port in pod1", func() error {
			b, err := portNamed(ctx, p1, "l2span-"+p.ID)
			if err == nil && b == nil {
				err = fmt.Errorf("not there")
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var job api.Job
	if err := waitFor(30*time.Second, "pod2's job failing and retrying", func() error {
		js, err := c.ListJobs(ctx, api.ListOptions{Limit: 1000})
		if err != nil {
			return err
		}
		for _, j := range js.Items {
			if j.Resource == n.ID && j.PodID == p2.ID {
				job = j
			}
		}
		if job.Attempts < 2 || job.LastError == "" {
			return fmt.Errorf("job %+v", job)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod2's Neutron down: job %s attempts %d, state %s, last error %q", job.ID, job.Attempts, job.State, job.LastError)

	began := time.Now()
	if err := p2.StartNeutron(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for _, p := range ports {
		if err := waitFor(90*time.Second, "shadow of "+p.MAC+" in pod2", func() error {
			s, err := portNamed(ctx, p2, "l2span-shadow-"+p.ID)
			if err == nil && (s == nil || s["status"] != "ACTIVE") {
				err = fmt.Errorf("not ACTIVE: %v", s)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("every shadow port in pod2 %s after its Neutron answered again", time.Since(began).Round(time.Millisecond))
}
