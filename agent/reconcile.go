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
	dp        vtep.Dataplane
	isolation Isolation
	plan      func() (Plan, bool)
	applied   func(Plan, error)
	synced    func()
	resync    time.Duration
	// minBackoff is the first retry delay after a failure; it doubles up
	// to maxBackoff.
	minBackoff, maxBackoff time.Duration
	log                    *slog.Logger
	trigger                chan struct{}
	// after makes the retry timer (time.After; tests record the backoff).
	after func(time.Duration) <-chan time.Time

	duration prometheus.Histogram
	errors   prometheus.Counter
	changes  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	standby  prometheus.Gauge
	drift    *prometheus.CounterVec
	// lastApplied is the last plan that reached the dataplane in full;
	// changes made for the same plan again are drift repaired.
	lastApplied *vtep.Config
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

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Dataplane vtep.Dataplane
	// Isolation, when set, holds the eBPF programs on local interfaces.
	Isolation Isolation
	// Plan returns the plan from the current inputs, false while there is
	// no desired state yet (nothing is touched until there is). It records
	// nothing: what happened to the plan is told to Applied.
	Plan func() (Plan, bool)
	// Applied, if set, is told after each Set the plan tried and its
	// error: nil when the plan reached the dataplane in full.
	Applied func(Plan, error)
	// Synced, if set, is called once, after the first successful Set.
	Synced func()
	// Resync is the period of the full reconcile that repairs drift
	// (default 30s).
	Resync time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failed Set
	// (default 100ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// Registerer, if set, gets the reconciler's metrics.
	Registerer prometheus.Registerer
}

// NewReconciler returns a reconciler over o.Dataplane; it starts nothing.
func NewReconciler(o ReconcilerOptions) *Reconciler {
	r := &Reconciler{dp: o.Dataplane, isolation: o.Isolation, plan: o.Plan, applied: o.Applied, synced: o.Synced,
		resync: o.Resync, minBackoff: o.MinBackoff, maxBackoff: o.MaxBackoff, log: o.Logger, trigger: make(chan struct{}, 1),
		after: time.After}
	if r.applied == nil {
		r.applied = func(Plan, error) {}
	}
	if r.synced == nil {
		r.synced = func() {}
	}
	if r.resync <= 0 {
		r.resync = 30 * time.Second
	}
	if r.minBackoff <= 0 {
		r.minBackoff = 100 * time.Millisecond
	}
	if r.maxBackoff < r.minBackoff {
		r.maxBackoff = max(10*time.Second, r.minBackoff)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "l2span_agent_reconcile_duration_seconds",
		Help: "Time of one reconcile (read back, diff, apply).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	r.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_reconcile_errors_total", Help: "Reconciles that did not fully apply."})
	r.changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_dataplane_changes_total",
		Help: "Dataplane entries added or removed, by kind and operation."}, []string{"kind", "op"})
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "l2span_agent_last_reconcile_success_timestamp_seconds", Help: "When the dataplane last matched the plan."})
	r.standby = prometheus.NewGauge(prometheus.GaugeOpts{Name: "l2span_agent_standby_networks", Help: "Networks another gateway of this pod forwards."})
	r.drift = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_drift_repaired_total",
		Help: "Dataplane entries found differing from an unchanged plan (changed behind the agent's back) and repaired, by kind."}, []string{"kind"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(r.duration, r.errors, r.changes, r.lastOK, r.standby, r.drift)
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
	backoff := r.minBackoff
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
		err := r.apply(ctx, plan)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.errors.Inc()
			r.applied(plan, err)
			r.log.Error("reconcile failed; retrying", "err", err, "backoff", backoff)
			retry = r.after(backoff)
			backoff = min(backoff*2, r.maxBackoff)
			continue
		}
		backoff = r.minBackoff
		r.standby.Set(float64(len(plan.Standby)))
		r.lastOK.SetToCurrentTime()
		r.applied(plan, nil)
		if !syncedOnce {
			syncedOnce = true
			r.synced()
		}
	}
}

// apply hands plan to the dataplane and the eBPF programs and counts what
// changed; the error is nil only when all of it reached them.
func (r *Reconciler) apply(ctx context.Context, plan Plan) error {
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
	for vni, pods := range plan.Unreachable {
		r.log.Warn("remote pods without a live gateway in gossip", "vni", vni, "pods", pods)
	}
	if err != nil {
		return err
	}
	if r.lastApplied != nil && reflect.DeepEqual(*r.lastApplied, plan.Config) {
		r.countDrift(res)
	}
	cfg := plan.Config
	r.lastApplied = &cfg
	if res.Added != (vtep.Counts{}) || res.Removed != (vtep.Counts{}) {
		r.log.Info("dataplane changed", "added", res.Added, "removed", res.Removed,
			"networks", len(plan.Config.Networks), "took", time.Since(start))
	}
	return nil
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
