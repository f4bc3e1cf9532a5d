// Package agent is the gateway agent: it keeps its pod's desired state from
// the brain, learns where every pod's gateways are by gossip, and reconciles
// the gateway's dataplane to match, never flushing what works.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/bpf"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/sdnotify"
	"github.com/l2span/l2span/vtep"
)

// Config is the agent's validated configuration.
type Config struct {
	Pod       string
	GatewayID string
	// Backend is "linux" or "hwvtep".
	Backend string

	Brain *api.Client

	Gossip gossip.Config
	Weight uint16

	VTEP   netip.Addr
	DVRMAC net.HardwareAddr
	// LocalInterface is the template naming the interface that carries a
	// network's pod-local segment (see InterfaceTemplate).
	LocalInterface string
	PopulateMACs   bool
	Resync         time.Duration
	// Hold is how long a gateway waits before taking a network over from a
	// live gateway of its pod (and how long it lets gossip settle at start);
	// zero means the gossip probe interval.
	Hold time.Duration
	// StateDir holds the cached desired state; empty disables the cache.
	StateDir string
	// MetricsListen serves /metrics, /healthz and /readyz; empty disables it.
	MetricsListen string
	// KernelWatch, when set, is the device prefix whose kernel changes
	// trigger a reconcile (linux backend).
	KernelWatch string
	Logger      *slog.Logger
}

// Agent is one running gateway agent.
type Agent struct {
	cfg    Config
	dp     vtep.Dataplane
	gossip *gossip.Gossip
	sync   *Syncer
	rec    *Reconciler
	// learner reports the switch's learned MACs (hwvtep); nil otherwise.
	learner *Learner
	reg     *prometheus.Registry
	log     *slog.Logger

	handover *handover
	// settleAt is when gossip has settled after start; zero until joined.
	settleAt time.Time

	mu       sync.Mutex
	previous map[ForwarderKey]netip.Addr
	lastPlan Plan
	ready    bool
	healthy  bool
	failures int
	// dfChanges counts networks this gateway started or stopped forwarding.
	dfChanges prometheus.Counter
	// complete is whether the last plan holds every network this gateway
	// would forward if it were healthy; sick is when it withdrew.
	complete bool
	sick     time.Time
}

// Counters reads the eBPF programs' packet counters by action.
type Counters interface {
	Counters() (map[string]uint64, error)
}

// New builds an agent over dp (already open) and, if not nil, the eBPF
// isolation (a bpf.Manager, which also gives Counters). It starts nothing.
func New(cfg Config, dp vtep.Dataplane, iso Isolation) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Hold <= 0 {
		cfg.Hold = cfg.Gossip.ProbeInterval
		if cfg.Hold <= 0 {
			cfg.Hold = gossip.DefaultProbeInterval
		}
	}
	a := &Agent{cfg: cfg, dp: dp, reg: prometheus.NewRegistry(), log: cfg.Logger, healthy: true, handover: newHandover(cfg.Hold)}
	cfg.Gossip.Logger = cfg.Logger.With("component", "gossip")
	if cfg.Gossip.NodeName == "" {
		cfg.Gossip.NodeName = cfg.GatewayID
	}
	var err error
	a.gossip, err = gossip.New(cfg.Gossip, a.meta(true))
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	if cfg.Backend == "" {
		cfg.Backend = gossip.BackendLinux
		a.cfg.Backend = cfg.Backend
	}
	gw := api.Gateway{ID: cfg.GatewayID, PodID: cfg.Pod, VTEP: cfg.VTEP.String(), Backend: cfg.Backend,
		PopulateMACs: cfg.PopulateMACs}
	if cfg.DVRMAC != nil {
		gw.DVRMAC = cfg.DVRMAC.String()
	}
	cache := ""
	if cfg.StateDir != "" {
		cache = filepath.Join(cfg.StateDir, "pod-state.json")
	}
	a.rec = NewReconciler(dp, a.plan, cfg.Resync, cfg.Logger.With("component", "reconcile"), a.reg)
	var counters Counters
	if iso != nil {
		a.rec.isolation = iso
		if c, ok := iso.(Counters); ok {
			counters = c
			a.registerBPFCounters(c)
		}
	}
	a.sync = NewSyncer(cfg.Brain, gw, cache, cfg.Logger.With("component", "sync"), a.rec.Trigger)
	a.sync.status = func() *api.GatewayStatus {
		a.mu.Lock()
		st := &api.GatewayStatus{Healthy: a.healthy, Forwarding: len(a.lastPlan.Config.Networks), Standby: len(a.lastPlan.Standby)}
		a.mu.Unlock()
		st.BrainConnected = a.sync.Status().Connected
		if counters != nil {
			if m, err := counters.Counters(); err == nil {
				st.Counters = m
			}
		}
		return st
	}
	a.rec.healthy = a.setHealthy
	a.rec.synced = func() {
		a.mu.Lock()
		a.ready = true
		a.mu.Unlock()
		sdnotify.Ready()
		a.log.Info("dataplane in sync; ready")
	}
	if src, ok := dp.(vtep.MACSource); ok && cfg.Brain != nil {
		a.learner = NewLearner(cfg.Brain, src, cfg.Pod, a.sync.State, a.forwardedVNIs, cfg.Resync, cfg.Logger.With("component", "learned"))
	}
	a.dfChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_df_changes_total",
		Help: "Networks this gateway started or stopped forwarding as its pod's designated forwarder."})
	a.registerMetrics()
	a.registerGossipEvents()
	return a, nil
}

