package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

func findGroup(name string) *group {
	for _, g := range groups() {
		if g.name == name {
			return g
		}
	}
	return nil
}

func groups() []*group {
	return []*group{
		{name: "pod", summary: "pods: bottom OpenStack clouds, one AZ each", cmds: podCommands()},
		{name: "network", summary: "top networks and their span across pods", cmds: networkCommands()},
		{name: "subnet", summary: "subnets of top networks", cmds: subnetCommands()},
		{name: "port", summary: "ports bound in pods", cmds: portCommands()},
		{name: "gateway", summary: "gateways registered by agents", cmds: gatewayCommands()},
		{name: "agent", summary: "an agent's own view of its dataplane (read from the agent, not the brain)", cmds: agentCommands()},
		{name: "job", summary: "durable jobs on bottom clouds (bottom networks, subnets, ports)", cmds: jobCommands()},
		{name: "state", summary: "a pod's desired state (what its gateways program), or a watch of it", leaf: stateCommand()},
	}
}

// ---- pods ----

func podCommands() []*command {
	return []*command{
		{
			name: "create", args: "ID --az AZ [flags]", summary: "register a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var p api.Pod
				fs.StringVar(&p.AZ, "az", "", "availability `ZONE` the pod is in (required)")
				fs.StringVar(&p.Region, "region", "", "OpenStack `REGION` of the pod")
				fs.StringVar(&p.DVRBaseMAC, "dvr-base-mac", "", "the pod's Neutron dvr_base_mac `PREFIX`, e.g. fa:16:3f:00:00:00/24")
				fs.StringVar(&p.NeutronURL, "neutron-url", "", "the pod's bottom Neutron endpoint `URL`")
				return func(e *env, args []string) error {
					if err := required(fs, "az"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					p.ID = args[0]
					out, err := c.CreatePod(e.ctx, p)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { podFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--az AZ]", summary: "list pods", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				az := fs.String("az", "", "only pods in availability `ZONE`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					pods, err := api.ListAll(e.ctx, c.ListPods, filters("az", *az))
					if err != nil {
						return err
					}
					return list(e, pods, func(t *table) {
						t.row("ID", "AZ", "REGION", "DVR_BASE_MAC", "NEUTRON_URL", "CREATED")
						for _, p := range pods {
							t.row(p.ID, p.AZ, p.Region, p.DVRBaseMAC, p.NeutronURL, fmtTime(p.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a pod and its gateways", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					p, err := c.GetPod(e.ctx, args[0])
					if err != nil {
						return err
					}
					if e.format == "json" {
						return e.json(p)
					}
					gws, err := api.ListAll(e.ctx, c.ListGateways, filters("pod_id", p.ID))
					if err != nil {
						return err
					}
					t := e.table()
					podFields(t, p)
					if len(gws) == 0 {
						t.row("gateways", "(none registered)")
					}
					t.flush()
					if len(gws) > 0 {
						fmt.Fprintln(e.out, "\nGateways:")
						t = e.table()
						gatewayRows(t, gws)
						t.flush()
					}
					return t.err
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeletePod(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("pod %s deleted", args[0])
				})
			},
		},
	}
}

func podFields(t *table, p api.Pod) {
	t.row("id", p.ID)
	t.row("az", p.AZ)
	t.row("region", p.Region)
	t.row("dvr_base_mac", p.DVRBaseMAC)
	t.row("neutron_url", p.NeutronURL)
	t.row("created", fmtTime(p.CreatedAt))
}

// ---- networks ----

func networkCommands() []*command {
	return []*command{
		{
			name: "create", args: "NAME --type TYPE [flags]", summary: "create a top network", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var req api.NetworkCreate
				var hints listFlag
				fs.StringVar(&req.Type, "type", "", "network `TYPE`: local, shared_vlan, shared_vxlan or mixed_vlan_vxlan (required)")
				fs.Var(&hints, "az-hint", "availability `ZONE` the network may span (for --external: the pod id); repeatable or comma-separated; none means any AZ")
				fs.BoolVar(&req.External, "external", false, "external network (its one --az-hint names a pod)")
				fs.IntVar(&req.SegmentationID, "segmentation-id", 0, "request VLAN id or VNI `N` instead of allocating one")
				fs.StringVar(&req.PhysicalNetwork, "physical-network", "", "`PHYSNET` of a shared_vlan network's VLAN id")
				return func(e *env, args []string) error {
					if err := required(fs, "type"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					req.Name = args[0]
					req.AZHints = []string(hints)
					if req.AZHints == nil {
						req.AZHints = []string{}
					}
					n, err := c.CreateNetwork(e.ctx, req)
					if err != nil {
						return err
					}
					return e.show(n, func(t *table) { networkFields(t, n) })
				}
			},
		},
		{
			name: "list", args: "[--type TYPE] [--name NAME]", summary: "list top networks", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				typ := fs.String("type", "", "only networks of `TYPE`")
				name := fs.String("name", "", "only networks named `NAME`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					nets, err := api.ListAll(e.ctx, c.ListNetworks, filters("type", *typ, "name", *name))
					if err != nil {
						return err
					}
					return list(e, nets, func(t *table) {
						t.row("ID", "NAME", "TYPE", "SEGMENTATION_ID", "PHYSICAL_NETWORK", "AZ_HINTS", "EXTERNAL", "PODS", "CREATED")
						for _, n := range nets {
							t.row(n.ID, n.Name, n.Type, fmtInt(n.SegmentationID), n.PhysicalNetwork, fmtHints(n.AZHints),
								yesNo(n.External), strings.Join(segmentPods(n.Segments), ","), fmtTime(n.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID|NAME", summary: "show a network and its span: one row per pod segment, with the pod's port count and designated forwarder (as elected from the gateways' last reports; remote pods flood to it)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					n, err := resolveNetwork(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					if e.format == "json" {
						return e.json(n)
					}
					return showNetwork(e, c, n)
				})
			},
		},
		{
			name: "macs", args: "ID|NAME", summary: "the network's MAC table across pods: where each MAC is, its mobility sequence, duplicates", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					n, err := resolveNetwork(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					return networkMACs(e, c, n)
				})
			},
		},
		{
			name: "delete", args: "ID|NAME", summary: "delete a network without ports (its subnets and segments go with it)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					n, err := resolveNetwork(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					if err := c.DeleteNetwork(e.ctx, n.ID); err != nil {
						return err
					}
					return e.done("network %s (%s) deleted", n.ID, n.Name)
				})
			},
		},
		{
			name: "rename", args: "ID|NAME NEW_NAME", summary: "rename a network", minArgs: 2, maxArgs: 2,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					n, err := resolveNetwork(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					out, err := c.UpdateNetwork(e.ctx, n.ID, api.NetworkUpdate{Name: &args[1]})
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { networkFields(t, out) })
				})
			},
		},
		{
			name: "report-segment", args: "ID|NAME --pod POD --type vlan|vxlan --segmentation-id N [--physical-network PHYSNET]",
			summary: "record the bottom segment a pod chose for a mixed_vlan_vxlan network", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var r api.SegmentReport
				fs.StringVar(&r.PodID, "pod", "", "`POD` that chose the segment (required)")
				fs.StringVar(&r.NetworkType, "type", "", "bottom segment `TYPE`: vlan or vxlan (required)")
				fs.IntVar(&r.SegmentationID, "segmentation-id", 0, "bottom VLAN id or VNI `N` (required)")
				fs.StringVar(&r.PhysicalNetwork, "physical-network", "", "bottom `PHYSNET` of a vlan segment")
				return func(e *env, args []string) error {
					if err := required(fs, "pod", "type", "segmentation-id"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					n, err := resolveNetwork(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					seg, err := c.ReportSegment(e.ctx, n.ID, r)
					if err != nil {
						return err
					}
					return e.show(seg, func(t *table) {
						t.row("network_id", seg.NetworkID)
						t.row("pod_id", seg.PodID)
						t.row("network_type", seg.NetworkType)
						t.row("segmentation_id", fmtInt(seg.SegmentationID))
						t.row("physical_network", seg.PhysicalNetwork)
						t.row("created", fmtTime(seg.CreatedAt))
					})
				}
			},
		},
	}
}

