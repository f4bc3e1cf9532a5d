// Package agent is the gateway agent: it keeps its pod's desired state from
// the brain, learns where every pod's gateways are by gossip, and reconciles
// the gateway's dataplane to match, never flushing what works.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/sdnotify"
	"github.com/l2span/l2span/vtep"
)

// Config is the agent's validated configuration.
type Config struct {
	Pod       string
	GatewayID string
	// Backend is "linux" (the default) or "hwvtep".
	Backend string

	// Brain is the brain's client (an *api.Client). When it also lists and
	// writes ports (PortBrain) and the dataplane learns MACs by itself
	// (vtep.MACSource), the agent reports learned MACs to it.
	Brain Brain

	// Weight is the designated-forwarder weight; zero means
	// gossip.DefaultWeight.
	Weight uint16

	VTEP   netip.Addr
	DVRMAC net.HardwareAddr
	// LocalInterface is the template naming the interface that carries a
	// network's pod-local segment (see InterfaceTemplate).
	LocalInterface string
	// PodSide says the gateway serves its pod's side of VXLAN segments
	// through the pod's VTEP (a backend with PodOptions); PodSideName names
	// a network's pod-side device (for its eBPF programs).
	PodSide      bool
	PodSideName  func(vni uint32) string
	PopulateMACs bool
	Resync       time.Duration
	// Hold is how long a gateway waits before taking a network over from a
	// live gateway of its pod (and how long it lets gossip settle at start);
	// zero means gossip.DefaultProbeInterval.
	Hold time.Duration
	// StateDir holds the cached desired state; empty disables the cache.
	StateDir string
	// MetricsListen serves /metrics, /healthz and /readyz; empty disables it.
	MetricsListen string
	// InsecureGossip says gossip runs without a key (--insecure-gossip):
	// reported in /healthz and /dataplane.
	InsecureGossip bool
	// KernelWatch, when set, is the device prefix whose kernel changes
	// trigger a reconcile (linux backend).
	KernelWatch string
	// KernelWatchBuffer sizes the kernel watch's neighbor socket buffer in
	// bytes (0: the kernel's default).
	KernelWatchBuffer int
	// FenceLease is the length of the node-local fencing lease the agent
	// renews (needs the eBPF programs); zero disables fencing.
	FenceLease time.Duration
	Logger     *slog.Logger
}

// withDefaults returns c with every zero field that has a default filled.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	if c.Hold <= 0 {
		c.Hold = gossip.DefaultProbeInterval
	}
	if c.Backend == "" {
		c.Backend = gossip.BackendLinux
	}
	if c.Weight == 0 {
		c.Weight = gossip.DefaultWeight
	}
	return c
}

// GossipMeta is what this gateway announces while healthy, defaults
// applied: the meta to start its membership with.
func (c Config) GossipMeta() gossip.Meta {
	c = c.withDefaults()
	return gossip.Meta{Pod: c.Pod, GatewayID: c.GatewayID, VTEP: c.VTEP, Backend: c.Backend,
		DVRMAC: c.DVRMAC, Healthy: true, Weight: c.Weight, PodVTEP: c.PodSide}
}

// Agent is one running gateway agent.
type Agent struct {
	cfg     Config
	dp      vtep.Dataplane
	members Membership
	sync    *Syncer
	rec     *Reconciler
	// binding counts and logs the gossip members planning ignores.
	binding *bindingReport
	// learner reports the switch's learned MACs (hwvtep); nil otherwise.
	learner  *Learner
	counters Counters
	reg      *prometheus.Registry
	log      *slog.Logger
	// localIf names a network's local interface.
	localIf func(api.NetworkState) string

	// handover holds the forwarding decisions of the plans tried so far;
	// only the reconciler's goroutine touches it.
	handover *handover

	mu sync.Mutex
	// settleAt is when gossip has settled after start; zero until joined.
	settleAt time.Time
	// applied is the last plan that reached the dataplane in full;
	// attempted is the last one tried, and lastErr why it failed (nil
	// when it did not).
	applied   Plan
	attempted Plan
	lastErr   error
	ready     bool
	healthy   bool
	failures  int
	// sick is when this gateway withdrew from forwarder election.
	sick time.Time
	// dfChanges counts networks this gateway started or stopped forwarding.
	dfChanges prometheus.Counter
	// watchLost counts kernel watch subscriptions lost to an overflow.
	watchLost prometheus.Counter
	// fencer is the fencing lease, when the eBPF programs hold one.
	fencer Fencer
	// fences counts times this gateway fenced itself off (gossip cut).
	fences prometheus.Counter
}

// Counters reads the eBPF programs' packet counters by action.
type Counters interface {
	Counters() (map[string]uint64, error)
}