func (a *Agent) meta(healthy bool) gossip.Meta {
	return gossip.Meta{Pod: a.cfg.Pod, GatewayID: a.cfg.GatewayID, VTEP: a.cfg.VTEP, Backend: a.cfg.Backend,
		DVRMAC: a.cfg.DVRMAC, Healthy: healthy, Weight: a.cfg.Weight}
}

// plan builds the dataplane plan from the current inputs. It runs only on
// the reconciler's goroutine.
func (a *Agent) plan() (Plan, bool) {
	a.mu.Lock()
	settleAt := a.settleAt
	prev := a.previous
	a.mu.Unlock()
	now := time.Now()
	// Until gossip has settled this gateway does not know who else forwards
	// what: it leaves the dataplane as it is.
	if settleAt.IsZero() || now.Before(settleAt) {
		return Plan{}, false
	}
	st, ok := a.sync.State()
	if !ok {
		return Plan{}, false
	}
	members := a.gossip.Members()
	live := map[string]bool{}
	for _, m := range members {
		if m.Live() {
			live[m.Name] = true
		}
	}
	var retry time.Time
	self := a.gossip.Name()
	forward := func(vni uint32, df string) bool {
		fwd, r := a.handover.decide(now, vni, df, self, func(n string) bool { return live[n] })
		if !r.IsZero() && (retry.IsZero() || r.Before(retry)) {
			retry = r
		}
		return fwd
	}
	p := BuildPlan(PlanInput{
		State: st, Members: members, Self: self, PodID: a.cfg.Pod,
		LocalInterface: InterfaceTemplate(a.cfg.LocalInterface, a.log), PopulateMACs: a.cfg.PopulateMACs,
		Previous: prev, Forward: forward, OwnDVRMAC: a.cfg.DVRMAC,
	})
	keep := map[uint32]bool{}
	for _, n := range st.Networks {
		keep[n.VNI] = true
	}
	would := wouldForward(st, members, self, a.cfg.Pod)
	a.handover.forget(keep)
	if !retry.IsZero() {
		time.AfterFunc(retry.Sub(now), a.rec.Trigger)
	}
	for _, s := range p.Skipped {
		a.log.Warn("skipped", "reason", s)
	}
	a.mu.Lock()
	a.dfChanges.Add(float64(forwardingChanges(a.lastPlan, p)))
	a.previous = p.Forwarders
	a.lastPlan = p
	a.complete = len(p.Config.Networks) >= would
	a.mu.Unlock()
	return p, true
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

// setHealthy withdraws this gateway from forwarder election after three
// dataplane failures in a row. Once withdrawn, a successful reconcile proves
// nothing while the plan leaves out the networks it would forward; it comes
// back when a reconcile with all of them succeeds, or after a cooldown (one
// resync period) to try again.
func (a *Agent) setHealthy(ok bool) {
	a.mu.Lock()
	want := a.healthy
	switch {
	case !ok:
		a.failures++
		if a.failures >= 3 && a.healthy {
			want, a.sick = false, time.Now()
		}
	case a.healthy || a.complete:
		a.failures, want = 0, true
	case time.Since(a.sick) >= a.cfg.Resync:
		a.failures, want = 0, true
	}
	change := want != a.healthy
	a.healthy = want
	a.mu.Unlock()
	if change {
		a.log.Warn("gateway health changed", "healthy", want)
		if err := a.gossip.SetMeta(a.meta(want)); err != nil {
			a.log.Warn("announce health", "err", err)
		}
	}
}

// Run runs the agent until ctx ends; on the way out it leaves gossip
// gracefully and leaves the dataplane as it is.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if a.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", a.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", a.cfg.MetricsListen, err)
		}
		srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
		defer srv.Close()
	}
	wg.Add(4)
	go func() {
		defer wg.Done()
		// Settle once joined, or after a while alone: a gateway whose peers
		// are all down must still program its dataplane.
		joinCtx, cancelJoin := context.WithTimeout(ctx, 5*time.Second)
		defer cancelJoin()
		if err := a.gossip.Join(joinCtx); err != nil && ctx.Err() == nil {
			a.log.Warn("gossip join: no seed answered yet; going on alone", "err", err)
			go a.gossip.Join(ctx)
		}
		a.mu.Lock()
		a.settleAt = time.Now().Add(a.cfg.Hold)
		a.mu.Unlock()
		time.AfterFunc(a.cfg.Hold, a.rec.Trigger)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.gossip.Changed():
				a.rec.Trigger()
			}
		}
	}()
	go func() { defer wg.Done(); a.sync.Run(ctx) }()
	go func() { defer wg.Done(); a.rec.Run(ctx) }()
	if a.cfg.KernelWatch != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			WatchKernel(ctx, a.cfg.KernelWatch, a.wantsInterface, a.rec.TriggerFull, 200*time.Millisecond, a.log.With("component", "kernelwatch"))
		}()
	}
	if a.learner != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.learner.Run(ctx) }()
	}
	stopWatchdog := sdnotify.StartWatchdog(ctx, func() error {
		if !a.Healthy() {
			return errors.New("unhealthy")
		}
		return nil
	})
	defer stopWatchdog()
	a.log.Info("agent running", "pod", a.cfg.Pod, "gateway", a.cfg.GatewayID, "vtep", a.cfg.VTEP, "gossip", a.gossip.LocalAddr())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sdnotify.Stopping()
	cancel()
	wg.Wait()
	if lerr := a.gossip.Leave(gossip.DefaultLeaveTimeout); lerr != nil {
		a.log.Debug("gossip leave", "err", lerr)
	}
	a.gossip.Shutdown()
	return err
}