func networkFields(t *table, n api.Network) {
	t.row("id", n.ID)
	t.row("name", n.Name)
	t.row("type", n.Type)
	t.row("segmentation_id", fmtInt(n.SegmentationID))
	t.row("physical_network", n.PhysicalNetwork)
	t.row("az_hints", fmtHints(n.AZHints))
	t.row("external", yesNo(n.External))
	t.row("created", fmtTime(n.CreatedAt))
}

// showNetwork prints the network, its subnets, and its span: one row per
// segment with the pod's AZ and the number of the network's ports there.
func showNetwork(e *env, c *api.Client, n api.Network) error {
	subnets, err := api.ListAll(e.ctx, c.ListSubnets, filters("network_id", n.ID))
	if err != nil {
		return err
	}
	ports, err := api.ListAll(e.ctx, c.ListPorts, filters("network_id", n.ID))
	if err != nil {
		return err
	}
	pods, err := api.ListAll(e.ctx, c.ListPods, api.ListOptions{})
	if err != nil {
		return err
	}
	azOf := map[string]string{}
	for _, p := range pods {
		azOf[p.ID] = p.AZ
	}
	count := map[string]int{}
	for _, p := range ports {
		count[p.PodID]++
	}

	t := e.table()
	networkFields(t, n)
	if len(subnets) == 0 {
		t.row("subnets", "")
	}
	for i, s := range subnets {
		key := ""
		if i == 0 {
			key = "subnets"
		}
		v := s.CIDR
		if s.GatewayIP != "" {
			v += " gateway " + s.GatewayIP
		}
		t.row(key, v+" (id "+s.ID+")")
	}
	t.row("ports", fmt.Sprint(len(ports)))
	t.flush()
	if t.err != nil {
		return t.err
	}

	segs := slices.Clone(n.Segments)
	// A pod with ports but no segment should not happen; show it rather than hide it.
	for pod := range count {
		if !slices.ContainsFunc(segs, func(s api.Segment) bool { return s.PodID == pod }) {
			segs = append(segs, api.Segment{PodID: pod, NetworkType: "(no segment)"})
		}
	}
	slices.SortFunc(segs, func(a, b api.Segment) int { return strings.Compare(a.PodID, b.PodID) })
	if len(segs) == 0 {
		_, err := fmt.Fprintln(e.out, "\nSpan: none yet (a network reaches a pod when a port is bound there)")
		return err
	}
	dfOf := map[string]string{}
	if n.Type == api.TypeSharedVXLAN || n.Type == api.TypeMixedVLANVXLAN {
		gws, err := api.ListAll(e.ctx, c.ListGateways, api.ListOptions{})
		if err != nil {
			return err
		}
		dfOf = designatedForwarders(uint32(n.SegmentationID), gws, time.Now())
	}
	fmt.Fprintln(e.out, "\nSpan:")
	t = e.table()
	t.row("POD", "AZ", "NETWORK_TYPE", "SEGMENTATION_ID", "PHYSICAL_NETWORK", "PORTS", "FORWARDER")
	for _, s := range segs {
		df := dfOf[s.PodID]
		if df == "" {
			df = "-"
		}
		t.row(s.PodID, azOf[s.PodID], segType(s), fmtInt(s.SegmentationID), s.PhysicalNetwork, fmt.Sprint(count[s.PodID]), df)
	}
	t.flush()
	return t.err
}

