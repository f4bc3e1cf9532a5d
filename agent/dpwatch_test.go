package agent

import (
	"testing"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

// notifyingDataplane is a fake dataplane that reports changes under it.
type notifyingDataplane struct {
	*fakeDataplane
	changed chan struct{}
}

func (d notifyingDataplane) DataplaneChanged() <-chan struct{} { return d.changed }

// A dataplane that reports a change under it gets a reconcile at once,
// long before the resync.
func TestDataplaneChangeTriggersReconcile(t *testing.T) {
	self := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive)
	ms := newFakeMembership("gw1", self)
	dp := notifyingDataplane{fakeDataplane: &fakeDataplane{}, changed: make(chan struct{}, 1)}
	brain := &stateBrain{snapshot: podState(1, api.NetworkState{NetworkID: "n1", VNI: 100})}
	startAgent(t, Config{Hold: 20 * time.Millisecond, Resync: time.Hour}, ms, dp, brain)
	waitFor(t, "first reconcile", func() bool { return len(dp.history()) > 0 })
	time.Sleep(200 * time.Millisecond) // triggers of the start have run
	n := len(dp.history())
	dp.changed <- struct{}{}
	waitFor(t, "reconcile after the dataplane changed", func() bool { return len(dp.history()) > n })
}
