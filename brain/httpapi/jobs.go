package httpapi

import (
	"net/http"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

// registerJobs adds the durable jobs and the resource routing table.
func (s *Server) registerJobs() {
	s.handle("GET", "/v1/jobs", func(r *http.Request) (any, int, error) {
		pg, err := page(r)
		if err != nil {
			return nil, 0, err
		}
		q := r.URL.Query()
		l, err := s.svc.ListJobs(r.Context(), model.JobFilter{Type: q.Get("type"), State: q.Get("state"),
			PodID: q.Get("pod_id"), Resource: q.Get("resource")}, pg)
		return toAPIList(l, toAPIJob), http.StatusOK, err
	})
	s.handle("GET", "/v1/jobs/{id}", func(r *http.Request) (any, int, error) {
		j, err := s.svc.GetJob(r.Context(), r.PathValue("id"))
		return toAPIJob(j), http.StatusOK, err
	})
	s.handle("POST", "/v1/jobs/{id}/retry", func(r *http.Request) (any, int, error) {
		j, err := s.svc.RetryJob(r.Context(), r.PathValue("id"))
		return toAPIJob(j), http.StatusOK, err
	})
	s.handle("GET", "/v1/routes", func(r *http.Request) (any, int, error) {
		q := r.URL.Query()
		rs, err := s.svc.ListRoutes(r.Context(), model.RouteFilter{TopID: q.Get("top_id"), PodID: q.Get("pod_id"),
			NetworkID: q.Get("network_id"), ResourceType: q.Get("resource_type")})
		return api.List[api.Route]{Items: mapSlice(rs, toAPIRoute)}, http.StatusOK, err
	})
}
