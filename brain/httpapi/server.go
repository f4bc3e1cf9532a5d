// Package httpapi serves the brain's REST API. Handlers are thin: they decode
// input, call brain.Service and return (value, error); one wrapper maps coded
// errors to status codes and the error body.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

// Authenticator decides whether a request may reach the API. It is the one
// place auth lives, so a Keystone or mTLS check slots in without touching
// handlers.
type Authenticator func(*http.Request) error

// BearerTokens accepts requests carrying one of tokens as a bearer token.
func BearerTokens(tokens ...string) Authenticator {
	return func(r *http.Request) error {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return errors.New("missing bearer token")
		}
		for _, t := range tokens {
			if subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
				return nil
			}
		}
		return errors.New("invalid bearer token")
	}
}

// Options configure a Server.
type Options struct {
	Auth Authenticator // nil: no authentication
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
	s := &Server{svc: svc, hub: hub, opts: opts, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
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
			func() float64 { r, _ := hub.Current(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_brain_watchers", Help: "Open watch streams."},
			func() float64 { return float64(hub.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l2span_brain_duplicate_macs", Help: "Ports frozen as duplicate MACs (moving between pods too often)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := svc.CountDuplicates(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Jobs by state, counted once per scrape.
	var jobsMu sync.Mutex
	var jobCounts map[string]int
	var jobsAt time.Time
	for _, state := range []string{"new", "running", "success", "failed"} {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "l2span_brain_jobs", Help: "Bottom-cloud jobs by state.", ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 {
			jobsMu.Lock()
			defer jobsMu.Unlock()
			if time.Since(jobsAt) > time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				m, err := svc.CountJobsByState(ctx)
				if err != nil {
					return -1
				}
				jobCounts, jobsAt = m, time.Now()
			}
			return float64(jobCounts[state])
		}))
	}
	s.register()
	return s
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

type handlerFunc func(*http.Request) (any, int, error)

func (s *Server) handle(method, path string, h handlerFunc) {
	if !strings.HasPrefix(path, "/v1/") {
		panic("api route outside /v1: " + path)
	}
	s.routeList = append(s.routeList, Route{method, path})
	pattern := method + " " + path
	s.mux.Handle(pattern, s.instrument(path, s.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, status, err := h(r)
		var st errStream
		if errors.As(err, &st) {
			s.stream(w, r, st.pod, st.since)
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	}))))
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.opts.Auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.opts.Auth(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="l2span"`)
			writeJSON(w, http.StatusUnauthorized, api.ErrorBody{Error: api.ErrorDetail{Code: brain.CodeAuth, Message: err.Error()}})
			return
		}
		next.ServeHTTP(w, r)
	})
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

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := brain.AsError(err)
	if e.Status >= 500 {
		s.errors5.Inc()
		s.opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, e.Status, api.ErrorBody{Error: api.ErrorDetail{Code: e.Code, Message: e.Message, Field: e.Field}})
}

const maxBody = 16 << 20

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors naming the field.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Message: "request body must hold one JSON object"}
	}
	return nil
}

func bodyError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr):
		return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: typeErr.Field,
			Message: fmt.Sprintf("must be a JSON %s, not %s", typeErr.Type, typeErr.Value)}
	case errors.As(err, &syntaxErr):
		return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Message: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)}
	case errors.As(err, &maxErr):
		return &brain.Error{Status: http.StatusRequestEntityTooLarge, Code: brain.CodeInvalid, Message: fmt.Sprintf("request body is larger than %d bytes", maxBody)}
	case errors.Is(err, io.EOF):
		return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Message: "request body is empty"}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: f, Message: "unknown field"}
	}
	return &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Message: "malformed JSON: " + err.Error()}
}

func page(r *http.Request) (model.Page, error) {
	q := r.URL.Query()
	p := model.Page{Marker: q.Get("marker"), Limit: 1000}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return p, &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: "limit", Message: "must be a number from 1 to 10000"}
		}
		p.Limit = n
	}
	return p, nil
}

func (s *Server) register() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
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
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.ErrorDetail{Code: brain.CodeNotFound, Message: "no route " + r.Method + " " + r.URL.Path}})
	})

	// pods
	s.handle("GET", "/v1/pods", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		l, err := s.svc.ListPods(r.Context(), model.PodFilter{AZ: r.URL.Query().Get("az")}, pg)
		return toAPIList(l, toAPIPod), http.StatusOK, err
	})
	s.handle("POST", "/v1/pods", func(r *http.Request) (any, int, error) {
		var p api.Pod
		if err := decode(r, &p); err != nil {
			return nil, 0, err
		}
		out, err := s.svc.CreatePod(r.Context(), fromAPIPod(p))
		return toAPIPod(out), http.StatusCreated, err
	})
	s.handle("GET", "/v1/pods/{id}", func(r *http.Request) (any, int, error) {
		p, err := s.svc.GetPod(r.Context(), r.PathValue("id"))
		return toAPIPod(p), http.StatusOK, err
	})
	s.handle("PUT", "/v1/pods/{id}", func(r *http.Request) (any, int, error) {
		var p api.Pod
		if err := decode(r, &p); err != nil {
			return nil, 0, err
		}
		if p.ID != "" && p.ID != r.PathValue("id") {
			return nil, 0, &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: "id", Message: "does not match the URL"}
		}
		p.ID = r.PathValue("id")
		out, err := s.svc.UpdatePod(r.Context(), fromAPIPod(p))
		return toAPIPod(out), http.StatusOK, err
	})
	s.handle("DELETE", "/v1/pods/{id}", func(r *http.Request) (any, int, error) {
		return nil, http.StatusNoContent, s.svc.DeletePod(r.Context(), r.PathValue("id"))
	})
	s.handle("GET", "/v1/pods/{id}/state", s.podState)

	// networks
	s.handle("GET", "/v1/networks", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		q := r.URL.Query()
		l, err := s.svc.ListNetworks(r.Context(), model.NetworkFilter{Name: q.Get("name"), Type: q.Get("type")}, pg)
		return toAPIList(l, toAPINetwork), http.StatusOK, err
	})
	s.handle("POST", "/v1/networks", func(r *http.Request) (any, int, error) {
		var req api.NetworkCreate
		if err := decode(r, &req); err != nil {
			return nil, 0, err
		}
		n, err := s.svc.CreateNetwork(r.Context(), fromAPINetworkCreate(req))
		return toAPINetwork(n), http.StatusCreated, err
	})
	s.handle("GET", "/v1/networks/{id}", func(r *http.Request) (any, int, error) {
		n, err := s.svc.GetNetwork(r.Context(), r.PathValue("id"))
		return toAPINetwork(n), http.StatusOK, err
	})
	s.handle("PUT", "/v1/networks/{id}", func(r *http.Request) (any, int, error) {
		var u api.NetworkUpdate
		if err := decode(r, &u); err != nil {
			return nil, 0, err
		}
		n, err := s.svc.UpdateNetwork(r.Context(), r.PathValue("id"), fromAPINetworkUpdate(u))
		return toAPINetwork(n), http.StatusOK, err
	})
	s.handle("DELETE", "/v1/networks/{id}", func(r *http.Request) (any, int, error) {
		return nil, http.StatusNoContent, s.svc.DeleteNetwork(r.Context(), r.PathValue("id"))
	})
	s.handle("GET", "/v1/networks/{id}/segments", func(r *http.Request) (any, int, error) {
		segs, err := s.svc.ListSegments(r.Context(), r.PathValue("id"))
		return api.List[api.Segment]{Items: mapSlice(segs, toAPISegment)}, http.StatusOK, err
	})
	s.handle("POST", "/v1/networks/{id}/segments", func(r *http.Request) (any, int, error) {
		var rep api.SegmentReport
		if err := decode(r, &rep); err != nil {
			return nil, 0, err
		}
		seg, err := s.svc.ReportSegment(r.Context(), r.PathValue("id"), fromAPISegmentReport(rep))
		return toAPISegment(seg), http.StatusOK, err
	})

	// subnets
	s.handle("GET", "/v1/subnets", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		l, err := s.svc.ListSubnets(r.Context(), model.SubnetFilter{NetworkID: r.URL.Query().Get("network_id")}, pg)
		return toAPIList(l, toAPISubnet), http.StatusOK, err
	})
	s.handle("POST", "/v1/subnets", func(r *http.Request) (any, int, error) {
		var sn api.Subnet
		if err := decode(r, &sn); err != nil {
			return nil, 0, err
		}
		out, err := s.svc.CreateSubnet(r.Context(), fromAPISubnet(sn))
		return toAPISubnet(out), http.StatusCreated, err
	})
	s.handle("GET", "/v1/subnets/{id}", func(r *http.Request) (any, int, error) {
		sn, err := s.svc.GetSubnet(r.Context(), r.PathValue("id"))
		return toAPISubnet(sn), http.StatusOK, err
	})
	s.handle("DELETE", "/v1/subnets/{id}", func(r *http.Request) (any, int, error) {
		return nil, http.StatusNoContent, s.svc.DeleteSubnet(r.Context(), r.PathValue("id"))
	})

	// ports
	s.handle("GET", "/v1/ports", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		q := r.URL.Query()
		l, err := s.svc.ListPorts(r.Context(), model.PortFilter{NetworkID: q.Get("network_id"), PodID: q.Get("pod_id"), MAC: q.Get("mac"),
			Duplicate: q.Get("duplicate") == "true"}, pg)
		return toAPIList(l, toAPIPort), http.StatusOK, err
	})
	s.handle("POST", "/v1/ports", s.createPorts)
	s.handle("GET", "/v1/ports/{id}", func(r *http.Request) (any, int, error) {
		p, err := s.svc.GetPort(r.Context(), r.PathValue("id"))
		return toAPIPort(p), http.StatusOK, err
	})
	s.handle("PUT", "/v1/ports/{id}", func(r *http.Request) (any, int, error) {
		var u api.PortUpdate
		if err := decode(r, &u); err != nil {
			return nil, 0, err
		}
		p, err := s.svc.UpdatePort(r.Context(), r.PathValue("id"), fromAPIPortUpdate(u))
		return toAPIPort(p), http.StatusOK, err
	})
	s.handle("DELETE", "/v1/ports/{id}", func(r *http.Request) (any, int, error) {
		return nil, http.StatusNoContent, s.svc.DeletePort(r.Context(), r.PathValue("id"))
	})

	// gateways
	s.handle("GET", "/v1/gateways", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		l, err := s.svc.ListGateways(r.Context(), model.GatewayFilter{PodID: r.URL.Query().Get("pod_id")}, pg)
		return toAPIList(l, toAPIGateway), http.StatusOK, err
	})
	s.handle("PUT", "/v1/gateways/{id}", func(r *http.Request) (any, int, error) {
		var g api.Gateway
		if err := decode(r, &g); err != nil {
			return nil, 0, err
		}
		if g.ID != "" && g.ID != r.PathValue("id") {
			return nil, 0, &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: "id", Message: "does not match the URL"}
		}
		g.ID = r.PathValue("id")
		mg, err := fromAPIGateway(g)
		if err != nil {
			return nil, 0, err
		}
		mg, err = s.svc.RegisterGateway(r.Context(), mg)
		return toAPIGateway(mg), http.StatusOK, err
	})
	s.handle("GET", "/v1/gateways/{id}", func(r *http.Request) (any, int, error) {
		g, err := s.svc.GetGateway(r.Context(), r.PathValue("id"))
		return toAPIGateway(g), http.StatusOK, err
	})
	s.handle("DELETE", "/v1/gateways/{id}", func(r *http.Request) (any, int, error) {
		return nil, http.StatusNoContent, s.svc.DeleteGateway(r.Context(), r.PathValue("id"))
	})

	s.registerJobs()
}

// createPorts takes one port, or {"ports":[...]} for a bulk create.
func (s *Server) createPorts(r *http.Request) (any, int, error) {
	var raw map[string]json.RawMessage
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, 0, bodyError(err)
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, 0, bodyError(err)
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	if _, bulk := raw["ports"]; bulk {
		var req api.BulkPortCreate
		if err := decode(r, &req); err != nil {
			return nil, 0, err
		}
		ports, err := s.svc.CreatePorts(r.Context(), mapSlice(req.Ports, fromAPIPortCreate))
		return api.Ports{Ports: mapSlice(ports, toAPIPort)}, http.StatusCreated, err
	}
	var req api.PortCreate
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	p, err := s.svc.CreatePort(r.Context(), fromAPIPortCreate(req))
	return toAPIPort(p), http.StatusCreated, err
}
