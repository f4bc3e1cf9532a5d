package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/vtep"
)

// DefaultForgetAfter is how long a learned MAC must be gone from the
// switch before its port is deleted: a switch that restarts or rebuilds its
// tables (ovs-vtep clears Ucast_Macs_Local when its database restarts)
// learns active MACs again within seconds, and the port should not flap.
const DefaultForgetAfter = 5 * time.Second

// LearnedOwner is the device_owner of the ports an agent creates in the
// brain for MACs its switch learned on its own ports.
const LearnedOwner = "l2gw:learned"

// PortBrain is the part of the brain's client the learner uses.
type PortBrain interface {
	ListPorts(ctx context.Context, o api.ListOptions) (api.List[api.Port], error)
	CreatePort(ctx context.Context, p api.PortCreate) (api.Port, error)
	UpdatePort(ctx context.Context, id string, u api.PortUpdate) (api.Port, error)
	DeletePort(ctx context.Context, id string) error
}

// The brain's client is a PortBrain: the agent finds it so in Config.Brain.
var _ PortBrain = (*api.Client)(nil)

// Learner keeps, in the brain, one port per MAC the switch learned in a
// spanned network (the spec's "MAC/IP which resides in L2GW1"), so that
// the other pods' gateways send to this pod without flooding:
//
//   - a learned MAC with no port in its network gets a port in this pod,
//     device_owner LearnedOwner, with the switch's IP for it if any;
//   - a learned MAC whose port lives in another pod (a VM that moved here)
//     is moved here with UpdatePort and the next mobility sequence; a 409
//     (stale sequence, duplicate MAC) is logged and left to the brain;
//   - a LearnedOwner port of this pod whose MAC the switch has not had
//     for DefaultForgetAfter is deleted. Only networks this gateway forwards are judged (another
//     gateway of the pod learns the others), plus networks no longer
//     spanned here at all. Ports with any other device_owner are never
//     deleted, even when they were moved here.
//
// It is level-triggered: each pass compares the switch's full set with the
// brain's ports of this pod, on every change signal, on every desired-state
// change and every resync period. A brain that is down only delays it.
type Learner struct {
	brain PortBrain
	src   vtep.MACSource
	pod   string
	// state returns the desired state (VNI -> network) and whether there
	// is one yet.
	state func() (api.PodState, bool)
	// forwarded returns the VNIs this gateway forwards now; nil means all
	// of the desired state's networks.
	forwarded func() map[uint32]bool
	resync    time.Duration
	log       *slog.Logger
	trigger   chan struct{}
	// refused remembers IPs the brain refused for a MAC, so that a pass
	// does not ask again for as long as the switch reports the same IP.
	refused map[netMAC]string
	// forgetAfter is the hold before deleting a port whose MAC is gone;
	// absent is since when each such MAC is gone; due is when the next
	// pass must run to delete one.
	forgetAfter time.Duration
	absent      map[netMAC]time.Time
	due         time.Time
	now         func() time.Time
}

