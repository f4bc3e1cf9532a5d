package agent

import (
	"context"
	"time"

	"github.com/l2span/l2span/agent/gossip"
)

// Fencer is the node-local fencing lease (bpf.Manager): while armed and
// expired, the gateway's local ports drop every frame, in the kernel, with
// no help from the agent.
type Fencer interface {
	RenewLease(ttl time.Duration, armed bool) error
	Fence() error
}

// fenceView reads the membership for fencing: armed when another gateway
// of this pod is live (someone can take over, so stepping aside is safe);
// isolated when this gateway hears no other member alive at all although a
// pod peer was seen before (its gossip is cut: the others are declaring it
// dead, and its pod's standby is taking over), or its own probes of two
// members failed since the last that succeeded (it learns of the cut before
// its peers finish declaring it dead).
func fenceView(self, pod string, members []gossip.Member, hadPodPeer, probesFailing bool) (armed, isolated, podPeer bool) {
	alive := 0
	for _, m := range members {
		if m.Name == self {
			continue
		}
		if m.State == gossip.StateAlive {
			alive++
		}
		if m.Live() {
			if m.MetaErr == nil && m.Meta.Pod == pod {
				podPeer = true
			}
		}
	}
	return podPeer, (hadPodPeer || podPeer) && (alive == 0 || probesFailing), podPeer
}

// runFencing renews the lease every third of its length while this agent
// runs and is in sync. It does not renew before the first reconcile after a
// start (the previous run's lease stands, so a stale dataplane stays fenced
// until the agent has released what it no longer forwards), and it fences
// at once while the gateway is cut off from every peer, keeping the fence
// for one more hold after it hears them again so the standby hands back
// before this gateway forwards.
func (a *Agent) runFencing(ctx context.Context, f Fencer) {
	ttl := a.cfg.FenceLease
	t := time.NewTicker(min(ttl/3, 50*time.Millisecond))
	defer t.Stop()
	hadPodPeer, fencedAt, healedAt, rejoinAt := false, time.Time{}, time.Time{}, time.Time{}
	for {
		failing := false
		if p, ok := a.members.(interface{ Isolated() bool }); ok {
			failing = p.Isolated()
		}
		armed, isolated, podPeer := fenceView(a.members.Name(), a.cfg.Pod, a.members.Members(), hadPodPeer, failing)
		hadPodPeer = hadPodPeer || podPeer
		var err error
		switch {
		case isolated:
			if fencedAt.IsZero() {
				fencedAt = time.Now()
				a.log.Warn("no gossip peer alive although this pod has another gateway: fencing this gateway's ports")
				a.fences.Inc()
			}
			healedAt = time.Time{}
			err = f.Fence()
			// Peers that declared this gateway dead no longer probe it, nor
			// it them: join the seeds again so a healed cut is seen at once
			// rather than at the next push-pull.
			if time.Since(rejoinAt) > time.Second {
				rejoinAt = time.Now()
				go func() {
					jctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					_ = a.members.Join(jctx)
				}()
			}
		case !fencedAt.IsZero() && (healedAt.IsZero() || time.Since(healedAt) < 2*a.cfg.Hold):
			if healedAt.IsZero() {
				healedAt = time.Now()
			}
			err = f.Fence()
		case !a.Ready():
		default:
			if !fencedAt.IsZero() {
				a.log.Info("gossip peers back: fence lifted", "fenced_for", time.Since(fencedAt).Round(time.Millisecond))
				fencedAt = time.Time{}
			}
			err = f.RenewLease(ttl, armed)
		}
		if err != nil {
			a.log.Warn("fencing lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
