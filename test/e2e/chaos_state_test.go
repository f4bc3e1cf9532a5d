package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// This file computes, from the brain's API alone, what every gateway of a
// chaos rig must hold, and reads what it holds: the kernel's devices, FDB
// and neighbor entries (netlink dumps in the gateway's namespace) or the
// OVSDB hardware_vtep rows (ovsdb-client). Both sides are rendered as
// sorted lines so a difference names the entry.

// chaosGateway is one gateway of the rig as the expectation needs it.
type chaosGateway struct {
	gw *netns.Gateway
	id string // gateway id and gossip name: pod-host
	// ovsdb is the hardware_vtep socket of an hwvtep gateway; "" for Linux.
	ovsdb string
}

// brainView is the brain's data that decides what the gateways hold.
type brainView struct {
	// spans[network id] = pods with a segment of the network.
	spans map[string][]string
	vni   map[string]uint32
	ports map[string][]api.Port // by network id
}

func readBrainView(ctx context.Context, c *api.Client, nets []api.Network) (brainView, error) {
	v := brainView{spans: map[string][]string{}, vni: map[string]uint32{}, ports: map[string][]api.Port{}}
	for _, n := range nets {
		v.vni[n.ID] = uint32(n.SegmentationID)
		segs, err := c.ListSegments(ctx, n.ID)
		if err != nil {
			return v, fmt.Errorf("segments of %s: %w", n.ID, err)
		}
		for _, s := range segs {
			v.spans[n.ID] = append(v.spans[n.ID], s.PodID)
		}
		ports, err := listAllPorts(ctx, c, n.ID)
		if err != nil {
			return v, err
		}
		v.ports[n.ID] = ports
	}
	return v, nil
}

func listAllPorts(ctx context.Context, c *api.Client, network string) ([]api.Port, error) {
	var out []api.Port
	o := api.ListOptions{Limit: 1000, Filters: map[string]string{"network_id": network}}
	for {
		l, err := c.ListPorts(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("ports of %s: %w", network, err)
		}
		out = append(out, l.Items...)
		if l.Next == "" {
			return out, nil
		}
		o.Marker = l.Next
	}
}

// chaosMembers is the gossip view of a rig whose gateways are all alive
// and healthy: what every agent must converge to.
func chaosMembers(gws []chaosGateway) []gossip.Member {
	var ms []gossip.Member
	for _, g := range gws {
		ms = append(ms, gossip.Member{Name: g.id, State: gossip.StateAlive,
			Meta: gossip.Meta{Pod: g.gw.Pod, GatewayID: g.id, VTEP: g.gw.VTEP, Healthy: true}})
	}
	return ms
}

// spannedInto is the brain's projection rule: a network is in a pod's
// state when it has a segment there and in at least one other pod.
func (v brainView) spannedInto(network, pod string) bool {
	return slices.Contains(v.spans[network], pod) && len(v.spans[network]) >= 2
}

// remote is, for a network seen from pod, each remote pod's forwarder VTEP.
func (v brainView) remote(network, pod string, ms []gossip.Member) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, p := range v.spans[network] {
		if p == pod {
			continue
		}
		if df, ok := gossip.DF(v.vni[network], p, ms); ok {
			out[p] = df.Meta.VTEP
		}
	}
	return out
}

// wantLinux is what a Linux gateway must hold: for every network it is the
// designated forwarder of, the bridge and VXLAN device with the local
// segment enslaved, an FDB self and master entry per remote port, a flood
// entry per remote pod and a neighbor entry per remote IP; nothing else.
func (v brainView) wantLinux(g chaosGateway, ms []gossip.Member) []string {
	var want []string
	for network, vni := range v.vni {
		if !v.spannedInto(network, g.gw.Pod) {
			continue
		}
		if df, _ := gossip.DF(vni, g.gw.Pod, ms); df.Name != g.id {
			continue
		}
		vx, br := fmt.Sprintf("l2sv%d", vni), fmt.Sprintf("l2sb%d", vni)
		want = append(want, "dev "+vx, "dev "+br, fmt.Sprintf("port seg%d in %s", vni, br))
		remote := v.remote(network, g.gw.Pod, ms)
		for _, addr := range remote {
			want = append(want, fmt.Sprintf("flood %s -> %s", vx, addr))
		}
		for _, p := range v.ports[network] {
			addr, ok := remote[p.PodID]
			if !ok {
				continue
			}
			mac := strings.ToLower(p.MAC)
			want = append(want, fmt.Sprintf("fdb %s %s -> %s", vx, mac, addr), fmt.Sprintf("fdb %s %s master", vx, mac))
			for _, ip := range p.IPs {
				want = append(want, fmt.Sprintf("neigh %s %s %s", br, netip.MustParseAddr(ip), mac))
			}
		}
	}
	slices.Sort(want)
	return want
}

