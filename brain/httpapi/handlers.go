package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

func (s *Server) listPods(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	return asList(toAPIPod)(s.svc.ListPods(r.Context(), model.PodFilter{AZ: r.URL.Query().Get("az")}, pg))
}

func (s *Server) createPod(r *http.Request) (any, error) {
	var p api.Pod
	if err := decode(r, &p); err != nil {
		return nil, err
	}
	return as(toAPIPod)(s.svc.CreatePod(r.Context(), fromAPIPod(p)))
}

func (s *Server) getPod(r *http.Request) (any, error) {
	return as(toAPIPod)(s.svc.GetPod(r.Context(), r.PathValue("id")))
}

func (s *Server) updatePod(r *http.Request) (any, error) {
	var p api.Pod
	if err := decode(r, &p); err != nil {
		return nil, err
	}
	id, err := pathID(r, p.ID)
	if err != nil {
		return nil, err
	}
	p.ID = id
	return as(toAPIPod)(s.svc.UpdatePod(r.Context(), fromAPIPod(p)))
}

func (s *Server) deletePod(r *http.Request) (any, error) {
	return nil, s.svc.DeletePod(r.Context(), r.PathValue("id"))
}

func (s *Server) listNetworks(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return asList(toAPINetwork)(s.svc.ListNetworks(r.Context(), model.NetworkFilter{Name: q.Get("name"), Type: q.Get("type"), ManagedBy: q.Get("managed_by")}, pg))
}

func (s *Server) createNetwork(r *http.Request) (any, error) {
	var req api.NetworkCreate
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return as(toAPINetwork)(s.svc.CreateNetwork(r.Context(), fromAPINetworkCreate(req)))
}

func (s *Server) getNetwork(r *http.Request) (any, error) {
	return as(toAPINetwork)(s.svc.GetNetwork(r.Context(), r.PathValue("id")))
}

func (s *Server) updateNetwork(r *http.Request) (any, error) {
	var u api.NetworkUpdate
	if err := decode(r, &u); err != nil {
		return nil, err
	}
	return as(toAPINetwork)(s.svc.UpdateNetwork(r.Context(), r.PathValue("id"), fromAPINetworkUpdate(u)))
}

func (s *Server) deleteNetwork(r *http.Request) (any, error) {
	return nil, s.svc.DeleteNetwork(r.Context(), r.PathValue("id"))
}

func (s *Server) listSegments(r *http.Request) (any, error) {
	segs, err := s.svc.ListSegments(r.Context(), r.PathValue("id"))
	return api.List[api.Segment]{Items: mapSlice(segs, toAPISegment)}, err
}

func (s *Server) reportSegment(r *http.Request) (any, error) {
	var rep api.SegmentReport
	if err := decode(r, &rep); err != nil {
		return nil, err
	}
	return as(toAPISegment)(s.svc.ReportSegment(r.Context(), r.PathValue("id"), fromAPISegmentReport(rep)))
}

func (s *Server) listSubnets(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	return asList(toAPISubnet)(s.svc.ListSubnets(r.Context(), model.SubnetFilter{NetworkID: r.URL.Query().Get("network_id")}, pg))
}

func (s *Server) createSubnet(r *http.Request) (any, error) {
	var sn api.Subnet
	if err := decode(r, &sn); err != nil {
		return nil, err
	}
	return as(toAPISubnet)(s.svc.CreateSubnet(r.Context(), fromAPISubnet(sn)))
}

func (s *Server) getSubnet(r *http.Request) (any, error) {
	return as(toAPISubnet)(s.svc.GetSubnet(r.Context(), r.PathValue("id")))
}

func (s *Server) deleteSubnet(r *http.Request) (any, error) {
	return nil, s.svc.DeleteSubnet(r.Context(), r.PathValue("id"))
}

func (s *Server) listPorts(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := model.PortFilter{NetworkID: q.Get("network_id"), PodID: q.Get("pod_id"), MAC: q.Get("mac"),
		Duplicate: q.Get("duplicate") == "true"}
	return asList(toAPIPort)(s.svc.ListPorts(r.Context(), f, pg))
}

// createPorts takes one port, or {"ports":[...]} for a bulk create.
func (s *Server) createPorts(r *http.Request) (any, error) {
	var raw map[string]json.RawMessage
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, bodyError(err)
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, bodyError(err)
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	if _, bulk := raw["ports"]; bulk {
		var req api.BulkPortCreate
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		ports, err := s.svc.CreatePorts(r.Context(), mapSlice(req.Ports, fromAPIPortCreate))
		return api.Ports{Ports: mapSlice(ports, toAPIPort)}, err
	}
	var req api.PortCreate
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return as(toAPIPort)(s.svc.CreatePort(r.Context(), fromAPIPortCreate(req)))
}

func (s *Server) getPort(r *http.Request) (any, error) {
	return as(toAPIPort)(s.svc.GetPort(r.Context(), r.PathValue("id")))
}

func (s *Server) updatePort(r *http.Request) (any, error) {
	var u api.PortUpdate
	if err := decode(r, &u); err != nil {
		return nil, err
	}
	return as(toAPIPort)(s.svc.UpdatePort(r.Context(), r.PathValue("id"), fromAPIPortUpdate(u)))
}

func (s *Server) deletePort(r *http.Request) (any, error) {
	return nil, s.svc.DeletePort(r.Context(), r.PathValue("id"))
}

func (s *Server) listGateways(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	return asList(toAPIGateway)(s.svc.ListGateways(r.Context(), model.GatewayFilter{PodID: r.URL.Query().Get("pod_id")}, pg))
}

// registerGateway is an agent announcing itself (PUT: idempotent).
func (s *Server) registerGateway(r *http.Request) (any, error) {
	var g api.Gateway
	if err := decode(r, &g); err != nil {
		return nil, err
	}
	id, err := pathID(r, g.ID)
	if err != nil {
		return nil, err
	}
	g.ID = id
	mg, err := fromAPIGateway(g)
	if err != nil {
		return nil, err
	}
	return as(toAPIGateway)(s.svc.RegisterGateway(r.Context(), mg))
}

func (s *Server) getGateway(r *http.Request) (any, error) {
	return as(toAPIGateway)(s.svc.GetGateway(r.Context(), r.PathValue("id")))
}

func (s *Server) deleteGateway(r *http.Request) (any, error) {
	return nil, s.svc.DeleteGateway(r.Context(), r.PathValue("id"))
}