// New builds an agent over its membership in the gateway cluster (started
// with cfg.GossipMeta, not yet joined), dp (already open) and, if not nil,
// the eBPF isolation (a bpf.Manager, which also gives Counters). It starts
// nothing; the caller keeps members and dp and closes them after Run.
func New(cfg Config, members Membership, dp vtep.Dataplane, iso Isolation) (*Agent, error) {
	cfg = cfg.withDefaults()
	if members == nil || dp == nil {
		return nil, errors.New("agent: membership and dataplane are required")
	}
	if err := cfg.GossipMeta().Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{cfg: cfg, dp: dp, members: members, reg: prometheus.NewRegistry(), log: cfg.Logger, healthy: true,
		handover: newHandover(cfg.Hold), localIf: InterfaceTemplate(cfg.LocalInterface, cfg.Logger)}
	gw := api.Gateway{ID: cfg.GatewayID, PodID: cfg.Pod, VTEP: cfg.VTEP.String(), Backend: cfg.Backend,
		PopulateMACs: cfg.PopulateMACs}
	if cfg.DVRMAC != nil {
		gw.DVRMAC = cfg.DVRMAC.String()
	}
	cache := ""
	if cfg.StateDir != "" {
		cache = filepath.Join(cfg.StateDir, "pod-state.json")
	}
	a.rec = NewReconciler(ReconcilerOptions{Dataplane: dp, Isolation: iso, Plan: a.plan, Applied: a.record, Synced: a.synced,
		Resync: cfg.Resync, Logger: cfg.Logger.With("component", "reconcile"), Registerer: a.reg})
	if f, ok := iso.(Fencer); ok && cfg.FenceLease > 0 {
		a.fencer = f
	}
	if c, ok := iso.(Counters); ok {
		a.counters = c
		a.registerBPFCounters(c)
	}
	a.sync = NewSyncer(cfg.Brain, gw, cache, cfg.Logger.With("component", "sync"), a.rec.Trigger)
	a.sync.status = a.status
	if src, ok := dp.(vtep.MACSource); ok {
		if pb, ok := cfg.Brain.(PortBrain); ok {
			a.learner = NewLearner(pb, src, cfg.Pod, a.sync.State, a.forwardedVNIs, cfg.Resync, cfg.Logger.With("component", "learned"))
		}
	}
	a.dfChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_df_changes_total",
		Help: "Networks this gateway started or stopped forwarding as its pod's designated forwarder."})
	a.watchLost = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_kernel_watch_resubscribes_total",
		Help: "Kernel watch subscriptions lost (the kernel dropped notifications: ENOBUFS) and made again with a full reconcile."})
	a.fences = prometheus.NewCounter(prometheus.CounterOpts{Name: "l2span_agent_fenced_total",
		Help: "Times this gateway fenced its ports because it heard no gossip peer while its pod has another gateway."})
	a.registerMetrics()
	a.registerGossipEvents()
	a.binding = newBindingReport(members.Name(), cfg.Logger.With("component", "gossip-binding"), a.reg)
	return a, nil
}

func (a *Agent) meta(healthy bool) gossip.Meta {
	m := a.cfg.GossipMeta()
	m.Healthy = healthy
	return m
}

func (a *Agent) synced() {
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	sdnotify.Ready()
	a.log.Info("dataplane in sync; ready")
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
		if err := a.members.Join(joinCtx); err != nil && ctx.Err() == nil {
			a.log.Warn("gossip join: no seed answered yet; going on alone", "err", err)
			go a.members.Join(ctx)
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
			case <-a.members.Changed():
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
			WatchKernel(ctx, KernelWatchOptions{Prefix: a.cfg.KernelWatch, Relevant: a.wantsInterface, Trigger: a.rec.TriggerFull,
				Debounce: 200 * time.Millisecond, ReceiveBuffer: a.cfg.KernelWatchBuffer, Lost: a.watchLost.Inc,
				Log: a.log.With("component", "kernelwatch")})
		}()
	}
	if n, ok := a.dp.(ChangeNotifier); ok {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchDataplane(ctx, n) }()
	}
	if a.fencer != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.runFencing(ctx, a.fencer) }()
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
	a.log.Info("agent running", "pod", a.cfg.Pod, "gateway", a.cfg.GatewayID, "vtep", a.cfg.VTEP, "gossip", gossipAddr(a.members))
	if a.cfg.InsecureGossip {
		a.log.Warn("gossip is NOT encrypted (--insecure-gossip): any host that reaches the gossip port can join; " +
			"only members the brain has registered are honoured")
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sdnotify.Stopping()
	cancel()
	wg.Wait()
	if lerr := a.members.Leave(gossip.DefaultLeaveTimeout); lerr != nil {
		a.log.Debug("gossip leave", "err", lerr)
	}
	return err
}

// gossipAddr is where peers reach m, when m can tell.
func gossipAddr(m Membership) string {
	if la, ok := m.(interface{ LocalAddr() netip.AddrPort }); ok {
		return la.LocalAddr().String()
	}
	return m.Name()
}

// wantsInterface reports whether ifname is a local interface of the last
// plan tried: its appearance is worth a reconcile even when that plan failed.
func (a *Agent) wantsInterface(ifname string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.attempted.Config.Networks {
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
