package agent

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/bpf"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/vtep"
)

// Plan is what one gateway must program, with the reasons some of the brain's
// state could not be placed.
type Plan struct {
	Config vtep.Config
	// Conflicts counts the entries left out of Config because another
	// entry of the network claimed the same MAC or IP (each also in
	// Skipped).
	Conflicts int
	// Standby lists VNIs this gateway does not forward: another live
	// gateway of its pod is their designated forwarder.
	Standby []uint32
	// Unreachable lists remote pods with no live forwarder in gossip, per
	// VNI; their entries point at the last forwarder used (Forwarders of the
	// previous plan), or are left out if there never was one.
	Unreachable map[uint32][]string
	// Forwarders is the VTEP chosen for each (VNI, remote pod).
	Forwarders map[ForwarderKey]netip.Addr
	// Skipped explains entries that were left out (malformed data).
	Skipped []string
	// Isolation is what the eBPF programs need on each forwarded network's
	// local interface: DVR MAC rewrite and per-pod DHCP/gateway isolation.
	Isolation []bpf.Attachment
	// RetryAt is when the plan may change with no input changing (a
	// handover hold ends); zero when it will not.
	RetryAt time.Time
	// Complete is whether the plan holds every network this gateway would
	// forward if it were healthy.
	Complete bool
	// Ignored are the gossip members left out of the plan because the
	// brain does not back their claim (BindMembers).
	Ignored []IgnoredMember

	// handover is the forwarding decisions the plan was made with, kept by
	// the agent once Set ran; nil from BuildPlan alone.
	handover *handover
}

// PlanInput is everything the plan depends on.
type PlanInput struct {
	State   api.PodState
	Members []gossip.Member
	// Self is this gateway's gossip node name; PodID its pod.
	Self  string
	PodID string
	// LocalInterface maps a network's local segment to the interface that
	// carries it on this host ("" when none).
	LocalInterface func(api.NetworkState) string
	// PopulateMACs false means flood-and-learn.
	PopulateMACs bool
	// PodSide says this gateway serves its pod's side of each network on a
	// VXLAN segment (it holds the pod's VTEP when it forwards): such a
	// network gets a vtep.PodSide instead of a local interface, and its
	// eBPF programs go on PodSideName(vni).
	PodSide     bool
	PodSideName func(vni uint32) string
	// OwnDVRMAC is this host's DVR MAC in its pod's Neutron (may be nil).
	OwnDVRMAC net.HardwareAddr
	// Forward decides whether this gateway forwards a network whose
	// designated forwarder in this pod, by the hashing, is df (see
	// handover). Nil means: exactly when df is this gateway.
	Forward func(vni uint32, df string) bool
	// Previous is the previous plan's Forwarders. A remote pod whose
	// gateways all look dead keeps its last forwarder: its kernel dataplane
	// may well still forward (an agent restart), and withdrawing the entries
	// would only cut traffic. They go when the brain withdraws the ports.
	Previous map[ForwarderKey]netip.Addr
}

// ForwarderKey names the forwarder of one network in one remote pod.
type ForwarderKey struct {
	VNI uint32
	Pod string
}

// BuildPlan turns the brain's desired state and the gossip view into the
// dataplane configuration. It is pure: the same input gives the same plan.
func BuildPlan(in PlanInput) Plan {
	p := Plan{Unreachable: map[uint32][]string{}, Forwarders: map[ForwarderKey]netip.Addr{}}
	for _, n := range in.State.Networks {
		if n.VNI == 0 {
			p.Skipped = append(p.Skipped, fmt.Sprintf("network %s: no overlay VNI", n.NetworkID))
			continue
		}
		// Only the designated forwarder of this pod bridges the network. A
		// pod with no eligible gateway in gossip (this one unhealthy and
		// alone) keeps forwarding: withdrawing would help nobody.
		if df, ok := gossip.DF(n.VNI, in.PodID, in.Members); ok {
			forward := df.Name == in.Self
			if in.Forward != nil {
				forward = in.Forward(n.VNI, df.Name)
			}
			if !forward {
				p.Standby = append(p.Standby, n.VNI)
				continue
			}
		}
		nw := vtep.Network{VNI: n.VNI, Learn: !in.PopulateMACs}
		if nw.PodSide = podSide(in, n, &p); nw.PodSide == nil && in.LocalInterface != nil {
			nw.LocalInterface = in.LocalInterface(n)
		}
		podVTEP := map[string]netip.Addr{}
		for _, pod := range n.RemotePods {
			key := ForwarderKey{n.VNI, pod}
			addr := netip.Addr{}
			if df, ok := remoteDF(n.VNI, pod, in.Members); ok && df.Meta.VTEP.IsValid() {
				addr = df.Meta.VTEP
			} else {
				p.Unreachable[n.VNI] = append(p.Unreachable[n.VNI], pod)
				if addr = in.Previous[key]; !addr.IsValid() {
					continue
				}
			}
			p.Forwarders[key] = addr
			podVTEP[pod] = addr
			nw.Flood = append(nw.Flood, addr)
		}
		if in.PopulateMACs {
			for _, rp := range n.RemotePorts {
				addr, ok := podVTEP[rp.PodID]
				if !ok {
					continue
				}
				mac, err := macaddr.Parse(rp.MAC)
				if err != nil {
					p.Skipped = append(p.Skipped, fmt.Sprintf("network %s: port: %v", n.NetworkID, err))
					continue
				}
				nw.MACs = append(nw.MACs, vtep.MACEntry{MAC: mac, VTEP: addr, Seq: uint32(min(max(rp.Seq, 0), math.MaxUint32))})
				for _, ip := range rp.IPs {
					a, err := netip.ParseAddr(ip)
					if err != nil {
						p.Skipped = append(p.Skipped, fmt.Sprintf("network %s: port IP %q: %v", n.NetworkID, ip, err))
						continue
					}
					nw.Neighbors = append(nw.Neighbors, vtep.Neighbor{IP: a, MAC: mac})
				}
			}
		}
		p.Config.Networks = append(p.Config.Networks, nw)
		switch {
		case nw.LocalInterface != "":
			p.Isolation = append(p.Isolation, isolation(in, n, nw.LocalInterface, &p))
		case nw.PodSide != nil && in.PodSideName != nil:
			p.Isolation = append(p.Isolation, isolation(in, n, in.PodSideName(n.VNI), &p))
		}
	}
	var conflicts []vtep.Conflict
	p.Config, conflicts = p.Config.NormalizeConflicts()
	p.Conflicts = len(conflicts)
	for _, c := range conflicts {
		p.Skipped = append(p.Skipped, c.String())
	}
	return p
}

