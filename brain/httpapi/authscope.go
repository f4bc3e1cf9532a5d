package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

// The scope checks bind a principal to what is its own. They read only
// what they need from the body and leave it for the handler; a body they
// cannot parse passes, and the handler answers it with its 400.

// peekBody reads the body and puts it back for the handler.
func peekBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, bodyError(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

func agentOwnPod(_ *Server, r *http.Request, p brain.Principal) error {
	if id := r.PathValue("id"); id != p.PodID {
		return forbidden("agent of pod %s may not read pod %s", p.PodID, id)
	}
	return nil
}

func agentOwnGateway(_ *Server, r *http.Request, p brain.Principal) error {
	if id := r.PathValue("id"); id != p.GatewayID {
		return forbidden("agent %s may not read gateway %s", p.GatewayID, id)
	}
	return nil
}

// agentRegister: an agent registers only itself, in its own pod.
func agentRegister(s *Server, r *http.Request, p brain.Principal) error {
	if err := agentOwnGateway(s, r, p); err != nil {
		return forbidden("agent %s may not register as gateway %s", p.GatewayID, r.PathValue("id"))
	}
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	var g struct {
		PodID string `json:"pod_id"`
	}
	if json.Unmarshal(b, &g) == nil && g.PodID != p.PodID {
		return forbidden("agent of pod %s may not register in pod %q", p.PodID, g.PodID)
	}
	return nil
}

// agentListPorts: the ports of its own pod, or the lookup of one MAC in a
// network (to claim a MAC its switch learned).
func agentListPorts(_ *Server, r *http.Request, p brain.Principal) error {
	q := r.URL.Query()
	if pod := q.Get("pod_id"); pod == p.PodID || (pod == "" && q.Get("network_id") != "" && q.Get("mac") != "") {
		return nil
	}
	return forbidden("agent of pod %s may list only its pod's ports (pod_id=%s) or look up one MAC (network_id and mac)", p.PodID, p.PodID)
}

func agentCreatePorts(_ *Server, r *http.Request, p brain.Principal) error {
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	var one api.PortCreate
	var bulk api.BulkPortCreate
	ports := []api.PortCreate{}
	if json.Unmarshal(b, &bulk) == nil && bulk.Ports != nil {
		ports = bulk.Ports
	} else if json.Unmarshal(b, &one) == nil {
		ports = append(ports, one)
	}
	for _, pc := range ports {
		if pc.PodID != p.PodID {
			return forbidden("agent of pod %s may not create a port in pod %q", p.PodID, pc.PodID)
		}
		if pc.DeviceOwner != api.DeviceOwnerLearned {
			return forbidden("agent may create only learned ports (device_owner %s), not %q", api.DeviceOwnerLearned, pc.DeviceOwner)
		}
	}
	return nil
}

func (s *Server) portOf(r *http.Request) (model.Port, error) {
	return s.svc.GetPort(r.Context(), r.PathValue("id"))
}

func agentOwnPort(s *Server, r *http.Request, p brain.Principal) error {
	port, err := s.portOf(r)
	if err != nil {
		return err
	}
	if port.PodID != p.PodID {
		return forbidden("agent of pod %s may not read port %s of pod %s", p.PodID, port.ID, port.PodID)
	}
	return nil
}

func ownLearned(port model.Port, p brain.Principal) error {
	if port.PodID != p.PodID || port.DeviceOwner != api.DeviceOwnerLearned {
		return forbidden("agent of pod %s may change only its pod's learned ports; port %s is %q in pod %s",
			p.PodID, port.ID, port.DeviceOwner, port.PodID)
	}
	return nil
}

func agentDeletePort(s *Server, r *http.Request, p brain.Principal) error {
	port, err := s.portOf(r)
	if err != nil {
		return err
	}
	return ownLearned(port, p)
}

// agentUpdatePort: an agent moves a port into its own pod (its switch
// learned the MAC here: pod_id and mobility_seq only), or refreshes the IPs
// of its own pod's learned port.
func agentUpdatePort(s *Server, r *http.Request, p brain.Principal) error {
	port, err := s.portOf(r)
	if err != nil {
		return err
	}
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	var u api.PortUpdate
	if json.Unmarshal(b, &u) != nil {
		return nil
	}
	if u.PodID != nil && *u.PodID != port.PodID {
		if *u.PodID != p.PodID {
			return forbidden("agent of pod %s may move a port only into its own pod, not %q", p.PodID, *u.PodID)
		}
		if u.IPs != nil || u.ClearDuplicate {
			return forbidden("agent may move a port into its pod but not change its ips or duplicate mark")
		}
		return nil
	}
	if u.ClearDuplicate {
		return forbidden("agent may not clear a duplicate mark")
	}
	return ownLearned(port, p)
}

func driverOwns(p brain.Principal, what, id, project string) error {
	if !p.InProject(project) {
		return forbidden("driver token scoped to projects %v may not touch %s %s of project %q", p.Projects, what, id, project)
	}
	return nil
}

func driverBodyProject(_ *Server, r *http.Request, p brain.Principal) error {
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	var v struct {
		ProjectID string `json:"project_id"`
	}
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return driverOwns(p, "a network in", "", v.ProjectID)
}

func driverNetworkProject(param string) scopeCheck {
	return func(s *Server, r *http.Request, p brain.Principal) error {
		n, err := s.svc.GetNetwork(r.Context(), r.PathValue(param))
		if err != nil {
			return err
		}
		return driverOwns(p, "network", n.ID, n.ProjectID)
	}
}

func (s *Server) networkProject(r *http.Request, p brain.Principal, networkID string) error {
	n, err := s.svc.GetNetwork(r.Context(), networkID)
	if brain.AsError(err).Kind == brain.KindNotFound {
		return nil // the handler names the missing network
	}
	if err != nil {
		return err
	}
	return driverOwns(p, "network", n.ID, n.ProjectID)
}

func driverSubnetBodyProject(s *Server, r *http.Request, p brain.Principal) error {
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	var v struct {
		NetworkID string `json:"network_id"`
	}
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return s.networkProject(r, p, v.NetworkID)
}

func driverSubnetProject(s *Server, r *http.Request, p brain.Principal) error {
	sn, err := s.svc.GetSubnet(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.networkProject(r, p, sn.NetworkID)
}

func driverPortsBodyProject(_ *Server, r *http.Request, p brain.Principal) error {
	b, err := peekBody(r)
	if err != nil {
		return err
	}
	type pc struct {
		ProjectID string `json:"project_id"`
	}
	var one pc
	var bulk struct {
		Ports []pc `json:"ports"`
	}
	ports := []pc{}
	if json.Unmarshal(b, &bulk) == nil && bulk.Ports != nil {
		ports = bulk.Ports
	} else if json.Unmarshal(b, &one) == nil {
		ports = append(ports, one)
	}
	for _, port := range ports {
		if err := driverOwns(p, "a port in", "", port.ProjectID); err != nil {
			return err
		}
	}
	return nil
}

func driverPortProject(s *Server, r *http.Request, p brain.Principal) error {
	port, err := s.portOf(r)
	if err != nil {
		return err
	}
	return driverOwns(p, "port", port.ID, port.ProjectID)
}

// scopedProjects is the projects a list must be narrowed to (nil: all).
func scopedProjects(r *http.Request) []string {
	p := principalOf(r)
	if p.Role != model.RoleDriver || len(p.Projects) == 0 {
		return nil
	}
	return slices.Clone(p.Projects)
}
