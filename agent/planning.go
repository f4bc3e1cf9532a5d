package agent

import (
	"net"
	"net/netip"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

// planInputs is everything one plan depends on.
type planInputs struct {
	now time.Time
	// settleAt is when gossip has settled after start; zero until joined.
	settleAt time.Time
	state    api.PodState
	// haveState is false until the brain (or the cache) gave a state.
	haveState bool
	members   []gossip.Member
	self, pod string
	// previous is the Forwarders of the last plan applied.
	previous     map[ForwarderKey]netip.Addr
	handover     *handover
	localIf      func(api.NetworkState) string
	podSide      bool
	podSideName  func(uint32) string
	populateMACs bool
	ownDVRMAC    net.HardwareAddr
}

// plan builds the dataplane plan from the current inputs. It runs only on
// the reconciler's goroutine and records nothing: record does, from what
// Set reached.
func (a *Agent) plan() (Plan, bool) {
	a.mu.Lock()
	in := planInputs{settleAt: a.settleAt, previous: a.applied.Forwarders}
	a.mu.Unlock()
	in.now = time.Now()
	in.state, in.haveState = a.sync.State()
	in.members, in.self, in.pod = a.members.Members(), a.members.Name(), a.cfg.Pod
	in.handover = a.handover
	in.localIf, in.populateMACs, in.ownDVRMAC = a.localIf, a.cfg.PopulateMACs, a.cfg.DVRMAC
	in.podSide, in.podSideName = a.cfg.PodSide, a.cfg.PodSideName
	p, ok := planFor(in)
	switch {
	case ok:
		a.binding.note(p.Ignored)
	case in.haveState && in.state.Gateways == nil:
		if ok, _ := a.binding.limit.Allow("\x00no-gateway-list"); ok {
			a.log.Warn("the desired state lists no registered gateways (a brain or cache older than gossip binding): " +
				"keeping the dataplane as it is until the brain sends them")
		}
	}
	return p, ok
}

// planFor is the plan for in, and false while there is nothing to plan:
// until gossip has settled this gateway does not know who else forwards
// what, and without a desired state it would flush what works. It changes
// nothing in in; the handover decisions it made travel in the plan.
func planFor(in planInputs) (Plan, bool) {
	if in.settleAt.IsZero() || in.now.Before(in.settleAt) || !in.haveState {
		return Plan{}, false
	}
	// Only members the brain backs take part in forwarder election and
	// FDB targeting. A state without the list (nil) comes from a brain or
	// a cache older than that rule: honouring everyone would let strangers
	// in, honouring no one would flush what works, so nothing is planned.
	if in.state.Gateways == nil {
		return Plan{}, false
	}
	var ignored []IgnoredMember
	in.members, ignored = BindMembers(in.members, in.state.Gateways)
	live := map[string]bool{}
	for _, m := range in.members {
		if m.Live() {
			live[m.Name] = true
		}
	}
	h := in.handover.clone()
	var retry time.Time
	forward := func(vni uint32, df string) bool {
		fwd, r := h.decide(in.now, vni, df, in.self, func(n string) bool { return live[n] })
		if !r.IsZero() && (retry.IsZero() || r.Before(retry)) {
			retry = r
		}
		return fwd
	}
	p := BuildPlan(PlanInput{
		State: in.state, Members: in.members, Self: in.self, PodID: in.pod,
		LocalInterface: in.localIf, PopulateMACs: in.populateMACs, PodSide: in.podSide, PodSideName: in.podSideName,
		Previous: in.previous, Forward: forward, OwnDVRMAC: in.ownDVRMAC,
	})
	keep := map[uint32]bool{}
	for _, n := range in.state.Networks {
		keep[n.VNI] = true
	}
	h.forget(keep)
	p.RetryAt = retry
	p.Complete = len(p.Config.Networks) >= wouldForward(in.state, in.members, in.self, in.pod)
	p.handover = h
	p.Ignored = ignored
	return p, true
}

// record keeps what one Set of p did: the handover decisions always (a
// hold already waited stays waited), the plan as applied only when err is
// nil. It then judges this gateway's health.
func (a *Agent) record(p Plan, err error) {
	if p.handover != nil {
		a.handover = p.handover
	}
	if !p.RetryAt.IsZero() {
		time.AfterFunc(time.Until(p.RetryAt), a.rec.Trigger)
	}
	for _, s := range p.Skipped {
		a.log.Warn("skipped", "reason", s)
	}
	a.mu.Lock()
	a.attempted = p
	a.lastErr = err
	if err == nil {
		a.dfChanges.Add(float64(forwardingChanges(a.applied, p)))
		a.applied = p
	}
	a.mu.Unlock()
	a.setHealthy(err == nil, p.Complete)
}

// wouldForward counts the networks self would forward if it were healthy:
// the yardstick for "a reconcile with all its networks succeeded".
func wouldForward(st api.PodState, members []gossip.Member, self, pod string) int {
	asHealthy := make([]gossip.Member, len(members))
	copy(asHealthy, members)
	for i := range asHealthy {
		if asHealthy[i].Name == self {
			asHealthy[i].Meta.Healthy = true
		}
	}
	n := 0
	for _, nw := range st.Networks {
		if df, ok := gossip.DF(nw.VNI, pod, asHealthy); !ok || df.Name == self {
			n++
		}
	}
	return n
}

// forwardingChanges counts networks forwarded in one plan and not the other.
func forwardingChanges(before, after Plan) int {
	had := map[uint32]bool{}
	for _, n := range before.Config.Networks {
		had[n.VNI] = true
	}
	changed := 0
	for _, n := range after.Config.Networks {
		if !had[n.VNI] {
			changed++
		}
		delete(had, n.VNI)
	}
	return changed + len(had)
}

// withdrawAfter is how many dataplane failures in a row make a gateway
// withdraw from forwarder election.
const withdrawAfter = 3

// setHealthy withdraws this gateway from forwarder election after three
// dataplane failures in a row. Once withdrawn, a successful reconcile proves
// nothing while the plan leaves out the networks it would forward; it comes
// back when a reconcile with all of them (complete) succeeds, or after a
// cooldown (one resync period) to try again.
func (a *Agent) setHealthy(ok, complete bool) {
	a.mu.Lock()
	want := a.healthy
	switch {
	case !ok:
		a.failures++
		if a.failures >= withdrawAfter && a.healthy {
			want, a.sick = false, time.Now()
		}
	case a.healthy || complete:
		a.failures, want = 0, true
	case time.Since(a.sick) >= a.cfg.Resync:
		a.failures, want = 0, true
	}
	change := want != a.healthy
	a.healthy = want
	a.mu.Unlock()
	if change {
		a.log.Warn("gateway health changed", "healthy", want)
		if err := a.members.SetMeta(a.meta(want)); err != nil {
			a.log.Warn("announce health", "err", err)
		}
	}
}