// designatedForwarders computes, per pod, the gateway the agents elect for
// vni: the same rendezvous hashing, over gateways that reported within the
// last 35 s and are healthy. Gossip is the agents' truth; this is the view
// from the brain's last reports.
func designatedForwarders(vni uint32, gws []api.Gateway, now time.Time) map[string]string {
	var members []gossip.Member
	addr := map[string]string{}
	for _, g := range gws {
		if now.Sub(g.LastSeen) > 35*time.Second {
			continue
		}
		vtep, err := netip.ParseAddr(g.VTEP)
		if err != nil {
			continue
		}
		healthy := g.Status == nil || g.Status.Healthy
		members = append(members, gossip.Member{Name: g.ID, State: gossip.StateAlive,
			Meta: gossip.Meta{Pod: g.PodID, GatewayID: g.ID, VTEP: vtep, Backend: g.Backend, Healthy: healthy, Weight: gossip.DefaultWeight}})
		addr[g.ID] = g.VTEP
	}
	out := map[string]string{}
	for _, m := range members {
		if _, done := out[m.Meta.Pod]; done {
			continue
		}
		if df, ok := gossip.DF(vni, m.Meta.Pod, members); ok {
			out[m.Meta.Pod] = df.Name + " (" + addr[df.Name] + ")"
		}
	}
	return out
}

