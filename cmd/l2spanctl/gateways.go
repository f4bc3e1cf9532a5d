package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/l2span/l2span/brain/api"
)

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
			name: "show", args: "ID", summary: "show a gateway and its last report", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					g, err := c.GetGateway(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(g, func(t *table) { gatewayFields(t, g) })
				})
			},
		},
	}
}

func gatewayFields(t *table, g api.Gateway) {
	t.row("id", g.ID)
	t.row("pod_id", g.PodID)
	t.row("vtep", g.VTEP)
	t.row("backend", g.Backend)
	t.row("dvr_mac", g.DVRMAC)
	t.row("populate_macs", yesNo(g.PopulateMACs))
	t.row("revision", fmt.Sprint(g.Revision))
	t.row("last_seen", fmtSeen(g.LastSeen))
	st := g.Status
	if st == nil {
		return
	}
	t.row("healthy", yesNo(st.Healthy))
	t.row("weight", fmtWeight(st))
	t.row("brain_connected", yesNo(st.BrainConnected))
	t.row("forwarding", fmt.Sprintf("%d network(s) as designated forwarder", st.Forwarding))
	t.row("forwarded_vnis", fmtVNIs(st.ForwardedVNIs))
	t.row("standby", fmt.Sprintf("%d network(s) forwarded by another gateway of the pod", st.Standby))
	actions := make([]string, 0, len(st.Counters))
	for a := range st.Counters {
		actions = append(actions, a)
	}
	slices.Sort(actions)
	for i, a := range actions {
		label := ""
		if i == 0 {
			label = "ebpf packets"
		}
		t.row(label, fmt.Sprintf("%-18s %d", a, st.Counters[a]))
	}
	for i, s := range st.BGPSessions {
		label := ""
		if i == 0 {
			label = "bgp sessions"
		}
		up := ""
		if s.Since != nil {
			up = " since " + fmtSeen(*s.Since)
		}
		t.row(label, fmt.Sprintf("%s AS%d %s%s, %d received, %d advertised", s.Peer, s.RemoteAS, s.State, up, s.Received, s.Advertised))
	}
}

// gatewayRows is the gateway table. WEIGHT sits before LAST_SEEN so that the
// free-text last column stays last.
func gatewayRows(t *table, gws []api.Gateway) {
	t.row("ID", "POD", "VTEP", "BACKEND", "HEALTHY", "FORWARDING", "STANDBY", "POPULATE_MACS", "REVISION", "WEIGHT", "LAST_SEEN")
	for _, g := range gws {
		healthy, fwd, standby := "-", "-", "-"
		if st := g.Status; st != nil {
			healthy, fwd, standby = yesNo(st.Healthy), fmt.Sprint(st.Forwarding), fmt.Sprint(st.Standby)
		}
		t.row(g.ID, g.PodID, g.VTEP, g.Backend, healthy, fwd, standby, yesNo(g.PopulateMACs), fmt.Sprint(g.Revision),
			fmtWeight(g.Status), fmtSeen(g.LastSeen))
	}
}

// fmtWeight is the forwarder-election weight a gateway reported, "-" when
// it reported none (no status yet, or an agent that predates the field).
func fmtWeight(st *api.GatewayStatus) string {
	if st == nil || st.Weight == 0 {
		return "-"
	}
	return fmt.Sprint(st.Weight)
}

func fmtVNIs(vnis []uint32) string {
	if len(vnis) == 0 {
		return "none"
	}
	s := make([]string, len(vnis))
	for i, v := range vnis {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ",")
}