// remoteDF is the gateway of a remote pod to send a network's traffic to:
// its designated forwarder, or, when every live gateway of that pod has
// withdrawn as unhealthy, the one the hashing would pick among them. An
// unhealthy gateway steps aside for a healthy one; with none, it is still
// the best target (one broken network must not blackhole the pod's others).
func remoteDF(vni uint32, pod string, members []gossip.Member) (gossip.Member, bool) {
	if df, ok := gossip.DF(vni, pod, members); ok {
		return df, true
	}
	var live []gossip.Member
	for _, m := range members {
		if m.Meta.Pod == pod && m.Live() && m.MetaErr == nil {
			m.Meta.Healthy = true
			live = append(live, m)
		}
	}
	return gossip.DF(vni, pod, live)
}

// isolation builds the eBPF attachment of one network's local interface.
func isolation(in PlanInput, n api.NetworkState, ifname string, p *Plan) bpf.Attachment {
	a := bpf.Attachment{Interface: ifname, OwnDVRMAC: in.OwnDVRMAC}
	if in.OwnDVRMAC != nil {
		pods := make([]string, 0, len(in.State.DVRBaseMACs))
		for pod := range in.State.DVRBaseMACs {
			pods = append(pods, pod)
		}
		slices.Sort(pods)
		for _, pod := range pods {
			pf, err := macaddr.ParsePrefix(in.State.DVRBaseMACs[pod])
			if err != nil {
				p.Skipped = append(p.Skipped, fmt.Sprintf("pod %s: dvr_base_mac %q: %v", pod, in.State.DVRBaseMACs[pod], err))
				continue
			}
			a.RemoteDVRPrefixes = append(a.RemoteDVRPrefixes, pf)
		}
	}
	for _, sn := range n.Subnets {
		if sn.GatewayIP == "" {
			continue
		}
		if ip, err := netip.ParseAddr(sn.GatewayIP); err == nil {
			a.GatewayIPs = append(a.GatewayIPs, ip)
		}
	}
	return a
}

// InterfaceTemplate expands a local-interface template for a network:
// {vni} the overlay VNI, {type} the local segment's network type, {id} its
// segmentation id, {physnet} its bottom physical network (without #pod).
// An empty template means no local attachment.
func InterfaceTemplate(tmpl string, log *slog.Logger) func(api.NetworkState) string {
	return func(n api.NetworkState) string {
		if tmpl == "" {
			return ""
		}
		seg := n.LocalSegment
		if strings.Contains(tmpl, "{id}") && seg.SegmentationID == 0 {
			// A mixed network whose pod has not reported its segment yet.
			if log != nil {
				log.Warn("local segment not known yet; network not attached", "network", n.NetworkID, "vni", n.VNI)
			}
			return ""
		}
		physnet, _, _ := strings.Cut(seg.PhysicalNetwork, "#")
		r := strings.NewReplacer(
			"{vni}", strconv.FormatUint(uint64(n.VNI), 10),
			"{type}", seg.NetworkType,
			"{id}", strconv.Itoa(seg.SegmentationID),
			"{physnet}", physnet,
		)
		return r.Replace(tmpl)
	}
}
