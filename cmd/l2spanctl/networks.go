package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/l2span/l2span/brain/api"
)

func networkCommands() []*command {
	return []*command{
		networkCreateCommand(),
		networkListCommand(),
		networkShowCommand(),
		networkMACsCommand(),
		networkDeleteCommand(),
		networkRenameCommand(),
		networkReportSegmentCommand(),
	}
}

// networkCreateCommand creates a top network.
func networkCreateCommand() *command {
	return &command{
		name: "create", args: "NAME --type TYPE [flags]", summary: "create a top network", minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) runFunc {
			var req api.NetworkCreate
			var hints listFlag
			fs.StringVar(&req.Type, "type", "", "network `TYPE`: local, shared_vlan, shared_vxlan or mixed_vlan_vxlan (required)")
			fs.Var(&hints, "az-hint", "availability `ZONE` the network may span (for --external: the pod id); repeatable or comma-separated; none means any AZ")
			fs.BoolVar(&req.External, "external", false, "external network (its one --az-hint names a pod)")
			fs.IntVar(&req.SegmentationID, "segmentation-id", 0, "request VLAN id or VNI `N` instead of allocating one")
			fs.StringVar(&req.PhysicalNetwork, "physical-network", "", "`PHYSNET` of a shared_vlan network's VLAN id")
			fs.StringVar(&req.ProjectID, "project", "", "Neutron `PROJECT` id owning the network")
			fs.BoolVar(&req.Shared, "shared", false, "ports of other projects may join the network")
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
	}
}

// networkListCommand lists top networks, optionally filtered.
func networkListCommand() *command {
	return &command{
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
	}
}

// networkShowCommand shows a network and its span.
func networkShowCommand() *command {
	return &command{
		name: "show", args: "ID|NAME", summary: "show a network and its span: one row per pod segment, with the pod's port count and designated forwarder (the gateways whose last report lists the network's VNI; remote pods flood to it)", minArgs: 1, maxArgs: 1,
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
	}
}

// networkMACsCommand prints a network's MAC table across pods.
func networkMACsCommand() *command {
	return &command{
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
	}
}

// networkDeleteCommand deletes a network without ports.
func networkDeleteCommand() *command {
	return &command{
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
	}
}

// networkRenameCommand renames a network.
func networkRenameCommand() *command {
	return &command{
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
	}
}

// networkReportSegmentCommand records a mixed network's bottom segment in one pod.
func networkReportSegmentCommand() *command {
	return &command{
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
	dfOf := map[string][]string{}
	if n.Type == api.TypeSharedVXLAN || n.Type == api.TypeMixedVLANVXLAN {
		gws, err := api.ListAll(e.ctx, c.ListGateways, api.ListOptions{})
		if err != nil {
			return err
		}
		dfOf = reportedForwarders(uint32(n.SegmentationID), gws, time.Now())
	}
	fmt.Fprintln(e.out, "\nSpan:")
	t = e.table()
	t.row("POD", "AZ", "NETWORK_TYPE", "SEGMENTATION_ID", "PHYSICAL_NETWORK", "PORTS", "FORWARDER")
	for _, s := range segs {
		df := "-"
		if dfs := dfOf[s.PodID]; len(dfs) > 0 {
			df = strings.Join(dfs, ", ")
		}
		t.row(s.PodID, azOf[s.PodID], segType(s), fmtInt(s.SegmentationID), s.PhysicalNetwork, fmt.Sprint(count[s.PodID]), df)
	}
	t.flush()
	return t.err
}

// forwarderFreshness is how recent a gateway's last report must be for the
// CLI to believe it; agents refresh their registration well within it.
const forwarderFreshness = 35 * time.Second

// reportedForwarders returns, per pod, the gateways whose last report (no
// older than forwarderFreshness) lists vni among the VNIs they forward, as
// "ID (VTEP)" sorted by id. The CLI shows what the agents say rather than
// re-running their election: two gateways of one pod claiming the same VNI
// is a split brain the operator must see, so both are kept.
func reportedForwarders(vni uint32, gws []api.Gateway, now time.Time) map[string][]string {
	out := map[string][]string{}
	for _, g := range gws {
		if g.Status == nil || now.Sub(g.LastSeen) > forwarderFreshness {
			continue
		}
		if slices.Contains(g.Status.ForwardedVNIs, vni) {
			out[g.PodID] = append(out[g.PodID], g.ID+" ("+g.VTEP+")")
		}
	}
	for _, dfs := range out {
		slices.Sort(dfs)
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
