package agent

import (
	"context"
	"time"

	"github.com/l2span/l2span/agent/gossip"
)

// Membership is the agent's view of the gateway cluster: who is there,
// when that changes, and how this gateway announces itself. The gossip
// package (memberlist) implements it; tests use a fake. The caller that
// builds it owns it: it starts it with the Config's GossipMeta and shuts it
// down after Run returns.
type Membership interface {
	// Name is this gateway's node name.
	Name() string
	// Members is every member seen, self included.
	Members() []gossip.Member
	// Changed is signalled (coalesced) after any change to Members.
	Changed() <-chan struct{}
	// SetMeta announces a new meta for this gateway (health changes).
	SetMeta(gossip.Meta) error
	// Join contacts the seeds until one answers or ctx ends.
	Join(ctx context.Context) error
	// Leave announces a graceful departure.
	Leave(timeout time.Duration) error
	// Stats counts membership events, for metrics.
	Stats() gossip.Stats
}

var _ Membership = (*gossip.Gossip)(nil)
