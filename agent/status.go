package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/bpf"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/vtep"
)

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
				for _, m := range a.members.Members() {
					if m.Live() {
						n++
					}
				}
				return float64(n)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_healthy", Help: "1 while the dataplane takes its plan."},
			func() float64 { return b2f(a.Healthy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_gossip_insecure", Help: "1 when gossip runs without a key (--insecure-gossip)."},
			func() float64 { return b2f(a.cfg.InsecureGossip) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_agent_plan_conflicts",
			Help: "Entries of the last plan left out because another entry claimed the same MAC or IP."},
			func() float64 {
				a.mu.Lock()
				defer a.mu.Unlock()
				return float64(a.attempted.Conflicts)
			}),
		a.dfChanges, a.watchLost, a.fences,
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
	for reason, get := range map[string]func(gossip.Stats) uint64{
		gossip.RefusedUnencrypted: func(s gossip.Stats) uint64 { return s.RefusedUnencrypted },
		gossip.RefusedBadKey:      func(s gossip.Stats) uint64 { return s.RefusedBadKey },
	} {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "l2span_agent_gossip_refused_total", Help: "Gossip packets and streams refused for their encryption (no key, wrong key), by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(get(a.members.Stats())) }))
	}
	for name, get := range events {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "l2span_agent_gossip_events_total", Help: "Gossip membership events seen by this agent, by event.",
			ConstLabels: prometheus.Labels{"event": name},
		}, func() float64 { return float64(get(a.members.Stats())) }))
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
		if a.cfg.InsecureGossip {
			fmt.Fprintln(w, "ok (insecure gossip: no key, --insecure-gossip)")
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

// dataplaneView is the last plan applied, the error of the last attempt if
// it failed, and the drift a dry run finds now.
func (a *Agent) dataplaneView(ctx context.Context) api.AgentDataplane {
	a.mu.Lock()
	p := a.applied
	v := api.AgentDataplane{Pod: a.cfg.Pod, GatewayID: a.cfg.GatewayID, Healthy: a.healthy, Standby: p.Standby,
		Networks: []api.AgentNetwork{}, Skipped: a.attempted.Skipped}
	if a.lastErr != nil {
		v.LastError = a.lastErr.Error()
	}
	a.mu.Unlock()
	v.Revision = a.sync.Status().Revision
	v.InsecureGossip = a.cfg.InsecureGossip
	for _, i := range a.binding.Current() {
		m := i.Member
		im := api.AgentIgnoredMember{Name: m.Name, Pod: m.Meta.Pod, GatewayID: m.Meta.GatewayID, Reason: i.Reason}
		if m.Addr.IsValid() {
			im.Addr = m.Addr.String()
		}
		if m.Meta.VTEP.IsValid() {
			im.VTEP = m.Meta.VTEP.String()
		}
		v.IgnoredMembers = append(v.IgnoredMembers, im)
	}
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

// status is what the agent reports of itself with its registration.
func (a *Agent) status() *api.GatewayStatus {
	a.mu.Lock()
	st := &api.GatewayStatus{Healthy: a.healthy, Forwarding: len(a.applied.Config.Networks), Standby: len(a.applied.Standby),
		Weight: int(a.cfg.Weight), ForwardedVNIs: forwarded(a.applied)}
	a.mu.Unlock()
	st.BrainConnected = a.sync.Status().Connected
	if a.counters != nil {
		if m, err := a.counters.Counters(); err == nil {
			st.Counters = m
		}
	}
	if ss, ok := a.dp.(vtep.SessionSource); ok {
		for _, s := range ss.Sessions() {
			bs := api.BGPSession{Peer: s.Peer, RemoteAS: s.RemoteAS, State: s.State, Received: s.Received, Advertised: s.Advertised}
			if !s.Since.IsZero() {
				bs.Since = &s.Since
			}
			st.BGPSessions = append(st.BGPSessions, bs)
		}
	}
	return st
}

// forwarded is the VNIs p forwards, sorted.
func forwarded(p Plan) []uint32 {
	var vnis []uint32
	for _, n := range p.Config.Networks {
		vnis = append(vnis, n.VNI)
	}
	slices.Sort(vnis)
	return vnis
}

// forwardedVNIs is the set of VNIs in the last plan this gateway applied.
func (a *Agent) forwardedVNIs() map[uint32]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint32]bool, len(a.applied.Config.Networks))
	for _, n := range a.applied.Config.Networks {
		out[n.VNI] = true
	}
	return out
}