// networkMACs prints a network's MAC table across pods.
func networkMACs(e *env, c *api.Client, n api.Network) error {
	ports, err := api.ListAll(e.ctx, c.ListPorts, filters("network_id", n.ID))
	if err != nil {
		return err
	}
	slices.SortFunc(ports, func(a, b api.Port) int { return strings.Compare(a.MAC, b.MAC) })
	return list(e, ports, func(t *table) {
		t.row("MAC", "POD", "IPS", "MOBILITY_SEQ", "DUPLICATE", "DEVICE_OWNER", "PORT")
		for _, p := range ports {
			dup := "-"
			if p.Duplicate {
				dup = "FROZEN"
			}
			t.row(p.MAC, p.PodID, strings.Join(p.IPs, ","), fmt.Sprint(p.MobilitySeq), dup, p.DeviceOwner, p.ID)
		}
	})
}

func segType(s api.Segment) string {
	if s.NetworkType == "" {
		return "(not reported)"
	}
	return s.NetworkType
}

func segmentPods(segs []api.Segment) []string {
	var pods []string
	for _, s := range segs {
		pods = append(pods, s.PodID)
	}
	slices.Sort(pods)
	return pods
}

// resolveNetwork finds a network by id, else by name; a name held by several
// networks is an error listing their ids.
func resolveNetwork(ctx context.Context, c *api.Client, idOrName string) (api.Network, error) {
	if idOrName == "" {
		return api.Network{}, usagef("empty network id or name")
	}
	n, err := c.GetNetwork(ctx, idOrName)
	if err == nil {
		return n, nil
	}
	if !api.IsStatus(err, http.StatusNotFound) && !api.IsStatus(err, http.StatusBadRequest) {
		return n, err
	}
	nets, lerr := api.ListAll(ctx, c.ListNetworks, filters("name", idOrName))
	if lerr != nil {
		return api.Network{}, lerr
	}
	switch len(nets) {
	case 0:
		return api.Network{}, fmt.Errorf("network %q not found (no network has this id or name)", idOrName)
	case 1:
		return nets[0], nil
	}
	ids := make([]string, len(nets))
	for i, n := range nets {
		ids[i] = n.ID
	}
	return api.Network{}, fmt.Errorf("network name %q is ambiguous: %d networks have it (%s); use an id", idOrName, len(nets), strings.Join(ids, ", "))
}

// networkID resolves an optional --network filter.
func networkID(ctx context.Context, c *api.Client, idOrName string) (string, error) {
	if idOrName == "" {
		return "", nil
	}
	n, err := resolveNetwork(ctx, c, idOrName)
	return n.ID, err
}

// ---- subnets ----

