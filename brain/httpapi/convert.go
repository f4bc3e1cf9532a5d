package httpapi

import (
	"encoding/json"
	"fmt"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/state"
)

// The one place wire types (brain/api) meet the brain's model and state
// types. Each conversion keeps nil and empty slices apart, so that the JSON
// stays what it was.

func mapSlice[A, B any](in []A, f func(A) B) []B {
	if in == nil {
		return nil
	}
	out := make([]B, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func toAPIList[A, B any](l model.List[A], f func(A) B) api.List[B] {
	return api.List[B]{Items: mapSlice(l.Items, f), Next: l.Next}
}

// as turns a service call's (value, error) into a handler's, converting the
// value to its wire form with f: as(toAPIPod)(s.svc.GetPod(ctx, id)).
func as[M, W any](f func(M) W) func(M, error) (any, error) {
	return func(v M, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return f(v), nil
	}
}

// asList is as for a page of a list.
func asList[M, W any](f func(M) W) func(model.List[M], error) (any, error) {
	return func(l model.List[M], err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return toAPIList(l, f), nil
	}
}

func toAPIPod(p model.Pod) api.Pod {
	return api.Pod{ID: p.ID, AZ: p.AZ, Region: p.Region, DVRBaseMAC: p.DVRBaseMAC, NeutronURL: p.NeutronURL, CreatedAt: p.CreatedAt}
}

func fromAPIPod(p api.Pod) model.Pod {
	return model.Pod{ID: p.ID, AZ: p.AZ, Region: p.Region, DVRBaseMAC: p.DVRBaseMAC, NeutronURL: p.NeutronURL, CreatedAt: p.CreatedAt}
}

func toAPINetwork(n model.Network) api.Network {
	return api.Network{ID: n.ID, Name: n.Name, Type: n.Type, AZHints: n.AZHints, External: n.External,
		SegmentationID: n.SegmentationID, PhysicalNetwork: n.PhysicalNetwork, GatewayPerPod: n.GatewayPerPod,
		ManagedBy: n.ManagedBy, ProjectID: n.ProjectID, Shared: n.Shared,
		Segments: mapSlice(n.Segments, toAPISegment), CreatedAt: n.CreatedAt}
}

func fromAPINetworkCreate(r api.NetworkCreate) brain.NetworkCreate {
	return brain.NetworkCreate{ID: r.ID, ManagedBy: r.ManagedBy, Name: r.Name, Type: r.Type, AZHints: r.AZHints, External: r.External,
		SegmentationID: r.SegmentationID, PhysicalNetwork: r.PhysicalNetwork, GatewayPerPod: r.GatewayPerPod,
		ProjectID: r.ProjectID, Shared: r.Shared}
}

func fromAPINetworkUpdate(u api.NetworkUpdate) brain.NetworkUpdate {
	return brain.NetworkUpdate{Name: u.Name, AZHints: u.AZHints, External: u.External}
}

func toAPISegment(g model.Segment) api.Segment {
	return api.Segment{NetworkID: g.NetworkID, PodID: g.PodID, NetworkType: g.NetworkType,
		SegmentationID: g.SegmentationID, PhysicalNetwork: g.PhysicalNetwork, CreatedAt: g.CreatedAt}
}

func fromAPISegmentReport(r api.SegmentReport) brain.SegmentReport {
	return brain.SegmentReport{PodID: r.PodID, NetworkType: r.NetworkType, SegmentationID: r.SegmentationID, PhysicalNetwork: r.PhysicalNetwork}
}

func toAPISubnet(s model.Subnet) api.Subnet {
	return api.Subnet{ID: s.ID, NetworkID: s.NetworkID, CIDR: s.CIDR, GatewayIP: s.GatewayIP, CreatedAt: s.CreatedAt}
}

func fromAPISubnet(s api.Subnet) model.Subnet {
	return model.Subnet{ID: s.ID, NetworkID: s.NetworkID, CIDR: s.CIDR, GatewayIP: s.GatewayIP, CreatedAt: s.CreatedAt}
}

func toAPIPort(p model.Port) api.Port {
	return api.Port{ID: p.ID, NetworkID: p.NetworkID, PodID: p.PodID, MAC: p.MAC, IPs: p.IPs, DeviceOwner: p.DeviceOwner, ProjectID: p.ProjectID,
		MobilitySeq: p.MobilitySeq, Duplicate: p.Duplicate, Reserved: p.Reserved, CreatedAt: p.CreatedAt}
}

func fromAPIPortCreate(r api.PortCreate) brain.PortCreate {
	return brain.PortCreate{ID: r.ID, NetworkID: r.NetworkID, PodID: r.PodID, MAC: r.MAC, IPs: r.IPs, DeviceOwner: r.DeviceOwner, ProjectID: r.ProjectID}
}

func fromAPIPortUpdate(u api.PortUpdate) brain.PortUpdate {
	return brain.PortUpdate{PodID: u.PodID, IPs: u.IPs, MobilitySeq: u.MobilitySeq, ClearDuplicate: u.ClearDuplicate}
}

func toAPIGateway(g model.Gateway) api.Gateway {
	out := api.Gateway{ID: g.ID, PodID: g.PodID, VTEP: g.VTEP, Backend: g.Backend, DVRMAC: g.DVRMAC,
		PopulateMACs: g.PopulateMACs, LastSeen: g.LastSeen, Revision: g.Revision}
	if g.Status != nil {
		out.Status = &api.GatewayStatus{}
		if err := json.Unmarshal(g.Status, out.Status); err != nil {
			out.Status = nil // a report this brain cannot read is as good as none
		}
	}
	return out
}

func fromAPIGateway(g api.Gateway) (model.Gateway, error) {
	out := model.Gateway{ID: g.ID, PodID: g.PodID, VTEP: g.VTEP, Backend: g.Backend, DVRMAC: g.DVRMAC,
		PopulateMACs: g.PopulateMACs, LastSeen: g.LastSeen, Revision: g.Revision}
	if g.Status != nil {
		b, err := json.Marshal(g.Status)
		if err != nil {
			return out, fmt.Errorf("encode status of gateway %s: %w", g.ID, err)
		}
		out.Status = b
	}
	return out, nil
}

func toAPIJob(j model.Job) api.Job {
	return api.Job{ID: j.ID, Type: j.Type, Resource: j.Resource, PodID: j.PodID, State: j.State, Attempts: j.Attempts,
		LastError: j.LastError, NextRunAt: j.NextRunAt, LeaseOwner: j.LeaseOwner, LeaseUntil: j.LeaseUntil,
		Rerun: j.Rerun, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
}

func toAPIRoute(r model.Route) api.Route {
	return api.Route{TopID: r.TopID, PodID: r.PodID, ResourceType: r.ResourceType, BottomID: r.BottomID,
		NetworkID: r.NetworkID, CreatedAt: r.CreatedAt}
}

func toAPIPodState(st state.PodState) api.PodState {
	return api.PodState{PodID: st.PodID, Revision: st.Revision, Networks: mapSlice(st.Networks, toAPINetworkState),
		DVRBaseMACs: st.DVRBaseMACs, Gateways: mapSlice(st.Gateways, toAPIPodGateway)}
}

func toAPIPodGateway(g state.Gateway) api.PodGateway {
	return api.PodGateway{ID: g.ID, PodID: g.PodID, VTEP: g.VTEP}
}

func toAPINetworkState(n state.NetworkState) api.NetworkState {
	return api.NetworkState{NetworkID: n.NetworkID, Name: n.Name, Type: n.Type, VNI: n.VNI,
		LocalSegment: toAPISegment(n.LocalSegment), RemotePods: n.RemotePods,
		RemotePorts: mapSlice(n.RemotePorts, toAPIRemotePort),
		Subnets: mapSlice(n.Subnets, func(s state.SubnetGateway) api.SubnetGateway {
			return api.SubnetGateway{CIDR: s.CIDR, GatewayIP: s.GatewayIP}
		}),
		PodSide: toAPIPodSide(n.PodSide),
	}
}

func toAPIPodSide(p model.PodSide) *api.PodSide {
	if p.Empty() {
		return nil
	}
	return &api.PodSide{VTEPs: p.VTEPs, Ports: mapSlice(p.Ports, func(pp model.PodSidePort) api.PodSidePort {
		return api.PodSidePort{MAC: pp.MAC, VTEP: pp.VTEP}
	})}
}

func toAPIWatchEvent(ev state.Event) api.WatchEvent {
	out := api.WatchEvent{Revision: ev.Revision, Networks: mapSlice(ev.Networks, toAPINetworkState), Removed: ev.Removed}
	switch ev.Type {
	case state.Snapshot:
		out.Type = api.EventSnapshot
	case state.Update:
		out.Type = api.EventUpdate
	case state.Delta:
		out.Type = api.EventDelta
		out.Changes = mapSlice(ev.Changes, toAPINetworkDelta)
		if ev.Pod != nil {
			out.Pod = &api.PodWide{DVRBaseMACs: ev.Pod.DVRBaseMACs, Gateways: mapSlice(ev.Pod.Gateways, toAPIPodGateway)}
		}
	}
	if ev.State != nil {
		st := toAPIPodState(*ev.State)
		out.State = &st
	}
	return out
}

func toAPINetworkDelta(d state.NetworkDelta) api.NetworkDelta {
	out := api.NetworkDelta{NetworkID: d.NetworkID, RemovedMACs: d.RemovedMACs, Upserted: mapSlice(d.Upserted, toAPIRemotePort)}
	if d.Header != nil {
		n := toAPINetworkState(*d.Header)
		out.Header = &api.NetworkHeader{Name: n.Name, Type: n.Type, VNI: n.VNI, LocalSegment: n.LocalSegment,
			RemotePods: n.RemotePods, Subnets: n.Subnets, PodSide: n.PodSide}
	}
	return out
}

func toAPIRemotePort(p state.RemotePort) api.RemotePort {
	return api.RemotePort{MAC: p.MAC, IPs: p.IPs, PodID: p.PodID, Seq: p.Seq}
}

// encodeEvent is a watch event as one line of the stream.
func encodeEvent(ev state.Event) ([]byte, error) {
	line, err := json.Marshal(toAPIWatchEvent(ev))
	if err != nil {
		return nil, fmt.Errorf("encode watch event: %w", err)
	}
	return append(line, '\n'), nil
}
