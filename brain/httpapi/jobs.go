package httpapi

import (
	"net/http"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

func (s *Server) listJobs(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := model.JobFilter{Type: q.Get("type"), State: q.Get("state"), PodID: q.Get("pod_id"), Resource: q.Get("resource")}
	return asList(toAPIJob)(s.svc.ListJobs(r.Context(), f, pg))
}

func (s *Server) getJob(r *http.Request) (any, error) {
	return as(toAPIJob)(s.svc.GetJob(r.Context(), r.PathValue("id")))
}

func (s *Server) retryJob(r *http.Request) (any, error) {
	return as(toAPIJob)(s.svc.RetryJob(r.Context(), r.PathValue("id")))
}

// listRoutes serves the resource routing table (top id -> bottom id per pod).
func (s *Server) listRoutes(r *http.Request) (any, error) {
	q := r.URL.Query()
	rs, err := s.svc.ListRoutes(r.Context(), model.RouteFilter{TopID: q.Get("top_id"), PodID: q.Get("pod_id"),
		NetworkID: q.Get("network_id"), ResourceType: q.Get("resource_type")})
	return api.List[api.Route]{Items: mapSlice(rs, toAPIRoute)}, err
}
