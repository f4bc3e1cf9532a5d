package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

func TestNetworkShowSpan(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)

	out := b.ok(t, "network", "show", "net1")
	t.Logf("network show net1:\n%s", out)
	if got := field(out, "id"); got != n.ID {
		t.Errorf("id = %q, want %s", got, n.ID)
	}
	if got := field(out, "type"); got != "shared_vxlan" {
		t.Errorf("type = %q", got)
	}
	if got := field(out, "az_hints"); got != "az1,az2" {
		t.Errorf("az_hints = %q", got)
	}
	if got := field(out, "ports"); got != "3" {
		t.Errorf("ports = %q", got)
	}
	if !strings.Contains(out, "10.0.0.0/24 gateway 10.0.0.1 (id ") || !strings.Contains(out, "fd00::/64 (id ") {
		t.Errorf("subnets missing:\n%s", out)
	}
	vni := fmt.Sprint(n.SegmentationID)
	want := [][]string{
		{"pod1", "az1", "vxlan", vni, "-", "1", "-"},
		{"pod2", "az2", "vxlan", vni, "-", "2", "-"},
	}
	got := rowsOf(out, "POD")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("span rows = %v, want %v", got, want)
	}
	if h := strings.Fields(strings.SplitAfter(out, "Span:\n")[1])[:6]; strings.Join(h, " ") != "POD AZ NETWORK_TYPE SEGMENTATION_ID PHYSICAL_NETWORK PORTS" {
		t.Errorf("span header = %v", h)
	}

	// The same by id, and the list shows the pods it spans.
	if out2 := b.ok(t, "network", "show", n.ID); out2 != out {
		t.Errorf("show by id differs from show by name:\n%s", out2)
	}
	rows := rowsOf(b.ok(t, "network", "list"), "ID")
	if len(rows) != 1 || rows[0][0] != n.ID || rows[0][1] != "net1" || rows[0][7] != "pod1,pod2" {
		t.Errorf("network list rows = %v", rows)
	}

	// Port list with filters, by network name.
	rows = rowsOf(b.ok(t, "port", "list", "--network", "net1", "--pod", "pod2"), "ID")
	if len(rows) != 2 {
		t.Fatalf("port list --pod pod2: %v", rows)
	}
	for _, r := range rows {
		if r[2] != "pod2" || r[1] != n.ID {
			t.Errorf("port row %v", r)
		}
	}
	rows = rowsOf(b.ok(t, "port", "list", "--mac", "fa:16:3e:00:00:01"), "ID")
	if len(rows) != 1 || rows[0][4] != "10.0.0.11" || rows[0][5] != "compute:nova" {
		t.Errorf("port list --mac: %v", rows)
	}
	if got := field(b.ok(t, "port", "show", "vm2-port"), "ips"); got != "10.0.0.12, fd00::12" {
		t.Errorf("port show ips = %q", got)
	}
}

func TestOutOfScopePort(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	spanned(t, b)
	r := b.fails(t, 1, "port", "create", "net1", "--pod", "pod3", "--mac", "fa:16:3e:00:00:09")
	if !strings.HasPrefix(r.err, "error: ") || !strings.Contains(r.err, "(field: pod_id)") || !strings.Contains(r.err, "az3") {
		t.Errorf("stderr = %q", r.err)
	}
	if r.out != "" {
		t.Errorf("stdout = %q", r.out)
	}
	// A bad MAC is an input error naming its field too.
	r = b.fails(t, 1, "port", "create", "net1", "--pod", "pod1", "--mac", "nope")
	if !strings.Contains(r.err, "(field: mac)") {
		t.Errorf("stderr = %q", r.err)
	}
	r = b.fails(t, 1, "pod", "show", "nope")
	if !strings.HasPrefix(r.err, "error: ") {
		t.Errorf("stderr = %q", r.err)
	}
}