// haveLinux reads the same lines from a gateway's kernel: its l2s devices,
// the local segments enslaved to them, and the entries the agent owns
// (extern_learn) on them.
func haveLinux(gw *netns.Gateway) ([]string, error) {
	h := gw.Handle()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", gw.Name(), err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var have []string
	for _, l := range links {
		name := l.Attrs().Name
		switch {
		case strings.HasPrefix(name, "l2sv"), strings.HasPrefix(name, "l2sb"):
			have = append(have, "dev "+name)
		case strings.HasPrefix(name, "seg") && l.Attrs().MasterIndex != 0:
			have = append(have, fmt.Sprintf("port %s in %s", name, names[l.Attrs().MasterIndex]))
		}
		var lines []string
		switch {
		case strings.HasPrefix(name, "l2sv"):
			lines, err = ownedFDB(h, l)
		case strings.HasPrefix(name, "l2sb"):
			lines, err = ownedNeighs(h, l)
		}
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", name, gw.Name(), err)
		}
		have = append(have, lines...)
	}
	slices.Sort(have)
	return have, nil
}

func ownedFDB(h *netlink.Handle, l netlink.Link) ([]string, error) {
	idx, name := l.Attrs().Index, l.Attrs().Name
	ns, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		if n.LinkIndex != idx || n.Flags&unix.NTF_EXT_LEARNED == 0 {
			continue
		}
		mac := n.HardwareAddr.String()
		switch {
		case n.Flags&unix.NTF_SELF == 0:
			out = append(out, fmt.Sprintf("fdb %s %s master", name, mac))
		case mac == "00:00:00:00:00:00":
			out = append(out, fmt.Sprintf("flood %s -> %s", name, n.IP))
		default:
			out = append(out, fmt.Sprintf("fdb %s %s -> %s", name, mac, n.IP))
		}
	}
	return out, nil
}

func ownedNeighs(h *netlink.Handle, l netlink.Link) ([]string, error) {
	idx, name := l.Attrs().Index, l.Attrs().Name
	ns, err := h.NeighList(idx, unix.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		if n.LinkIndex != idx || n.Flags&unix.NTF_EXT_LEARNED == 0 || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		out = append(out, fmt.Sprintf("neigh %s %s %s", name, ip.Unmap(), n.HardwareAddr))
	}
	return out, nil
}

// hwvtepPort and hwvtepSwitch are the emulated switch of the rig's
// hwvtep gateway: the agent binds each network to VLAN <vni> of the port.
const (
	hwvtepSwitch = "ps0"
	hwvtepPort   = "p0"
)

// wantOVSDB is what an hwvtep gateway's database must hold: a
// Logical_Switch per spanned network bound to its VLAN of the port, a
// Ucast_Macs_Remote per remote port (ipaddr: its lowest IPv4) and one
// unknown-dst Mcast_Macs_Remote to the remote pods' forwarders.
func (v brainView) wantOVSDB(g chaosGateway, ms []gossip.Member) []string {
	var want []string
	for network, vni := range v.vni {
		if !v.spannedInto(network, g.gw.Pod) {
			continue
		}
		ls := fmt.Sprintf("l2s-%d", vni)
		want = append(want, fmt.Sprintf("switch %s key %d", ls, vni), fmt.Sprintf("binding %s %d -> %s", hwvtepPort, vni, ls))
		remote := v.remote(network, g.gw.Pod, ms)
		var flood []string
		for _, a := range remote {
			flood = append(flood, a.String())
		}
		slices.Sort(flood)
		want = append(want, fmt.Sprintf("mcast %s unknown-dst -> %s", ls, strings.Join(flood, ",")))
		for _, p := range v.ports[network] {
			addr, ok := remote[p.PodID]
			if !ok {
				continue
			}
			var v4 []netip.Addr
			for _, ip := range p.IPs {
				if a := netip.MustParseAddr(ip); a.Is4() {
					v4 = append(v4, a)
				}
			}
			slices.SortFunc(v4, netip.Addr.Compare)
			ipaddr := ""
			if len(v4) > 0 {
				ipaddr = v4[0].String()
			}
			want = append(want, fmt.Sprintf("ucast %s %s %s -> %s", ls, strings.ToLower(p.MAC), ipaddr, addr))
		}
	}
	slices.Sort(want)
	return want
}