// NewLearner returns a learner for pod. forwarded may be nil.
func NewLearner(brain PortBrain, src vtep.MACSource, pod string, state func() (api.PodState, bool),
	forwarded func() map[uint32]bool, resync time.Duration, log *slog.Logger) *Learner {
	if resync <= 0 {
		resync = 30 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Learner{brain: brain, src: src, pod: pod, state: state, forwarded: forwarded, resync: resync, log: log,
		trigger: make(chan struct{}, 1), refused: map[netMAC]string{},
		forgetAfter: DefaultForgetAfter, absent: map[netMAC]time.Time{}, now: time.Now}
}

// Trigger asks for a pass soon; it never blocks.
func (l *Learner) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx ends: on a change of the switch's MACs, on
// Trigger, after a failed pass (with backoff) and every resync period.
func (l *Learner) Run(ctx context.Context) {
	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.src.LocalMACsChanged():
		case <-l.trigger:
		case <-timer.C:
		}
		// Let a burst of changes settle into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		next := l.resync
		err := l.Sync(ctx)
		if !l.due.IsZero() {
			next = max(min(next, time.Until(l.due)), 10*time.Millisecond)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 500*time.Millisecond), 10*time.Second)
			next = min(backoff, l.resync)
			l.log.Warn("report learned MACs to the brain", "err", err, "retry", next)
		} else {
			backoff = 0
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

type netMAC struct {
	network string
	mac     string
}

// Sync makes one pass. It goes on past single failures and returns them
// joined; a brain that cannot be listed ends the pass.
func (l *Learner) Sync(ctx context.Context) error {
	l.due = time.Time{}
	st, ok := l.state()
	if !ok {
		return nil
	}
	netOf := map[uint32]string{}
	inState := map[string]uint32{}
	for _, n := range st.Networks {
		if n.VNI != 0 {
			netOf[n.VNI] = n.NetworkID
			inState[n.NetworkID] = n.VNI
		}
	}
	var fwd map[uint32]bool
	if l.forwarded != nil {
		fwd = l.forwarded()
	}
	want := map[netMAC]string{} // -> IP ("" if none)
	seqs := map[netMAC]vtep.LocalMAC{}
	var order []netMAC
	for _, m := range l.src.LocalMACs() {
		nw, ok := netOf[m.VNI]
		if !ok {
			continue
		}
		k := netMAC{nw, m.MAC.String()}
		if _, dup := want[k]; dup {
			continue
		}
		seqs[k] = m
		ip := ""
		if m.IP.IsValid() {
			ip = m.IP.String()
		}
		want[k] = ip
		order = append(order, k)
	}
	ports, err := api.ListAll(ctx, l.brain.ListPorts, api.ListOptions{Limit: 1000, Filters: map[string]string{"pod_id": l.pod}})
	if err != nil {
		return fmt.Errorf("list ports of pod %s: %w", l.pod, err)
	}
	here := map[netMAC]api.Port{}
	for _, p := range ports {
		if p.PodID == l.pod {
			here[netMAC{p.NetworkID, macaddr.Canonical(p.MAC)}] = p
		}
	}
	for k, ip := range l.refused {
		if want[k] != ip {
			delete(l.refused, k)
		}
	}
	var errs []error
	for _, k := range order {
		if p, ok := here[k]; ok {
			if err := l.refreshIP(ctx, k, p, want[k]); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := l.claim(ctx, k, want[k], seqs[k]); err != nil {
			errs = append(errs, err)
		}
	}
	now := l.now()
	gone := map[netMAC]bool{}
	for k, p := range here {
		if p.DeviceOwner != LearnedOwner {
			continue
		}
		if _, ok := want[k]; ok {
			continue
		}
		if vni, spanned := inState[k.network]; spanned && fwd != nil && !fwd[vni] {
			continue // another gateway of this pod forwards (and learns) it
		}
		gone[k] = true
		since, ok := l.absent[k]
		if !ok {
			since = now
			l.absent[k] = now
		}
		if at := since.Add(l.forgetAfter); now.Before(at) {
			if l.due.IsZero() || at.Before(l.due) {
				l.due = at
			}
			continue
		}
		if err := l.brain.DeletePort(ctx, p.ID); err != nil && !api.IsStatus(err, http.StatusNotFound) {
			errs = append(errs, fmt.Errorf("delete learned port %s (%s): %w", p.ID, p.MAC, err))
			continue
		}
		l.log.Info("switch forgot a learned MAC; port deleted", "network", k.network, "mac", k.mac, "port", p.ID)
	}
	for k := range l.absent {
		if !gone[k] {
			delete(l.absent, k)
		}
	}
	return errors.Join(errs...)
}

// claim makes the brain place the MAC in this pod: a move of the port
// that has it elsewhere, or a new learned port.
//
// With a sequenced source (EVPN), the move carries the fabric's MAC
// Mobility sequence: a report not newer than the brain's placement is the
// fabric's stale route (it withdraws it once it sees the newer one) and is
// left alone, unless the fabric holds the MAC sticky (static).
func (l *Learner) claim(ctx context.Context, k netMAC, ip string, m vtep.LocalMAC) error {
	other, err := l.brain.ListPorts(ctx, api.ListOptions{Filters: map[string]string{"network_id": k.network, "mac": k.mac}})
	if err != nil {
		return fmt.Errorf("look up %s in network %s: %w", k.mac, k.network, err)
	}
	// A MAC is unique in its network: at most one port has it.
	if len(other.Items) > 0 {
		p := other.Items[0]
		if p.PodID == l.pod {
			return nil // appeared meanwhile
		}
		if p.Duplicate {
			l.log.Warn("learned MAC is frozen as a duplicate in another pod; left", "network", k.network, "mac", k.mac, "pod", p.PodID)
			return nil
		}
		seq := p.MobilitySeq + 1
		if m.Sequenced {
			if int64(m.Seq) <= p.MobilitySeq && !m.Sticky {
				l.log.Debug("fabric's route older than the brain's placement; not a move", "network", k.network,
					"mac", k.mac, "pod", p.PodID, "fabric_seq", m.Seq, "mobility_seq", p.MobilitySeq)
				return nil
			}
			seq = max(seq, int64(m.Seq))
		}
		_, err := l.brain.UpdatePort(ctx, p.ID, api.PortUpdate{PodID: &l.pod, MobilitySeq: &seq})
		if api.IsStatus(err, http.StatusConflict) {
			l.log.Warn("move of a learned MAC refused; left", "network", k.network, "mac", k.mac, "from", p.PodID, "err", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("move port %s (%s) from pod %s: %w", p.ID, k.mac, p.PodID, err)
		}
		l.log.Info("learned MAC moved here", "network", k.network, "mac", k.mac, "port", p.ID, "from", p.PodID, "mobility_seq", seq)
		return nil
	}
	pc := api.PortCreate{NetworkID: k.network, PodID: l.pod, MAC: k.mac, IPs: []string{}, DeviceOwner: LearnedOwner}
	if ip != "" {
		pc.IPs = []string{ip}
	}
	p, err := l.brain.CreatePort(ctx, pc)
	if err != nil && ip != "" && ipRefused(err) {
		// The switch's IP is outside the subnets or taken: the MAC alone
		// still saves the flooding.
		l.log.Info("learned IP refused; reporting the MAC alone", "network", k.network, "mac", k.mac, "ip", ip, "err", err)
		l.refused[k] = ip
		pc.IPs = []string{}
		p, err = l.brain.CreatePort(ctx, pc)
	}
	if api.IsStatus(err, http.StatusConflict) {
		l.log.Warn("learned port refused; left", "network", k.network, "mac", k.mac, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("create learned port %s in network %s: %w", k.mac, k.network, err)
	}
	l.log.Info("learned MAC reported", "network", k.network, "mac", k.mac, "ip", ip, "port", p.ID)
	return nil
}

// refreshIP gives a learned port of this pod the IP the switch has for it
// now. Other ports' IPs belong to whoever made them.
func (l *Learner) refreshIP(ctx context.Context, k netMAC, p api.Port, ip string) error {
	if p.DeviceOwner != LearnedOwner || ip == "" || slices.Contains(p.IPs, ip) || l.refused[k] == ip {
		return nil
	}
	ips := []string{ip}
	_, err := l.brain.UpdatePort(ctx, p.ID, api.PortUpdate{IPs: &ips})
	if err != nil && ipRefused(err) {
		l.log.Info("learned IP refused; left", "port", p.ID, "mac", p.MAC, "ip", ip, "err", err)
		l.refused[k] = ip
		return nil
	}
	if err != nil {
		return fmt.Errorf("update IP of learned port %s: %w", p.ID, err)
	}
	return nil
}

func ipRefused(err error) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Field == "ips"
}
