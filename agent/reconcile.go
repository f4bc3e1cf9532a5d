package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/bpf"
	"github.com/l2span/l2span/vtep"
)

// Reconciler is the level-triggered loop: every trigger (brain change,
// membership change, periodic resync) leads to one plan from the current
// inputs and one Set on the dataplane, which reads back the kernel and
// changes only what differs. Triggers coalesce; failures retry with backoff.
type Reconciler struct {
	dp vtep.Dataplane
	// isolation, when set, holds the eBPF programs on local interfaces.
	isolation Isolation
	plan      func() (Plan, bool)
	resync    time.Duration
	log       *slog.Logger
	trigger   chan struct{}
	// healthy is told after each Set whether the dataplane took it.
	healthy func(bool)
	// synced is called once, after the first successful Set.
	synced func()

	duration prometheus.Histogram
	errors   prometheus.Counter
	changes  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	standby  prometheus.Gauge
	drift    *prometheus.CounterVec
	// applied is the last plan that reached the dataplane in full; changes
	// made for the same plan again are drift repaired.
	applied *vtep.Config
	// isoApplied is the last eBPF plan applied, and when: an unchanged one
	// is re-applied (drift repair) only at the periodic resync.
	isoApplied   []bpf.Attachment
	isoAppliedAt time.Time
	// full is set by triggers that may mean drift (kernel events): the
	// next reconcile re-applies everything.
	full atomic.Bool
}

// Isolation is the seam to the eBPF programs (bpf.Manager).
type Isolation interface {
	Set(ctx context.Context, want []bpf.Attachment) (bpf.Result, error)
}

// NewReconciler returns a reconciler over dp. plan returns false while
// there is no desired state yet (nothing is touched until there is).
func NewReconciler(dp vtep.Dataplane, plan func() (Plan, bool), resync time.Duration, log *slog.Logger, reg prometheus.Registerer) *Reconciler {
	r := &Reconciler{dp: dp, plan: plan, resync: resync, log: log, trigger: make(chan struct{}, 1),
		healthy: func(bool) {}, synced: func() {}}
	r.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "l2span_agent_reconcile_duration_seconds",
		Help: "Time of one reconcile (read back, diff, apply).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	r.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_reconcile_errors_total", Help: "Reconciles that did not fully apply."})
	r.changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_dataplane_changes_total",
		Help: "Dataplane entries added or removed, by kind and operation."}, []string{"kind", "op"})
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "l2span_agent_last_reconcile_success_timestamp_seconds", Help: "When the dataplane last matched the plan."})
	r.standby = prometheus.NewGauge(prometheus.GaugeOpts{Name: "l2span_agent_standby_networks", Help: "Networks another gateway of this pod forwards."})
	r.drift = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_drift_repaired_total",
		Help: "Dataplane entries found differing from an unchanged plan (changed behind the agent's back) and repaired, by kind."}, []string{"kind"})
	if reg != nil {
		reg.MustRegister(r.duration, r.errors, r.changes, r.lastOK, r.standby, r.drift)
	}
	return r
}

// Trigger asks for a reconcile; it never blocks.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// TriggerFull asks for a reconcile that also re-applies what is normally
// skipped when unchanged (the eBPF attachments); for kernel events.
func (r *Reconciler) TriggerFull() {
	r.full.Store(true)
	r.Trigger()
}

// Run reconciles until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	resync := time.NewTicker(r.resync)
	defer resync.Stop()
	var retry <-chan time.Time
	backoff := 100 * time.Millisecond
	syncedOnce := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-resync.C:
			r.isoAppliedAt = time.Time{}
		case <-retry:
		}
		retry = nil
		if r.full.Swap(false) {
			r.isoAppliedAt = time.Time{}
		}
		plan, ok := r.plan()
		if !ok {
			continue
		}
		start := time.Now()
		res, err := r.dp.Set(ctx, plan.Config)
		if r.isolation != nil && (r.isoAppliedAt.IsZero() || !reflect.DeepEqual(r.isoApplied, plan.Isolation)) {
			// After the VXLAN side: the local interfaces exist by now.
			if _, berr := r.isolation.Set(ctx, plan.Isolation); berr != nil {
				err = errors.Join(err, fmt.Errorf("ebpf isolation: %w", berr))
				r.isoAppliedAt = time.Time{}
			} else {
				r.isoApplied, r.isoAppliedAt = plan.Isolation, time.Now()
			}
		}
		r.duration.Observe(time.Since(start).Seconds())
		r.count(res)
		r.standby.Set(float64(len(plan.Standby)))
		for vni, pods := range plan.Unreachable {
			r.log.Warn("remote pods without a live gateway in gossip", "vni", vni, "pods", pods)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.errors.Inc()
			r.healthy(false)
			r.log.Error("reconcile failed; retrying", "err", err, "backoff", backoff)
			retry = time.After(backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if r.applied != nil && reflect.DeepEqual(*r.applied, plan.Config) {
			r.countDrift(res)
		}
		cfg := plan.Config
		r.applied = &cfg
		r.lastOK.SetToCurrentTime()
		r.healthy(true)
		if res.Added != (vtep.Counts{}) || res.Removed != (vtep.Counts{}) {
			r.log.Info("dataplane changed", "added", res.Added, "removed", res.Removed,
				"networks", len(plan.Config.Networks), "took", time.Since(start))
		}
		if !syncedOnce {
			syncedOnce = true
			r.synced()
		}
	}
}

func (r *Reconciler) countDrift(res vtep.Result) {
	for _, c := range []vtep.Counts{res.Added, res.Removed} {
		r.drift.WithLabelValues("network").Add(float64(c.Networks))
		r.drift.WithLabelValues("mac").Add(float64(c.MACs))
		r.drift.WithLabelValues("flood").Add(float64(c.Flood))
		r.drift.WithLabelValues("neighbor").Add(float64(c.Neighbors))
	}
}

func (r *Reconciler) count(res vtep.Result) {
	for op, c := range map[string]vtep.Counts{"add": res.Added, "remove": res.Removed} {
		r.changes.WithLabelValues("network", op).Add(float64(c.Networks))
		r.changes.WithLabelValues("mac", op).Add(float64(c.MACs))
		r.changes.WithLabelValues("flood", op).Add(float64(c.Flood))
		r.changes.WithLabelValues("neighbor", op).Add(float64(c.Neighbors))
	}
}
