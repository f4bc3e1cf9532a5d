// Package httpapi serves the brain's REST API. Handlers are thin: they decode
// input, call brain.Service and return (value, error); one wrapper maps coded
// errors to status codes and the error body. This is the only package of the
// brain that speaks HTTP.
package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l2span/l2span/brain"
)

// Options configure a Server.
type Options struct {
	// Auth says how callers are authenticated (auth.go); the zero value
	// accepts only tokens the brain issued and verified client certificates.
	Auth AuthOptions
	// Heartbeat is how often an idle watch stream gets a heartbeat line.
	Heartbeat time.Duration
	Logger    *slog.Logger
	// Ready reports whether the brain is ready to serve (for /readyz).
	Ready func() error
}

// Server is the brain's HTTP API.
type Server struct {
	svc  *brain.Service
	hub  *brain.Hub
	opts Options
	mux  *http.ServeMux
	reg  *prometheus.Registry

	routeList []Route
	access    map[string]access
	requests  *prometheus.HistogramVec
	errors5   prometheus.Counter
}

// New builds the API over svc and hub.
func New(svc *brain.Service, hub *brain.Hub, opts Options) *Server {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{svc: svc, hub: hub, opts: opts, mux: http.NewServeMux(), reg: prometheus.NewRegistry(), access: routeAccess()}
	s.registerMetrics()
	s.register()
	return s
}

func (s *Server) registerMetrics() {
	s.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "l2span_brain_http_request_duration_seconds",
		Help:    "API request latency by route and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "code"})
	s.errors5 = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "l2span_brain_internal_errors_total", Help: "Requests that failed with an internal (store) error.",
	})
	s.reg.MustRegister(s.requests, s.errors5,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_brain_revision", Help: "Latest committed revision known to this brain."},
			func() float64 { r, _ := s.hub.Current(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_brain_watchers", Help: "Open watch streams."},
			func() float64 { return float64(s.hub.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_brain_duplicate_macs", Help: "Ports frozen as duplicate MACs (moving between pods too often)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := s.svc.CountDuplicates(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	s.registerJobGauges()
}

// registerJobGauges counts jobs by state once per scrape, not once per state.
func (s *Server) registerJobGauges() {
	var mu sync.Mutex
	var counts map[string]int
	var countedAt time.Time
	for _, state := range []string{"new", "running", "success", "failed"} {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "l2span_brain_jobs", Help: "Bottom-cloud jobs by state.", ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(countedAt) > time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				m, err := s.svc.CountJobsByState(ctx)
				if err != nil {
					return -1
				}
				counts, countedAt = m, time.Now()
			}
			return float64(counts[state])
		}))
	}
}

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Route is one API route; Routes lists them for the OpenAPI check.
type Route struct {
	Method, Path string
}

// Routes returns every /v1 route the server serves.
func (s *Server) Routes() []Route { return s.routeList }

// handler is a thin API handler: it returns the value to answer with, or an
// error that writeError maps to a status code and the error body.
type handler func(*http.Request) (any, error)

// operation is one row of the route table: a handler and the status it
// answers with when it succeeds.
type operation struct {
	method, path string
	status       int
	call         handler
}

// operations is the API's route table, except the pod state route, which
// may turn into a watch stream and so writes its own response.
func (s *Server) operations() []operation {
	const ok, created, noContent = http.StatusOK, http.StatusCreated, http.StatusNoContent
	return []operation{
		{"GET", "/v1/pods", ok, s.listPods},
		{"POST", "/v1/pods", created, s.createPod},
		{"GET", "/v1/pods/{id}", ok, s.getPod},
		{"PUT", "/v1/pods/{id}", ok, s.updatePod},
		{"DELETE", "/v1/pods/{id}", noContent, s.deletePod},

		{"GET", "/v1/networks", ok, s.listNetworks},
		{"POST", "/v1/networks", created, s.createNetwork},
		{"GET", "/v1/networks/{id}", ok, s.getNetwork},
		{"PUT", "/v1/networks/{id}", ok, s.updateNetwork},
		{"DELETE", "/v1/networks/{id}", noContent, s.deleteNetwork},
		{"GET", "/v1/networks/{id}/segments", ok, s.listSegments},
		{"POST", "/v1/networks/{id}/segments", ok, s.reportSegment},

		{"GET", "/v1/subnets", ok, s.listSubnets},
		{"POST", "/v1/subnets", created, s.createSubnet},
		{"GET", "/v1/subnets/{id}", ok, s.getSubnet},
		{"DELETE", "/v1/subnets/{id}", noContent, s.deleteSubnet},

		{"GET", "/v1/ports", ok, s.listPorts},
		{"POST", "/v1/ports", created, s.createPorts},
		{"GET", "/v1/ports/{id}", ok, s.getPort},
		{"PUT", "/v1/ports/{id}", ok, s.updatePort},
		{"DELETE", "/v1/ports/{id}", noContent, s.deletePort},

		{"GET", "/v1/gateways", ok, s.listGateways},
		{"PUT", "/v1/gateways/{id}", ok, s.registerGateway},
		{"GET", "/v1/gateways/{id}", ok, s.getGateway},
		{"DELETE", "/v1/gateways/{id}", noContent, s.deleteGateway},

		{"GET", "/v1/jobs", ok, s.listJobs},
		{"GET", "/v1/jobs/{id}", ok, s.getJob},
		{"POST", "/v1/jobs/{id}/retry", ok, s.retryJob},
		{"GET", "/v1/routes", ok, s.listRoutes},

		{"GET", "/v1/tokens", ok, s.listTokens},
		{"POST", "/v1/tokens", created, s.createToken},
		{"GET", "/v1/tokens/{id}", ok, s.getToken},
		{"POST", "/v1/tokens/{id}/revoke", ok, s.revokeToken},
		{"GET", "/v1/whoami", ok, s.whoami},
	}
}

func (s *Server) register() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.protectMetrics(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &brain.Error{Kind: brain.KindNotFound, Message: "no route " + r.Method + " " + r.URL.Path})
	})
	for _, op := range s.operations() {
		s.handle(op.method, op.path, s.reply(op.status, op.call))
	}
	s.handle("GET", "/v1/pods/{id}/state", http.HandlerFunc(s.podState))
}

// handle serves an API route behind authentication, the role table and
// request metrics.
func (s *Server) handle(method, path string, h http.Handler) {
	if !strings.HasPrefix(path, "/v1/") {
		panic("api route outside /v1: " + path)
	}
	s.routeList = append(s.routeList, Route{method, path})
	s.mux.Handle(method+" "+path, s.instrument(path, s.guard(method+" "+path, h)))
}

// reply turns a handler into an http.Handler that answers with status and
// the handler's value as JSON, or with the error body.
func (s *Server) reply(status int, call handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := call(r)
		s.respond(w, r, status, v, err)
	}
}

func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, v)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	body := map[string]string{"status": "ok"}
	if s.opts.Auth.Insecure {
		body["warning"] = errNoAuth.Error()
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	err := error(nil)
	if s.opts.Ready != nil {
		err = s.opts.Ready()
	}
	if err == nil {
		_, err = s.svc.Revision(ctx)
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if r.URL.Query().Get("watch") == "true" {
			return // a stream's duration is not a latency
		}
		s.requests.WithLabelValues(r.Method+" "+route, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