func TestNameResolution(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	b.ok(t, "pod", "create", "pod1", "--az", "az1")
	a := jsonOut[api.Network](t, b, "network", "create", "dup", "--type", "shared_vxlan")
	c := jsonOut[api.Network](t, b, "network", "create", "dup", "--type", "local")

	r := b.fails(t, 1, "network", "show", "dup")
	if !strings.Contains(r.err, "ambiguous") || !strings.Contains(r.err, a.ID) || !strings.Contains(r.err, c.ID) {
		t.Errorf("ambiguous stderr = %q", r.err)
	}
	b.fails(t, 1, "port", "create", "dup", "--pod", "pod1", "--mac", "fa:16:3e:00:00:01")
	b.fails(t, 1, "network", "delete", "dup")
	r = b.fails(t, 1, "network", "show", "nothing-by-that-name")
	if !strings.Contains(r.err, "not found") {
		t.Errorf("not found stderr = %q", r.err)
	}
	if got := field(b.ok(t, "network", "show", a.ID), "name"); got != "dup" {
		t.Errorf("show by id: name %q", got)
	}

	// Rename one by id: both names now resolve.
	if got := field(b.ok(t, "network", "rename", c.ID, "solo"), "name"); got != "solo" {
		t.Errorf("rename printed name %q", got)
	}
	if got := field(b.ok(t, "network", "show", "dup"), "id"); got != a.ID {
		t.Errorf("dup resolves to %q, want %s", got, a.ID)
	}
	if got := field(b.ok(t, "network", "show", "solo"), "type"); got != "local" {
		t.Errorf("solo type %q", got)
	}
	rows := rowsOf(b.ok(t, "network", "list", "--type", "local"), "ID")
	if len(rows) != 1 || rows[0][1] != "solo" || rows[0][5] != "(any)" {
		t.Errorf("list --type local = %v", rows)
	}
	rows = rowsOf(b.ok(t, "network", "list", "--name", "dup"), "ID")
	if len(rows) != 1 || rows[0][0] != a.ID {
		t.Errorf("list --name dup = %v", rows)
	}
	if out := b.ok(t, "network", "delete", "solo"); !strings.Contains(out, c.ID) {
		t.Errorf("delete printed %q", out)
	}
	b.fails(t, 1, "network", "show", "solo")
}

