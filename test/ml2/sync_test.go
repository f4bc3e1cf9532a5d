package ml2

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/api"
)

// With the brain down, Neutron still takes creates and deletes (the
// driver journals them); when the brain is back the journal brings it to
// Neutron's state. Drift made behind the driver's back (a port deleted in
// the brain, a stray network) is repaired by the periodic full sync.
func TestJournalAndFullSync(t *testing.T) {
	needRig(t)
	ctx := context.Background()
	c := brainClient()

	netID := createNetwork(t, "journaled")
	createSubnet(t, netID, "203.0.113.0/24")
	keep := createPort(t, netID, hostA, "")
	gone := createPort(t, netID, hostB, "")

	rig.brain.kill()
	brainUp := false
	defer func() {
		if !brainUp {
			rig.brain.start()
		}
	}()
	began := time.Now()
	added := createPort(t, netID, hostB, "")
	mustNeutron(t, "DELETE", "ports/"+gone.ID, nil, nil)
	net2 := createNetwork(t, "made-while-down")
	t.Logf("port create with the brain down: %s", time.Since(began))
	if err := rig.brain.start(); err != nil {
		t.Fatal(err)
	}
	brainUp = true
	began = time.Now()
	eventually(t, 30*time.Second, func() error {
		if p, err := brainPort(ctx, added.ID); err != nil || p == nil || p.PodID != "pod2" {
			return fmt.Errorf("port made while down: %+v %v", p, err)
		}
		if p, err := brainPort(ctx, gone.ID); err != nil || p != nil {
			return fmt.Errorf("port deleted while down: %+v %v", p, err)
		}
		if n, err := brainNetwork(ctx, net2); err != nil || n == nil {
			return fmt.Errorf("network made while down: %+v %v", n, err)
		}
		return nil
	})
	t.Logf("brain caught up %s after its restart", time.Since(began))

	// Drift: a port removed in the brain only, a network Neutron never had.
	if err := c.DeletePort(ctx, keep.ID); err != nil {
		t.Fatal(err)
	}
	stray, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: uuid.NewString(), Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	eventually(t, 15*time.Second, func() error {
		if p, err := brainPort(ctx, keep.ID); err != nil || p == nil || p.PodID != "pod1" {
			return fmt.Errorf("port not restored: %+v %v", p, err)
		}
		if _, err := c.GetNetwork(ctx, stray.ID); err == nil {
			return errors.New("stray network not deleted")
		}
		return nil
	})
	t.Logf("full sync repaired drift in %s (sync_interval 2s)", time.Since(began))
}