// wantsInterface reports whether ifname is a local interface of the last plan.
func (a *Agent) wantsInterface(ifname string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.lastPlan.Config.Networks {
		if n.LocalInterface == ifname {
			return true
		}
	}
	return false
}

// Healthy reports whether the dataplane takes its plan.
func (a *Agent) Healthy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.healthy
}

// Ready reports whether the dataplane has been in sync at least once.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

// Registry is the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

func (a *Agent) registerMetrics() {
	a.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_brain_connected", Help: "1 while the brain watch is up."},
			func() float64 { return b2f(a.sync.Status().Connected) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_desired_revision", Help: "Revision of the desired state held."},
			func() float64 { return float64(a.sync.Status().Revision) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_last_sync_age_seconds", Help: "Seconds since the last brain event."},
			func() float64 {
				t := a.sync.Status().LastEvent
				if t.IsZero() {
					return -1
				}
				return time.Since(t).Seconds()
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_gossip_members", Help: "Live gossip members, this gateway included."},
			func() float64 {
				n := 0
				for _, m := range a.gossip.Members() {
					if m.Live() {
						n++
					}
				}
				return float64(n)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_healthy", Help: "1 while the dataplane takes its plan."},
			func() float64 { return b2f(a.Healthy()) }),
		a.dfChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// registerBPFCounters exports the eBPF counters, read at scrape time, as
// l2span_agent_bpf_packets_total{action}.
func (a *Agent) registerBPFCounters(c Counters) {
	var mu sync.Mutex
	var cached map[string]uint64
	var at time.Time
	read := func(action string) float64 {
		mu.Lock()
		defer mu.Unlock()
		// One map read per scrape, not one per action.
		if time.Since(at) > 500*time.Millisecond {
			m, err := c.Counters()
			if err != nil {
				return 0
			}
			cached, at = m, time.Now()
		}
		return float64(cached[action])
	}
	for _, action := range bpf.Actions() {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "l2span_agent_bpf_packets_total", Help: "Packets seen by the eBPF programs, by action.",
			ConstLabels: prometheus.Labels{"action": action},
		}, func() float64 { return read(action) }))
	}
}

// registerGossipEvents exports memberlist events seen by this agent.
func (a *Agent) registerGossipEvents() {
	events := map[string]func(gossip.Stats) uint64{
		"join": func(s gossip.Stats) uint64 { return s.Joins }, "update": func(s gossip.Stats) uint64 { return s.Updates },
		"suspect": func(s gossip.Stats) uint64 { return s.Suspects }, "leave": func(s gossip.Stats) uint64 { return s.Leaves },
		"death": func(s gossip.Stats) uint64 { return s.Deaths }, "bad_meta": func(s gossip.Stats) uint64 { return s.BadMeta },
	}
	for name, get := range events {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "l2span_agent_gossip_events_total", Help: "Gossip membership events seen by this agent, by event.",
			ConstLabels: prometheus.Labels{"event": name},
		}, func() float64 { return float64(get(a.gossip.Stats())) }))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !a.Healthy() {
			http.Error(w, "dataplane failing", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /dataplane", func(w http.ResponseWriter, r *http.Request) {
		v := a.dataplaneView(r.Context())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.Ready() {
			http.Error(w, "not synced yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Checker is a dataplane that can report drift without acting (vtep/linux).
type Checker interface {
	Check(ctx context.Context, cfg vtep.Config) (vtep.Result, error)
}

// dataplaneView is the last plan with the drift a dry run finds now.
func (a *Agent) dataplaneView(ctx context.Context) api.AgentDataplane {
	a.mu.Lock()
	p := a.lastPlan
	v := api.AgentDataplane{Pod: a.cfg.Pod, GatewayID: a.cfg.GatewayID, Healthy: a.healthy, Standby: p.Standby,
		Networks: []api.AgentNetwork{}}
	a.mu.Unlock()
	v.Revision = a.sync.Status().Revision
	for _, n := range p.Config.Networks {
		v.Networks = append(v.Networks, api.AgentNetwork{VNI: n.VNI, LocalInterface: n.LocalInterface, MACs: len(n.MACs), Flood: len(n.Flood), Neighbors: len(n.Neighbors)})
	}
	for vni, pods := range p.Unreachable {
		if v.Unreachable == nil {
			v.Unreachable = map[string][]string{}
		}
		v.Unreachable[strconv.FormatUint(uint64(vni), 10)] = pods
	}
	if c, ok := a.dp.(Checker); ok && a.Ready() {
		if res, err := c.Check(ctx, p.Config); err == nil {
			v.Drift = &api.AgentDrift{AddNetworks: res.Added.Networks, AddMACs: res.Added.MACs, AddFlood: res.Added.Flood, AddNeighbors: res.Added.Neighbors,
				RemoveNetworks: res.Removed.Networks, RemoveMACs: res.Removed.MACs, RemoveFlood: res.Removed.Flood, RemoveNeighbors: res.Removed.Neighbors}
		}
	}
	return v
}

// EnsureStateDir creates the state directory.
func EnsureStateDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}