// haveOVSDB reads the same lines from the database with ovsdb-client, and
// fails on anything doubled (two rows for one MAC in one switch, two
// locators of one VTEP, two switches of one name).
func haveOVSDB(sock string) ([]string, error) {
	tables := map[string][]map[string]string{}
	for _, tb := range []string{"Logical_Switch", "Physical_Port", "Physical_Locator", "Physical_Locator_Set", "Ucast_Macs_Remote", "Mcast_Macs_Remote"} {
		rows, err := ovsdbRows(sock, tb)
		if err != nil {
			return nil, err
		}
		tables[tb] = rows
	}
	var errs []error
	seen := map[string]bool{}
	dup := func(what string) {
		if seen[what] {
			errs = append(errs, fmt.Errorf("duplicate %s", what))
		}
		seen[what] = true
	}
	var have []string
	lsName, locIP, sets := map[string]string{}, map[string]string{}, map[string]string{}
	for _, r := range tables["Logical_Switch"] {
		lsName[r["_uuid"]] = r["name"]
		dup("logical switch " + r["name"])
		have = append(have, fmt.Sprintf("switch %s key %s", r["name"], r["tunnel_key"]))
	}
	for _, r := range tables["Physical_Port"] {
		for _, b := range strings.Fields(r["vlan_bindings"]) {
			vlan, ls, _ := strings.Cut(b, "=")
			have = append(have, fmt.Sprintf("binding %s %s -> %s", r["name"], vlan, lsName[ls]))
		}
	}
	for _, r := range tables["Physical_Locator"] {
		locIP[r["_uuid"]] = r["dst_ip"]
		dup("locator " + r["encapsulation_type"] + "/" + r["dst_ip"])
	}
	for _, r := range tables["Physical_Locator_Set"] {
		var ips []string
		for _, u := range strings.Fields(r["locators"]) {
			ips = append(ips, locIP[u])
		}
		slices.Sort(ips)
		sets[r["_uuid"]] = strings.Join(ips, ",")
	}
	for _, r := range tables["Ucast_Macs_Remote"] {
		ls := lsName[r["logical_switch"]]
		dup("ucast " + ls + " " + r["MAC"])
		have = append(have, fmt.Sprintf("ucast %s %s %s -> %s", ls, r["MAC"], r["ipaddr"], locIP[r["locator"]]))
	}
	for _, r := range tables["Mcast_Macs_Remote"] {
		ls := lsName[r["logical_switch"]]
		dup("mcast " + ls + " " + r["MAC"])
		have = append(have, fmt.Sprintf("mcast %s %s -> %s", ls, r["MAC"], sets[r["locator_set"]]))
	}
	slices.Sort(have)
	return have, errors.Join(errs...)
}

// ovsdbRows dumps a hardware_vtep table as column -> text rows.
func ovsdbRows(sock, table string) ([]map[string]string, error) {
	out, err := exec.Command("ovsdb-client", "-f", "json", "dump", "unix:"+sock, "hardware_vtep", table).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ovsdb-client dump %s: %w: %s", table, err, out)
	}
	return parseDump(table, out)
}

// diffLines names the lines only in want and only in have.
func diffLines(want, have []string) error {
	w, h := map[string]bool{}, map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	for _, s := range have {
		h[s] = true
	}
	var missing, extra []string
	for _, s := range want {
		if !h[s] {
			missing = append(missing, s)
		}
	}
	for _, s := range have {
		if !w[s] {
			extra = append(extra, s)
		}
	}
	if len(missing) == 0 && len(extra) == 0 && len(want) == len(have) {
		return nil
	}
	return fmt.Errorf("%d missing %s; %d extra %s (want %d lines, have %d)",
		len(missing), head(missing, 4), len(extra), head(extra, 4), len(want), len(have))
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "...")
	}
	return s
}

// parseDump reads `ovsdb-client -f json dump` output: each row as column ->
// text (uuids as their text, sets and maps space-joined and sorted).
func parseDump(table string, out []byte) ([]map[string]string, error) {
	var d struct {
		Data     [][]any  `json:"data"`
		Headings []string `json:"headings"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("dump %s: %w: %s", table, err, out)
	}
	var rows []map[string]string
	for _, r := range d.Data {
		row := map[string]string{}
		for i, h := range d.Headings {
			row[h] = flatValue(r[i])
		}
		rows = append(rows, row)
	}
	return rows, nil
}
