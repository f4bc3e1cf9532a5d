package jobs

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/l2span/l2span/brain/model"
)

// Agent is an L2 agent of a pod's Neutron: its host and the tunnel IP its
// host's VXLAN devices send from ("" for an agent without tunnels).
type Agent struct {
	Host, TunnelingIP string
}

// AgentLister is a Bottom that lists the pod's L2 agents (GET /v2.0/agents):
// with it, the sync job reads the pod side of the network (its compute
// VTEPs and where each local port lives) back into the brain.
type AgentLister interface {
	ListAgents(ctx context.Context) ([]Agent, error)
}

// ListAgents lists the agents that report a tunneling_ip.
func (n *Neutron) ListAgents(ctx context.Context) ([]Agent, error) {
	var resp struct {
		Agents []struct {
			Host           string         `json:"host"`
			Configurations map[string]any `json:"configurations"`
		} `json:"agents"`
	}
	q := url.Values{"fields": {"host", "configurations"}}
	if _, err := n.c.Get(ctx, n.c.ServiceURL("agents")+"?"+q.Encode(), &resp, nil); err != nil {
		return nil, err
	}
	var out []Agent
	for _, a := range resp.Agents {
		if ip, ok := a.Configurations["tunneling_ip"].(string); ok && ip != "" {
			out = append(out, Agent{Host: a.Host, TunnelingIP: ip})
		}
	}
	return out, nil
}

// podSide works out what the pod's Neutron says about the network's
// segment from the ports it listed (before this run changed any): the
// tunneling IP of every host a port other than a shadow port is bound on,
// and each such port's MAC behind it. Ports on hosts with no tunnel (or on
// the gateway's own shadow host) are left out.
func (r *ensureRun) podSide(ports []Port, agents []Agent) model.PodSide {
	tunnel := map[string]string{}
	for _, a := range agents {
		if a.Host != r.pc.shadowHost() && a.TunnelingIP != r.pc.ShadowTunnelIP {
			tunnel[a.Host] = a.TunnelingIP
		}
	}
	var ps model.PodSide
	for _, p := range ports {
		if p.DeviceOwner == ShadowOwner || p.HostID == "" || p.MAC == "" {
			continue
		}
		if ours(p) {
			if kept, ok := r.portByName[p.Name]; !ok || kept.ID != p.ID {
				continue // deleted by this run
			}
		}
		ip, ok := tunnel[p.HostID]
		if !ok {
			continue
		}
		ps.Ports = append(ps.Ports, model.PodSidePort{MAC: p.MAC, VTEP: ip})
		if !slices.Contains(ps.VTEPs, ip) {
			ps.VTEPs = append(ps.VTEPs, ip)
		}
	}
	return ps
}

// recordPodSide reads the pod's agents and records the network's pod side
// in the brain, when the pod has a shadow tunnel IP (a gateway serves its
// side) and the bottom network is VXLAN.
func (r *ensureRun) recordPodSide(ctx context.Context, ports []Port) error {
	al, ok := r.b.(AgentLister)
	if !ok || r.pc.ShadowTunnelIP == "" || r.net.NetworkType != model.SegmentVXLAN || !r.v.HasSegment {
		return nil
	}
	agents, err := al.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("list bottom agents: %w", err)
	}
	if _, err := r.h.Svc.SetPodSide(ctx, r.n.ID, r.pod, r.podSide(ports, agents)); err != nil {
		return fmt.Errorf("record pod side: %w", err)
	}
	return nil
}