func TestMixedReportSegment(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	b.ok(t, "pod", "create", "pod1", "--az", "az1")
	b.ok(t, "pod", "create", "pod2", "--az", "az2")
	b.ok(t, "network", "create", "mixed", "--type", "mixed_vlan_vxlan", "--az-hint", "az1,az2")
	b.ok(t, "port", "create", "mixed", "--pod", "pod1", "--mac", "fa:16:3e:00:00:01")
	out := b.ok(t, "network", "show", "mixed")
	if rows := rowsOf(out, "POD"); len(rows) != 1 || rows[0][2] != "(not" {
		t.Errorf("pending segment rows = %v\n%s", rows, out)
	}
	seg := jsonOut[api.Segment](t, b, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan",
		"--segmentation-id", "200", "--physical-network", "physnet1")
	if seg.NetworkType != "vlan" || seg.SegmentationID != 200 {
		t.Errorf("segment = %+v", seg)
	}
	rows := rowsOf(b.ok(t, "network", "show", "mixed"), "POD")
	if len(rows) != 1 || strings.Join(rows[0], " ") != "pod1 az1 vlan 200 physnet1#pod1 1 -" {
		t.Errorf("reported segment rows = %v", rows)
	}
	r := b.fails(t, 1, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan", "--segmentation-id", "5000")
	if !strings.Contains(r.err, "(field: segmentation_id)") {
		t.Errorf("stderr = %q", r.err)
	}
	b.fails(t, 2, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan")
}

func mustNetID(t *testing.T, b *testBrain, name string) string {
	t.Helper()
	nets := jsonOut[[]api.Network](t, b, "network", "list", "--name", name)
	if len(nets) != 1 {
		t.Fatalf("networks named %s: %v", name, nets)
	}
	return nets[0].ID
}

func TestDeletes(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	subs := jsonOut[[]api.Subnet](t, b, "subnet", "list")
	if len(subs) != 2 {
		t.Fatalf("subnets %v", subs)
	}
	if got := field(b.ok(t, "subnet", "show", subs[0].ID), "cidr"); got != subs[0].CIDR {
		t.Errorf("subnet show cidr %q, want %s", got, subs[0].CIDR)
	}
	// A network with ports cannot go.
	if r := b.fails(t, 1, "network", "delete", "net1"); !strings.Contains(r.err, "port") {
		t.Errorf("stderr %q", r.err)
	}
	for _, p := range jsonOut[[]api.Port](t, b, "port", "list") {
		b.ok(t, "port", "delete", p.ID)
	}
	for _, sn := range subs {
		b.ok(t, "subnet", "delete", sn.ID)
	}
	if out := b.ok(t, "-o", "json", "subnet", "list"); strings.TrimSpace(out) != "[]" {
		t.Errorf("subnets after delete: %s", out)
	}
	if out := b.ok(t, "network", "delete", "net1"); !strings.Contains(out, n.ID) {
		t.Errorf("network delete printed %q", out)
	}
	b.ok(t, "pod", "delete", "pod3")
	if pods := jsonOut[[]api.Pod](t, b, "pod", "list"); len(pods) != 2 {
		t.Errorf("pods after delete: %v", pods)
	}
}

// The span shows each pod's designated forwarder as its gateways report it:
// the gateways whose last report lists the network's VNI, all of them when
// two of one pod claim it, "-" when none does.
func TestSpanForwarders(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	vni := uint32(n.SegmentationID)
	report := func(id, pod, vtep string, healthy bool, vnis ...uint32) {
		t.Helper()
		g := api.Gateway{ID: id, PodID: pod, VTEP: vtep, Backend: "linux",
			Status: &api.GatewayStatus{Healthy: healthy, Weight: 100, ForwardedVNIs: vnis}}
		if _, err := b.client.RegisterGateway(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	forwarders := func() (pod1, pod2 string) {
		t.Helper()
		rows := rowsOf(b.ok(t, "network", "show", n.ID), "POD")
		if len(rows) != 2 || rows[0][0] != "pod1" || rows[1][0] != "pod2" {
			t.Fatalf("span rows %v", rows)
		}
		return strings.Join(rows[0][6:], " "), strings.Join(rows[1][6:], " ")
	}
	report("gw-1a", "pod1", "192.0.2.11", true, vni)
	report("gw-1b", "pod1", "192.0.2.12", true, vni+1)
	report("gw-2a", "pod2", "192.0.2.21", false)
	report("gw-2b", "pod2", "192.0.2.22", true, vni)
	if df1, df2 := forwarders(); df1 != "gw-1a (192.0.2.11)" || df2 != "gw-2b (192.0.2.22)" {
		t.Errorf("forwarders pod1 %q, pod2 %q", df1, df2)
	}
	// A split brain: both gateways of pod1 claim the VNI. pod2's forwarder
	// stops reporting it and nobody else does.
	report("gw-1b", "pod1", "192.0.2.12", true, vni+1, vni)
	report("gw-2b", "pod2", "192.0.2.22", true)
	if df1, df2 := forwarders(); df1 != "gw-1a (192.0.2.11), gw-1b (192.0.2.12)" || df2 != "-" {
		t.Errorf("forwarders pod1 %q, pod2 %q", df1, df2)
	}
	// The MAC table across pods.
	macs := rowsOf(b.ok(t, "network", "macs", n.ID), "MAC")
	if len(macs) != 3 || macs[0][1] != "pod1" || macs[0][3] != "0" || macs[0][4] != "-" {
		t.Errorf("mac table %v", macs)
	}
}

// Only fresh reports count: a gateway silent for longer than the freshness
// window, or one that never reported a status, forwards nothing as far as
// the CLI can tell.
func TestReportedForwarders(t *testing.T) {
	now := time.Now()
	st := func(vnis ...uint32) *api.GatewayStatus { return &api.GatewayStatus{Healthy: true, ForwardedVNIs: vnis} }
	gws := []api.Gateway{
		{ID: "gw-1b", PodID: "pod1", VTEP: "192.0.2.12", LastSeen: now.Add(-time.Second), Status: st(7, 9)},
		{ID: "gw-1a", PodID: "pod1", VTEP: "192.0.2.11", LastSeen: now, Status: st(9)},
		{ID: "gw-2a", PodID: "pod2", VTEP: "192.0.2.21", LastSeen: now.Add(-forwarderFreshness - time.Second), Status: st(9)},
		{ID: "gw-2b", PodID: "pod2", VTEP: "192.0.2.22", LastSeen: now},
		{ID: "gw-3a", PodID: "pod3", VTEP: "192.0.2.31", LastSeen: now, Status: st(7)},
	}
	got := reportedForwarders(9, gws, now)
	want := map[string][]string{"pod1": {"gw-1a (192.0.2.11)", "gw-1b (192.0.2.12)"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forwarders of 9 = %v, want %v", got, want)
	}
	got = reportedForwarders(7, gws, now)
	want = map[string][]string{"pod1": {"gw-1b (192.0.2.12)"}, "pod3": {"gw-3a (192.0.2.31)"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forwarders of 7 = %v, want %v", got, want)
	}
}

func TestJobs(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	rows := rowsOf(b.ok(t, "job", "list", "--pod", "pod2"), "ID")
	if len(rows) != 1 || rows[0][1] != "network_sync" || rows[0][2] != n.ID || rows[0][3] != "pod2" || rows[0][4] != "new" {
		t.Fatalf("job list = %v", rows)
	}
	id := rows[0][0]
	if out := b.ok(t, "job", "show", id); field(out, "state") != "new" || field(out, "pod_id") != "pod2" {
		t.Errorf("job show:\n%s", out)
	}
	if j := jsonOut[api.Job](t, b, "job", "retry", id); j.ID != id || j.State != "new" {
		t.Errorf("job retry = %+v", j)
	}
	if rows := rowsOf(b.ok(t, "job", "list", "--state", "success"), "ID"); len(rows) != 0 {
		t.Errorf("no job ran, yet: %v", rows)
	}
	if r := b.fails(t, 1, "job", "show", "nope"); !strings.Contains(r.err, "error:") {
		t.Errorf("stderr %q", r.err)
	}
}

func TestGateways(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	spanned(t, b)
	if _, err := b.client.RegisterGateway(context.Background(), api.Gateway{ID: "gw-a", PodID: "pod1", VTEP: "192.0.2.1", Backend: "linux", PopulateMACs: true}); err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(b.ok(t, "gateway", "list", "--pod", "pod1"), "ID")
	if len(rows) != 1 || strings.Join(rows[0][:8], " ") != "gw-a pod1 192.0.2.1 linux - - - yes" {
		t.Errorf("gateway list = %v", rows)
	}
	// An agent's report: health, designated-forwarder load, eBPF counters.
	if _, err := b.client.RegisterGateway(context.Background(), api.Gateway{ID: "gw-b", PodID: "pod1", VTEP: "192.0.2.2", Backend: "linux",
		Status: &api.GatewayStatus{Healthy: false, Forwarding: 3, Standby: 5, Weight: 250, ForwardedVNIs: []uint32{5001, 5003},
			Counters: map[string]uint64{"dropped_arp": 7, "rewritten": 42}}}); err != nil {
		t.Fatal(err)
	}
	rows = rowsOf(b.ok(t, "gateway", "list", "--pod", "pod1"), "ID")
	if len(rows) != 2 || strings.Join(rows[1][:7], " ") != "gw-b pod1 192.0.2.2 linux no 3 5" || rows[1][9] != "250" || rows[0][9] != "-" {
		t.Errorf("gateway list with status = %v", rows)
	}
	st := b.ok(t, "gateway", "show", "gw-b")
	if field(st, "healthy") != "no" || field(st, "weight") != "250" || field(st, "forwarded_vnis") != "5001,5003" || !strings.Contains(st, "dropped_arp") || !strings.Contains(st, "42") {
		t.Errorf("gateway show with status:\n%s", st)
	}
	if rows := rowsOf(b.ok(t, "gateway", "list", "--pod", "pod2"), "ID"); len(rows) != 0 {
		t.Errorf("gateway list pod2 = %v", rows)
	}
	out := b.ok(t, "gateway", "show", "gw-a")
	if field(out, "vtep") != "192.0.2.1" || !strings.Contains(field(out, "last_seen"), "ago)") {
		t.Errorf("gateway show:\n%s", out)
	}
	if g := jsonOut[api.Gateway](t, b, "gateway", "show", "gw-a"); g.VTEP != "192.0.2.1" {
		t.Errorf("gateway json %+v", g)
	}
	if r := b.fails(t, 1, "gateway", "show", "gw-z"); !strings.Contains(r.err, "gw-z") {
		t.Errorf("stderr %q", r.err)
	}
	if out := b.ok(t, "pod", "show", "pod1"); !strings.Contains(out, "Gateways:") || !strings.Contains(out, "gw-a") {
		t.Errorf("pod show:\n%s", out)
	}
}

func TestAgentStatus(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	agentSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dataplane" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.AgentDataplane{Pod: "pod1", GatewayID: "gw-a", Healthy: true, Revision: 9,
			Networks: []api.AgentNetwork{{VNI: 5000, LocalInterface: "seg5000", MACs: 3, Flood: 2, Neighbors: 3}},
			Standby:  []uint32{5001}, Drift: &api.AgentDrift{AddMACs: 1}, InsecureGossip: true,
			IgnoredMembers: []api.AgentIgnoredMember{{Name: "evil", Addr: "192.0.2.9:7946", Pod: "pod2", GatewayID: "gw-b", VTEP: "192.0.2.9", Reason: "name_mismatch"}}})
	}))
	defer agentSrv.Close()
	out := b.ok(t, "agent", "status", "--agent", agentSrv.URL)
	for _, want := range []string{"gw-a (pod pod1)", "vni 5000 on seg5000: 3 macs, 2 flood, 3 neighbors", "[5001]", "to add 0 networks, 1 macs",
		"NOT encrypted", "evil at 192.0.2.9:7946 claims gw-b of pod pod2 with vtep 192.0.2.9: name_mismatch"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent status lacks %q:\n%s", want, out)
		}
	}
	if r := b.fails(t, 1, "agent", "status", "--agent", "http://127.0.0.1:1"); !strings.Contains(r.err, "cannot reach the agent") {
		t.Errorf("unreachable agent: %q", r.err)
	}
}