func subnetCommands() []*command {
	return []*command{
		{
			name: "create", args: "NETWORK --cidr CIDR [--gateway-ip IP]", summary: "add a subnet to a network (by id or name)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var s api.Subnet
				fs.StringVar(&s.CIDR, "cidr", "", "subnet `CIDR`, e.g. 10.0.0.0/24 (required)")
				fs.StringVar(&s.GatewayIP, "gateway-ip", "", "the subnet's (anycast) gateway `IP`")
				return func(e *env, args []string) error {
					if err := required(fs, "cidr"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					if s.NetworkID, err = networkID(e.ctx, c, args[0]); err != nil {
						return err
					}
					out, err := c.CreateSubnet(e.ctx, s)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { subnetFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--network NETWORK]", summary: "list subnets", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				network := fs.String("network", "", "only subnets of `NETWORK` (id or name)")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					nid, err := networkID(e.ctx, c, *network)
					if err != nil {
						return err
					}
					subnets, err := api.ListAll(e.ctx, c.ListSubnets, filters("network_id", nid))
					if err != nil {
						return err
					}
					return list(e, subnets, func(t *table) {
						t.row("ID", "NETWORK_ID", "CIDR", "GATEWAY_IP", "CREATED")
						for _, s := range subnets {
							t.row(s.ID, s.NetworkID, s.CIDR, s.GatewayIP, fmtTime(s.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a subnet", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					s, err := c.GetSubnet(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(s, func(t *table) { subnetFields(t, s) })
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a subnet", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeleteSubnet(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("subnet %s deleted", args[0])
				})
			},
		},
	}
}

func subnetFields(t *table, s api.Subnet) {
	t.row("id", s.ID)
	t.row("network_id", s.NetworkID)
	t.row("cidr", s.CIDR)
	t.row("gateway_ip", s.GatewayIP)
	t.row("created", fmtTime(s.CreatedAt))
}

// ---- ports ----

func portCommands() []*command {
	return []*command{
		{
			name: "create", args: "NETWORK --pod POD --mac MAC [--ip IP]... [flags]", summary: "bind a port of a network (by id or name) in a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var p api.PortCreate
				var ips listFlag
				fs.StringVar(&p.PodID, "pod", "", "`POD` the port is bound in (required)")
				fs.StringVar(&p.MAC, "mac", "", "the port's `MAC` (required)")
				fs.Var(&ips, "ip", "the port's `IP` address; repeatable or comma-separated")
				fs.StringVar(&p.DeviceOwner, "device-owner", "", "Neutron device_owner `OWNER`, e.g. compute:nova or network:dhcp")
				fs.StringVar(&p.ID, "id", "", "port `ID` (default: the brain picks a UUID)")
				return func(e *env, args []string) error {
					if err := required(fs, "pod", "mac"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					if p.NetworkID, err = networkID(e.ctx, c, args[0]); err != nil {
						return err
					}
					p.IPs = []string(ips)
					if p.IPs == nil {
						p.IPs = []string{}
					}
					out, err := c.CreatePort(e.ctx, p)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { portFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--network NETWORK] [--pod POD] [--mac MAC]", summary: "list ports", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				network := fs.String("network", "", "only ports of `NETWORK` (id or name)")
				pod := fs.String("pod", "", "only ports bound in `POD`")
				mac := fs.String("mac", "", "only ports with `MAC`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					nid, err := networkID(e.ctx, c, *network)
					if err != nil {
						return err
					}
					ports, err := api.ListAll(e.ctx, c.ListPorts, filters("network_id", nid, "pod_id", *pod, "mac", *mac))
					if err != nil {
						return err
					}
					return list(e, ports, func(t *table) {
						t.row("ID", "NETWORK_ID", "POD", "MAC", "IPS", "DEVICE_OWNER", "CREATED")
						for _, p := range ports {
							t.row(p.ID, p.NetworkID, p.PodID, p.MAC, strings.Join(p.IPs, ","), p.DeviceOwner, fmtTime(p.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a port", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					p, err := c.GetPort(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(p, func(t *table) { portFields(t, p) })
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a port", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeletePort(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("port %s deleted", args[0])
				})
			},
		},
	}
}

func portFields(t *table, p api.Port) {
	t.row("id", p.ID)
	t.row("network_id", p.NetworkID)
	t.row("pod_id", p.PodID)
	t.row("mac", p.MAC)
	t.row("ips", strings.Join(p.IPs, ", "))
	t.row("device_owner", p.DeviceOwner)
	t.row("created", fmtTime(p.CreatedAt))
}

// ---- gateways ----

func gatewayCommands() []*command {
	return []*command{
		{
			name: "list", args: "[--pod POD]", summary: "list gateways", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				pod := fs.String("pod", "", "only gateways of `POD`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					gws, err := api.ListAll(e.ctx, c.ListGateways, filters("pod_id", *pod))
					if err != nil {
						return err
					}
					return list(e, gws, func(t *table) { gatewayRows(t, gws) })
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a gateway", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					g, err := getGateway(e.ctx, c, args[0])
					if err != nil {
						return err
					}
					return e.show(g, func(t *table) {
						t.row("id", g.ID)
						t.row("pod_id", g.PodID)
						t.row("vtep", g.VTEP)
						t.row("backend", g.Backend)
						t.row("dvr_mac", g.DVRMAC)
						t.row("populate_macs", yesNo(g.PopulateMACs))
						t.row("revision", fmt.Sprint(g.Revision))
						t.row("last_seen", fmtSeen(g.LastSeen))
						if st := g.Status; st != nil {
							t.row("healthy", yesNo(st.Healthy))
							t.row("brain_connected", yesNo(st.BrainConnected))
							t.row("forwarding", fmt.Sprintf("%d network(s) as designated forwarder", st.Forwarding))
							t.row("standby", fmt.Sprintf("%d network(s) forwarded by another gateway of the pod", st.Standby))
							actions := make([]string, 0, len(st.Counters))
							for a := range st.Counters {
								actions = append(actions, a)
							}
							sort.Strings(actions)
							for i, a := range actions {
								label := ""
								if i == 0 {
									label = "ebpf packets"
								}
								t.row(label, fmt.Sprintf("%-18s %d", a, st.Counters[a]))
							}
						}
					})
				})
			},
		},
	}
}

// getGateway returns one gateway.
func getGateway(ctx context.Context, c *api.Client, id string) (api.Gateway, error) {
	return c.GetGateway(ctx, id)
}

func gatewayRows(t *table, gws []api.Gateway) {
	t.row("ID", "POD", "VTEP", "BACKEND", "HEALTHY", "FORWARDING", "STANDBY", "POPULATE_MACS", "REVISION", "LAST_SEEN")
	for _, g := range gws {
		healthy, fwd, standby := "-", "-", "-"
		if st := g.Status; st != nil {
			healthy, fwd, standby = yesNo(st.Healthy), fmt.Sprint(st.Forwarding), fmt.Sprint(st.Standby)
		}
		t.row(g.ID, g.PodID, g.VTEP, g.Backend, healthy, fwd, standby, yesNo(g.PopulateMACs), fmt.Sprint(g.Revision), fmtSeen(g.LastSeen))
	}
}

// ---- agent ----

func agentCommands() []*command {
	return []*command{
		{
			name: "status", args: "[--agent URL]", summary: "networks the agent forwards, standby, unreachable pods, and drift from its plan", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				url := fs.String("agent", "http://127.0.0.1:9697", "the agent's metrics-listen `URL`")
				return func(e *env, _ []string) error {
					ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
					defer cancel()
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/dataplane", nil)
					if err != nil {
						return fmt.Errorf("agent url: %w", err)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						// Not wrapped: the CLI would report a wrapped dial error
						// as the brain being unreachable.
						return errors.New("cannot reach the agent at " + *url + ": " + err.Error())
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("agent at %s answered %s", *url, resp.Status)
					}
					var v api.AgentDataplane
					if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
						return fmt.Errorf("agent answer: %w", err)
					}
					return e.show(v, func(t *table) { agentFields(t, v) })
				}
			},
		},
	}
}

func agentFields(t *table, v api.AgentDataplane) {
	t.row("gateway", v.GatewayID+" (pod "+v.Pod+")")
	t.row("healthy", yesNo(v.Healthy))
	t.row("revision", fmt.Sprint(v.Revision))
	for i, n := range v.Networks {
		key := ""
		if i == 0 {
			key = "forwarding"
		}
		t.row(key, fmt.Sprintf("vni %d on %s: %d macs, %d flood, %d neighbors", n.VNI, orDash(n.LocalInterface), n.MACs, n.Flood, n.Neighbors))
	}
	if len(v.Networks) == 0 {
		t.row("forwarding", "none")
	}
	if len(v.Standby) > 0 {
		t.row("standby", fmt.Sprint(v.Standby))
	}
	for vni, pods := range v.Unreachable {
		t.row("unreachable", fmt.Sprintf("vni %s: %s (no live gateway in gossip)", vni, strings.Join(pods, ",")))
	}
	switch d := v.Drift; {
	case d == nil:
		t.row("drift", "unknown (backend cannot check without acting)")
	case *d == api.AgentDrift{}:
		t.row("drift", "none: the dataplane matches the plan")
	default:
		t.row("drift", fmt.Sprintf("to add %d networks, %d macs, %d flood, %d neighbors; to remove %d networks, %d macs, %d flood, %d neighbors",
			d.AddNetworks, d.AddMACs, d.AddFlood, d.AddNeighbors, d.RemoveNetworks, d.RemoveMACs, d.RemoveFlood, d.RemoveNeighbors))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- jobs ----

func jobCommands() []*command {
	return []*command{
		{
			name: "list", args: "[--state S] [--pod POD] [--type T]", summary: "list jobs", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				state := fs.String("state", "", "only jobs in `STATE` (new, running, success, failed)")
				pod := fs.String("pod", "", "only jobs of `POD`")
				typ := fs.String("type", "", "only jobs of `TYPE`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					jobs, err := api.ListAll(e.ctx, c.ListJobs, api.ListOptions{Filters: map[string]string{"state": *state, "pod_id": *pod, "type": *typ}})
					if err != nil {
						return err
					}
					return list(e, jobs, func(t *table) {
						t.row("ID", "TYPE", "RESOURCE", "POD", "STATE", "ATTEMPTS", "NEXT_RUN", "LAST_ERROR")
						for _, j := range jobs {
							next := "-"
							if j.NextRunAt != nil && j.State != "success" {
								next = fmtTime(*j.NextRunAt)
							}
							t.row(j.ID, j.Type, j.Resource, j.PodID, j.State, fmt.Sprint(j.Attempts), next, oneLine(j.LastError))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a job", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					j, err := c.GetJob(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(j, func(t *table) { jobFields(t, j) })
				})
			},
		},
		{
			name: "retry", args: "ID", summary: "run a job again now (after a failure, or to repair drift)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					j, err := c.RetryJob(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(j, func(t *table) { jobFields(t, j) })
				})
			},
		},
	}
}

func jobFields(t *table, j api.Job) {
	t.row("id", j.ID)
	t.row("type", j.Type)
	t.row("resource", j.Resource)
	t.row("pod_id", j.PodID)
	t.row("state", j.State)
	t.row("attempts", fmt.Sprint(j.Attempts))
	if j.NextRunAt != nil {
		t.row("next_run", fmtTime(*j.NextRunAt))
	}
	t.row("lease_owner", j.LeaseOwner)
	t.row("last_error", oneLine(j.LastError))
	t.row("created", fmtTime(j.CreatedAt))
	t.row("updated", fmtTime(j.UpdatedAt))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// ---- state ----

func stateCommand() *command {
	return &command{
		name: "state", args: "POD [--watch]", minArgs: 1, maxArgs: 1,
		summary: "show a pod's desired state: the networks spanned into it (VNI, local segment,\n" +
			"remote pods) and the remote ports its gateways populate. With --watch, print\n" +
			"each event as the brain streams it until interrupted (-o json: one JSON event\n" +
			"per line).",
		setup: func(fs *flag.FlagSet) runFunc {
			watch := fs.Bool("watch", false, "stream changes until interrupted")
			since := fs.Int64("since", 0, "with --watch: start after this `REVISION` (0: from a snapshot)")
			return withAPI(func(e *env, c *api.Client, args []string) error {
				if !*watch {
					st, err := c.PodState(e.ctx, args[0])
					if err != nil {
						return err
					}
					if e.format == "json" {
						return e.json(st)
					}
					return writeState(e.out, st)
				}
				return watchState(e, c, args[0], *since)
			})
		},
	}
}

// watchState prints events until ctx ends; a stream that breaks after it
// delivered events is resumed from the last revision seen. Interruption is a
// clean exit; a brain that refuses the watch, or cannot be reached at all, is
// an error.
func watchState(e *env, c *api.Client, pod string, since int64) error {
	backoff := 500 * time.Millisecond
	connected := false
	for {
		err := c.Watch(e.ctx, pod, since, 0, func(ev api.WatchEvent) error {
			connected = true
			backoff = 500 * time.Millisecond
			if ev.Revision > since {
				since = ev.Revision
			}
			if err := writeEvent(e, ev); err != nil {
				return outputError{err}
			}
			return nil
		})
		if e.ctx.Err() != nil {
			return nil
		}
		var ae *api.Error
		var oe outputError
		if errors.As(err, &ae) || errors.As(err, &oe) || !connected {
			return err
		}
		fmt.Fprintf(e.errw, "watch: %v; reconnecting from revision %d in %s\n", err, since, backoff)
		select {
		case <-e.ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// outputError is a failure to write our own output: no point reconnecting.
type outputError struct{ error }
