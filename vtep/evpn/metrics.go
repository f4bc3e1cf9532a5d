package evpn

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/vtep"
)

type metrics struct {
	sessionUp *prometheus.GaugeVec
	routes    *prometheus.GaugeVec
	upDown    *prometheus.CounterVec
	last      map[string]bool
}

func newMetrics() *metrics {
	return &metrics{
		sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "l2span_agent_evpn_session_up",
			Help: "1 while the BGP session to the fabric neighbor is established."}, []string{"peer"}),
		upDown: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l2span_agent_evpn_session_transitions_total",
			Help: "BGP sessions to fabric neighbors that came up or went down, as seen by this agent."}, []string{"peer", "to"}),
		routes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "l2span_agent_evpn_routes",
			Help: "EVPN routes this gateway advertises (out) and imports from the fabric (in), by route type."}, []string{"direction", "type"}),
		last: map[string]bool{},
	}
}

// Register adds the backend's metrics to reg.
func (b *Backend) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{b.metrics.sessionUp, b.metrics.routes, b.metrics.upDown} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) setSessions(ss []vtep.Session) {
	for _, s := range ss {
		up := s.State == "established"
		if was, seen := m.last[s.Peer]; seen && was != up || !seen && up {
			to := "down"
			if up {
				to = "up"
			}
			m.upDown.WithLabelValues(s.Peer, to).Inc()
		}
		m.last[s.Peer] = up
		v := 0.0
		if up {
			v = 1
		}
		m.sessionUp.WithLabelValues(s.Peer).Set(v)
	}
}

func (m *metrics) setRoutes(out, in map[key]route) {
	mo, ko := countTypes(out)
	mi, ki := countTypes(in)
	m.routes.WithLabelValues("out", typeMACIP).Set(float64(mo))
	m.routes.WithLabelValues("out", typeMulticast).Set(float64(ko))
	m.routes.WithLabelValues("in", typeMACIP).Set(float64(mi))
	m.routes.WithLabelValues("in", typeMulticast).Set(float64(ki))
}
