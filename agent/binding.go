package agent

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/logevery"
)

// Why a gossip member's claim is not honoured: the reason label of
// l2span_agent_gossip_ignored_members_total.
const (
	// IgnoreUnregistered: its gateway id is not registered with the brain.
	IgnoreUnregistered = "unregistered"
	// IgnoreWrongPod: the gateway id is registered for another pod.
	IgnoreWrongPod = "wrong_pod"
	// IgnoreWrongVTEP: the gateway id is registered with another VTEP.
	IgnoreWrongVTEP = "wrong_vtep"
	// IgnoreNameMismatch: its gossip node name is not its gateway id, so
	// two nodes could claim one gateway.
	IgnoreNameMismatch = "name_mismatch"
)

// IgnoredMember is a gossip member whose claim the brain does not back.
type IgnoredMember struct {
	Member gossip.Member
	Reason string
}

// BindMembers keeps the members whose claim the brain backs: node name
// equal to the gateway id, and that id registered for the member's pod with
// the VTEP it announces (gws is the pod state's list). A member whose meta
// did not decode claims nothing and never forwards; it is kept as it is.
// Dead and left members that would be ignored are dropped without being
// reported. Pure: the same input gives the same output.
func BindMembers(members []gossip.Member, gws []api.PodGateway) (kept []gossip.Member, ignored []IgnoredMember) {
	reg := make(map[string]api.PodGateway, len(gws))
	for _, g := range gws {
		reg[g.ID] = g
	}
	for _, m := range members {
		reason := ""
		if m.MetaErr == nil {
			reason = claimProblem(m, reg)
		}
		switch {
		case reason == "":
			kept = append(kept, m)
		case m.State != gossip.StateDead && m.State != gossip.StateLeft:
			ignored = append(ignored, IgnoredMember{Member: m, Reason: reason})
		}
	}
	return kept, ignored
}

func claimProblem(m gossip.Member, reg map[string]api.PodGateway) string {
	if m.Name != m.Meta.GatewayID {
		return IgnoreNameMismatch
	}
	g, ok := reg[m.Meta.GatewayID]
	if !ok {
		return IgnoreUnregistered
	}
	if g.PodID != m.Meta.Pod {
		return IgnoreWrongPod
	}
	if v, err := netip.ParseAddr(g.VTEP); err != nil || v.Unmap() != m.Meta.VTEP.Unmap() {
		return IgnoreWrongVTEP
	}
	return ""
}

// ignoredLogEvery is how often one ignored claim is logged again while it
// keeps coming back.
const ignoredLogEvery = time.Minute

// bindingReport counts and logs the members planning ignored: a claim is
// counted and logged when it starts being ignored, not at every reconcile.
type bindingReport struct {
	self  string
	log   *slog.Logger
	limit *logevery.Limiter
	total *prometheus.CounterVec

	mu sync.Mutex
	// current are the claims ignored by the last plan, by key.
	current map[string]IgnoredMember
}

func newBindingReport(self string, log *slog.Logger, reg prometheus.Registerer) *bindingReport {
	b := &bindingReport{self: self, log: log, limit: logevery.New(ignoredLogEvery), current: map[string]IgnoredMember{},
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_gossip_ignored_members_total",
			Help: "Gossip members whose claim (pod, VTEP, gateway id) the brain does not back, counted when they start being ignored, by reason."},
			[]string{"reason"})}
	for _, r := range []string{IgnoreUnregistered, IgnoreWrongPod, IgnoreWrongVTEP, IgnoreNameMismatch} {
		b.total.WithLabelValues(r)
	}
	reg.MustRegister(b.total, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_gossip_ignored_members",
		Help: "Gossip members the last plan ignored because the brain does not back their claim."},
		func() float64 { return float64(len(b.Current())) }))
	return b
}

func claimKey(i IgnoredMember) string {
	m := i.Member
	return fmt.Sprintf("%s|%s|%s|%s|%s|%s", m.Name, m.Addr, m.Meta.Pod, m.Meta.GatewayID, m.Meta.VTEP, i.Reason)
}

// note records the members one plan ignored.
func (b *bindingReport) note(ignored []IgnoredMember) {
	next := make(map[string]IgnoredMember, len(ignored))
	var fresh []IgnoredMember
	b.mu.Lock()
	for _, i := range ignored {
		k := claimKey(i)
		next[k] = i
		if _, had := b.current[k]; !had {
			fresh = append(fresh, i)
		}
	}
	b.current = next
	b.mu.Unlock()
	for _, i := range fresh {
		b.total.WithLabelValues(i.Reason).Inc()
		m := i.Member
		attrs := []any{"node", m.Name, "addr", m.Addr, "pod", m.Meta.Pod, "gateway_id", m.Meta.GatewayID,
			"vtep", m.Meta.VTEP, "reason", i.Reason}
		if m.Name == b.self {
			// Normal for a moment at a new gateway's first start.
			b.log.Info("this gateway is not registered with the brain as it announces itself; standing by until the pod state lists it", attrs...)
			continue
		}
		if ok, held := b.limit.Allow(m.Name + "|" + i.Reason); ok {
			b.log.Warn("ignoring a gossip member: the brain has no such gateway registered", append(attrs, "ignored_since_last_warning", held)...)
		}
	}
}

// Current returns the members ignored by the last plan, by name.
func (b *bindingReport) Current() []IgnoredMember {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]IgnoredMember, 0, len(b.current))
	for _, i := range b.current {
		out = append(out, i)
	}
	slices.SortFunc(out, func(x, y IgnoredMember) int {
		return cmp.Or(cmp.Compare(x.Member.Name, y.Member.Name), cmp.Compare(x.Reason, y.Reason))
	})
	return out
}
