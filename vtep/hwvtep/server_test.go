package hwvtep

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/test/ovsdbtest"
	"github.com/l2span/l2span/vtep"
)

// These tests run a private ovsdb-server with vtep.ovsschema and read what
// the backend wrote back with ovsdb-client, independent of our client.

var (
	vtepA = netip.MustParseAddr("192.0.2.1")
	vtepB = netip.MustParseAddr("192.0.2.2")
	vtepC = netip.MustParseAddr("192.0.2.3")
	self  = netip.MustParseAddr("192.0.2.10")
)

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startBackend(t testing.TB, srv *ovsdbtest.Server, batch int) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Options{Endpoint: srv.Endpoint(), PhysicalSwitch: "sw0", TunnelIP: self, Logger: testLogger(t), BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func set(t testing.TB, b *Backend, cfg vtep.Config) vtep.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := b.Set(ctx, cfg)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	return res
}

// dbRow is one row as ovsdb-client prints it in JSON, values decoded to
// plain strings: uuids as their text, sets as sorted space-joined lists,
// maps as "k=v" lists.
type dbRow map[string]string

func dump(t testing.TB, srv *ovsdbtest.Server, table string) []dbRow {
	t.Helper()
	out, err := execOut("ovsdb-client", "-f", "json", "dump", srv.Endpoint(), "hardware_vtep", table)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Data     [][]any  `json:"data"`
		Headings []string `json:"headings"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("dump %s: %v: %s", table, err, out)
	}
	var rows []dbRow
	for _, r := range d.Data {
		row := dbRow{}
		for i, h := range d.Headings {
			row[h] = flat(r[i])
		}
		rows = append(rows, row)
	}
	return rows
}

func execOut(name string, args ...string) ([]byte, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

func flat(v any) string {
	switch x := v.(type) {
	case []any:
		if len(x) == 2 {
			switch x[0] {
			case "uuid":
				return x[1].(string)
			case "set":
				var parts []string
				for _, e := range x[1].([]any) {
					parts = append(parts, flat(e))
				}
				slices.Sort(parts)
				return strings.Join(parts, " ")
			case "map":
				var parts []string
				for _, e := range x[1].([]any) {
					kv := e.([]any)
					parts = append(parts, flat(kv[0])+"="+flat(kv[1]))
				}
				slices.Sort(parts)
				return strings.Join(parts, " ")
			}
		}
	case float64:
		return fmt.Sprint(int64(x))
	}
	return fmt.Sprint(v)
}

// view is the database in words: "VNI MAC -> dst_ip ip" lines etc.
func view(t testing.TB, srv *ovsdbtest.Server) []string {
	t.Helper()
	locs := map[string]string{}
	for _, r := range dump(t, srv, "Physical_Locator") {
		locs[r["_uuid"]] = r["dst_ip"]
	}
	sets := map[string]string{}
	for _, r := range dump(t, srv, "Physical_Locator_Set") {
		var ips []string
		for _, l := range strings.Fields(r["locators"]) {
			ips = append(ips, locs[l])
		}
		slices.Sort(ips)
		sets[r["_uuid"]] = strings.Join(ips, ",")
	}
	ls := map[string]string{}
	var out []string
	for _, r := range dump(t, srv, "Logical_Switch") {
		ls[r["_uuid"]] = r["name"]
		out = append(out, fmt.Sprintf("ls %s key=%s oc=%s", r["name"], r["tunnel_key"], r["other_config"]))
	}
	for _, r := range dump(t, srv, "Physical_Port") {
		var b []string
		for _, kv := range strings.Fields(r["vlan_bindings"]) {
			k, v, _ := strings.Cut(kv, "=")
			b = append(b, k+"="+ls[v])
		}
		out = append(out, fmt.Sprintf("port %s %s", r["name"], strings.Join(b, " ")))
	}
	for _, r := range dump(t, srv, "Ucast_Macs_Remote") {
		out = append(out, fmt.Sprintf("ucast %s %s -> %s ip=%s", ls[r["logical_switch"]], r["MAC"], locs[r["locator"]], r["ipaddr"]))
	}
	for _, r := range dump(t, srv, "Mcast_Macs_Remote") {
		out = append(out, fmt.Sprintf("mcast %s %s -> %s", ls[r["logical_switch"]], r["MAC"], sets[r["locator_set"]]))
	}
	for _, r := range dump(t, srv, "Ucast_Macs_Local") {
		out = append(out, fmt.Sprintf("local %s %s -> %s", ls[r["logical_switch"]], r["MAC"], locs[r["locator"]]))
	}
	var ips []string
	for _, ip := range locs {
		ips = append(ips, ip)
	}
	slices.Sort(ips)
	out = append(out, "locators "+strings.Join(ips, ","))
	slices.Sort(out)
	return out
}

func checkView(t testing.TB, srv *ovsdbtest.Server, want ...string) {
	t.Helper()
	slices.Sort(want)
	got := view(t, srv)
	if !slices.Equal(got, want) {
		t.Fatalf("database:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// transact runs a raw transaction with ovsdb-client (to act behind the
// backend's back, as an operator or the switch would).
func transact(t testing.TB, srv *ovsdbtest.Server, ops ...string) string {
	t.Helper()
	out, err := execOut("ovsdb-client", "transact", srv.Endpoint(), `["hardware_vtep",`+strings.Join(ops, ",")+`]`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `"error"`) {
		t.Fatalf("transact: %s", out)
	}
	return string(out)
}

func uuidOf(t testing.TB, srv *ovsdbtest.Server, table, col, val string) string {
	t.Helper()
	for _, r := range dump(t, srv, table) {
		if r[col] == val {
			return r["_uuid"]
		}
	}
	t.Fatalf("no %s with %s=%s", table, col, val)
	return ""
}

func baseConfig() vtep.Config {
	return vtep.Config{Networks: []vtep.Network{{
		VNI:            100,
		LocalInterface: "p0:10",
		Flood:          []netip.Addr{vtepB, vtepA},
		MACs: []vtep.MACEntry{
			{MAC: mac(1), VTEP: vtepA},
			{MAC: mac(2), VTEP: vtepA},
			{MAC: mac(3), VTEP: vtepC},
		},
		Neighbors: []vtep.Neighbor{
			{IP: netip.MustParseAddr("10.0.0.1"), MAC: mac(1)},
			{IP: netip.MustParseAddr("10.0.0.9"), MAC: mac(1)},
			{IP: netip.MustParseAddr("2001:db8::1"), MAC: mac(2)},
		},
	}, {
		VNI:   200,
		Flood: []netip.Addr{vtepC},
	}}}
}

var baseView = []string{
	"ls l2s-100 key=100 oc=l2span-vni=100",
	"ls l2s-200 key=200 oc=l2span-vni=200",
	"port p0 10=l2s-100",
	"ucast l2s-100 02:00:00:00:00:01 -> 192.0.2.1 ip=10.0.0.1",
	"ucast l2s-100 02:00:00:00:00:02 -> 192.0.2.1 ip=",
	"ucast l2s-100 02:00:00:00:00:03 -> 192.0.2.3 ip=",
	"mcast l2s-100 unknown-dst -> 192.0.2.1,192.0.2.2",
	"mcast l2s-200 unknown-dst -> 192.0.2.3",
	"locators 192.0.2.1,192.0.2.2,192.0.2.3",
}

func TestSetFreshDatabaseAndIdempotent(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	if g := dump(t, srv, "Global"); len(g) != 0 {
		t.Fatalf("fresh database has %d Global rows", len(g))
	}
	b := startBackend(t, srv, 0)
	want := vtep.Result{Added: vtep.Counts{Networks: 2, MACs: 3, Flood: 3, Neighbors: 1}}
	// Check predicts the Set and writes nothing.
	if got, err := b.Check(context.Background(), baseConfig()); err != nil || got != want || b.Transactions() != 0 {
		t.Fatalf("check on a fresh database: %+v %v, %d transactions", got, err, b.Transactions())
	}
	if ls := dump(t, srv, "Logical_Switch"); len(ls) != 0 {
		t.Fatalf("Check wrote switches: %v", ls)
	}
	res := set(t, b, baseConfig())
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	checkView(t, srv, baseView...)
	sw := dump(t, srv, "Physical_Switch")
	if len(sw) != 1 || sw[0]["name"] != "sw0" || sw[0]["tunnel_ips"] != self.String() {
		t.Errorf("physical switch %v", sw)
	}
	if g := dump(t, srv, "Global"); len(g) != 1 || g[0]["switches"] != sw[0]["_uuid"] {
		t.Errorf("global %v", g)
	}

	n := b.Transactions()
	if res := set(t, b, baseConfig()); res != (vtep.Result{}) {
		t.Errorf("second Set result %+v, want nothing", res)
	}
	if d := b.Transactions() - n; d != 0 {
		t.Errorf("second Set sent %d transactions, want 0", d)
	}
	checkView(t, srv, baseView...)
}

func TestSetRepairsDriftAndLeavesOthersAlone(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 0)
	set(t, b, baseConfig())
	ls100 := uuidOf(t, srv, "Logical_Switch", "name", "l2s-100")
	locB := uuidOf(t, srv, "Physical_Locator", "dst_ip", vtepB.String())
	m1 := uuidOf(t, srv, "Ucast_Macs_Remote", "MAC", mac(1).String())
	m2 := uuidOf(t, srv, "Ucast_Macs_Remote", "MAC", mac(2).String())
	// Behind the backend's back: delete a MAC, move another, add a stray
	// one to an owned switch, and add a foreign switch with a MAC and a
	// binding on the same port.
	transact(t, srv,
		`{"op":"delete","table":"Ucast_Macs_Remote","where":[["_uuid","==",["uuid","`+m1+`"]]]}`,
		`{"op":"update","table":"Ucast_Macs_Remote","where":[["_uuid","==",["uuid","`+m2+`"]]],"row":{"locator":["uuid","`+locB+`"],"ipaddr":"10.9.9.9"}}`,
		`{"op":"insert","table":"Ucast_Macs_Remote","row":{"MAC":"02:00:00:00:00:99","logical_switch":["uuid","`+ls100+`"],"locator":["uuid","`+locB+`"]}}`,
		`{"op":"insert","table":"Logical_Switch","uuid-name":"other","row":{"name":"other","tunnel_key":7}}`,
		`{"op":"insert","table":"Ucast_Macs_Remote","row":{"MAC":"02:00:00:00:00:77","logical_switch":["named-uuid","other"],"locator":["uuid","`+locB+`"]}}`,
		`{"op":"mutate","table":"Physical_Port","where":[["name","==","p0"]],"mutations":[["vlan_bindings","insert",["map",[[20,["named-uuid","other"]]]]]]}`,
	)
	n := b.Transactions()
	drift := vtep.Result{Added: vtep.Counts{MACs: 2, Neighbors: 1}, Removed: vtep.Counts{MACs: 2, Neighbors: 1}}
	if got, err := b.Check(context.Background(), baseConfig()); err != nil || got != drift || b.Transactions() != n {
		t.Fatalf("check after drift: %+v %v, %d transactions", got, err, b.Transactions()-n)
	}
	res := set(t, b, baseConfig())
	if want := drift; res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if d := b.Transactions() - n; d != 1 {
		t.Errorf("repair took %d transactions, want 1", d)
	}
	want := slices.Clone(baseView)
	want[slices.Index(want, "port p0 10=l2s-100")] = "port p0 10=l2s-100 20=other"
	want = append(want, "ls other key=7 oc=", "ucast other 02:00:00:00:00:77 -> 192.0.2.2 ip=")
	checkView(t, srv, want...)
}

func TestRemovalAndLocatorGC(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 0)
	set(t, b, baseConfig())
	// The switch learned a MAC in l2s-200: that row refers to the switch
	// and would block its delete.
	ls200 := uuidOf(t, srv, "Logical_Switch", "name", "l2s-200")
	transact(t, srv,
		`{"op":"insert","table":"Physical_Locator","uuid-name":"me","row":{"encapsulation_type":"vxlan_over_ipv4","dst_ip":"`+self.String()+`"}}`,
		`{"op":"insert","table":"Ucast_Macs_Local","row":{"MAC":"02:aa:00:00:00:01","logical_switch":["uuid","`+ls200+`"],"locator":["named-uuid","me"]}}`,
	)
	waitFor(t, func() bool { return len(b.LocalMACs()) == 1 })

	cfg := baseConfig()
	cfg.Networks = cfg.Networks[:1]
	cfg.Networks[0].MACs = cfg.Networks[0].MACs[:2] // the only MAC on C goes
	cfg.Networks[0].Flood = []netip.Addr{vtepA}     // and B leaves the flood list
	res := set(t, b, cfg)
	if want := (vtep.Result{Removed: vtep.Counts{Networks: 1, MACs: 1, Flood: 2}}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	checkView(t, srv,
		"ls l2s-100 key=100 oc=l2span-vni=100",
		"port p0 10=l2s-100",
		"ucast l2s-100 02:00:00:00:00:01 -> 192.0.2.1 ip=10.0.0.1",
		"ucast l2s-100 02:00:00:00:00:02 -> 192.0.2.1 ip=",
		"mcast l2s-100 unknown-dst -> 192.0.2.1",
		"locators 192.0.2.1", // B, C and our own locator were collected
	)
	if sets := dump(t, srv, "Physical_Locator_Set"); len(sets) != 1 {
		t.Errorf("%d locator sets, want 1 (old ones collected)", len(sets))
	}
	if n := b.Transactions(); set(t, b, cfg) != (vtep.Result{}) || b.Transactions() != n {
		t.Error("Set after removal not idempotent")
	}

	// Everything goes; the port and switch stay (they are the switch's).
	set(t, b, vtep.Config{})
	checkView(t, srv, "port p0 ", "locators ")
	if len(dump(t, srv, "Physical_Switch")) != 1 {
		t.Error("physical switch deleted")
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLocalMACs(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 0)
	set(t, b, baseConfig())
	for len(b.LocalMACsChanged()) > 0 {
		<-b.LocalMACsChanged()
	}
	ls100 := uuidOf(t, srv, "Logical_Switch", "name", "l2s-100")
	transact(t, srv,
		`{"op":"insert","table":"Logical_Switch","uuid-name":"other","row":{"name":"other"}}`,
		`{"op":"insert","table":"Physical_Locator","uuid-name":"me","row":{"encapsulation_type":"vxlan_over_ipv4","dst_ip":"`+self.String()+`"}}`,
		`{"op":"insert","table":"Ucast_Macs_Local","row":{"MAC":"02:aa:00:00:00:01","ipaddr":"10.0.0.50","logical_switch":["uuid","`+ls100+`"],"locator":["named-uuid","me"]}}`,
		`{"op":"insert","table":"Ucast_Macs_Local","row":{"MAC":"02:aa:00:00:00:02","logical_switch":["named-uuid","other"],"locator":["named-uuid","me"]}}`,
	)
	select {
	case <-b.LocalMACsChanged():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled")
	}
	got := b.LocalMACs()
	want := []vtep.LocalMAC{{VNI: 100, MAC: net.HardwareAddr{2, 0xaa, 0, 0, 0, 1}, IP: netip.MustParseAddr("10.0.0.50"), Locator: self}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("LocalMACs %v, want %v", got, want)
	}
}

func TestBatching(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 1000)
	cfg := vtep.Config{Networks: []vtep.Network{{VNI: 5, Flood: []netip.Addr{vtepA}}}}
	vteps := []netip.Addr{vtepA, vtepB, vtepC}
	for i := range 2500 {
		cfg.Networks[0].MACs = append(cfg.Networks[0].MACs, vtep.MACEntry{MAC: mac(i), VTEP: vteps[i%3]})
	}
	res := set(t, b, cfg)
	if res.Added.MACs != 2500 {
		t.Errorf("added %d MACs", res.Added.MACs)
	}
	// structure + 3 batches
	if n := b.Transactions(); n != 4 {
		t.Errorf("%d transactions, want 4", n)
	}
	if rows := dump(t, srv, "Ucast_Macs_Remote"); len(rows) != 2500 {
		t.Errorf("%d rows", len(rows))
	}
	if locs := dump(t, srv, "Physical_Locator"); len(locs) != 3 {
		t.Errorf("%d locators, want 3", len(locs))
	}
	// Move every MAC to the next VTEP: locators are referenced across
	// batches while others lose references; none may go missing.
	for i := range cfg.Networks[0].MACs {
		cfg.Networks[0].MACs[i].VTEP = vteps[(i+1)%3]
	}
	res = set(t, b, cfg)
	if res.Added.MACs != 2500 || res.Removed.MACs != 2500 {
		t.Errorf("move: %+v", res)
	}
	rows := dump(t, srv, "Ucast_Macs_Remote")
	locs := map[string]string{}
	for _, l := range dump(t, srv, "Physical_Locator") {
		locs[l["_uuid"]] = l["dst_ip"]
	}
	for _, r := range rows {
		hw, _ := net.ParseMAC(r["MAC"])
		i := int(hw[2])<<24 | int(hw[3])<<16 | int(hw[4])<<8 | int(hw[5])
		if locs[r["locator"]] != vteps[(i+1)%3].String() {
			t.Fatalf("%s -> %s", r["MAC"], locs[r["locator"]])
		}
	}
	// Shrink to nothing in one network: deletes are batched too.
	n := b.Transactions()
	cfg.Networks[0].MACs = nil
	set(t, b, cfg)
	if d := b.Transactions() - n; d != 3 {
		t.Errorf("delete took %d transactions, want 3", d)
	}
	checkView(t, srv, "ls l2s-5 key=5 oc=l2span-vni=5", "mcast l2s-5 unknown-dst -> 192.0.2.1", "locators 192.0.2.1")
}

// TestPipelinedBatches drives a change that mixes pure inserts (sent
// several at a time), a new locator, moves and deletes (each sent alone)
// through small batches, and checks the database row by row, the counts,
// and that nothing is left to do — with the window and without it.
func TestPipelinedBatches(t *testing.T) {
	vtepD := netip.MustParseAddr("192.0.2.4")
	vteps := []netip.Addr{vtepA, vtepB, vtepC}
	first := vtep.Config{Networks: []vtep.Network{{VNI: 7, Flood: []netip.Addr{vtepA}}}}
	for i := range 300 {
		first.Networks[0].MACs = append(first.Networks[0].MACs, vtep.MACEntry{MAC: mac(i), VTEP: vteps[i%3]})
	}
	// Then: MACs 0-49 deleted, 50-99 moved to the next VTEP, 300-599 new
	// (every tenth of them behind a fourth VTEP, which needs a locator).
	second := vtep.Config{Networks: []vtep.Network{{VNI: 7, Flood: []netip.Addr{vtepA}}}}
	var want []string
	for i := 50; i < 600; i++ {
		to := vteps[i%3]
		switch {
		case i < 100:
			to = vteps[(i+1)%3]
		case i >= 300 && i%10 == 0:
			to = vtepD
		}
		second.Networks[0].MACs = append(second.Networks[0].MACs, vtep.MACEntry{MAC: mac(i), VTEP: to})
		want = append(want, fmt.Sprintf("ucast l2s-7 %s -> %s ip=", mac(i), to))
	}
	want = append(want, "ls l2s-7 key=7 oc=l2span-vni=7", "mcast l2s-7 unknown-dst -> 192.0.2.1",
		"locators 192.0.2.1,192.0.2.2,192.0.2.3,192.0.2.4")

	for _, depth := range []int{1, 3} {
		t.Run(fmt.Sprintf("depth%d", depth), func(t *testing.T) {
			srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := New(ctx, Options{Endpoint: srv.Endpoint(), PhysicalSwitch: "sw0", Logger: testLogger(t), BatchSize: 10, PipelineDepth: depth})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if res := set(t, b, first); res.Added.MACs != 300 {
				t.Fatalf("first: %+v", res)
			}
			res := set(t, b, second)
			if res.Added.MACs != 350 || res.Removed.MACs != 100 {
				t.Errorf("second: added %d removed %d MACs, want 350 and 100", res.Added.MACs, res.Removed.MACs)
			}
			checkView(t, srv, want...)
			n := b.Transactions()
			if res := set(t, b, second); res != (vtep.Result{}) || b.Transactions() != n {
				t.Errorf("not converged: %+v, %d more transactions", res, b.Transactions()-n)
			}
		})
	}
}

func TestServerRestart(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 2)
	set(t, b, baseConfig())
	gen := b.cli.Generation()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.cli.Generation() > gen })
	// Nothing to do after a restart that kept the data.
	n := b.Transactions()
	if res := set(t, b, baseConfig()); res != (vtep.Result{}) || b.Transactions() != n {
		t.Errorf("after restart: %+v, %d transactions", res, b.Transactions()-n)
	}
	checkView(t, srv, baseView...)

	// Stop the server; once the backend has noticed, change the config:
	// Set waits for the server, plans again from what it holds, and
	// converges in one call.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !b.cli.Connected() })
	done := make(chan error, 1)
	waiting := make(chan struct{})
	b.waitingForSwitch = func() { close(waiting) }
	cfg := baseConfig()
	cfg.Networks[0].MACs = append(cfg.Networks[0].MACs, vtep.MACEntry{MAC: mac(4), VTEP: vtepB})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := b.Set(ctx, cfg)
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("Set returned while the server was down, without waiting for it: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Set returned while the server was down: %v", err)
	default:
	}
	b.waitingForSwitch = nil // later Sets must not close waiting again; the one waiting has read it
	if err := srv.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Set across the restart: %v", err)
	}
	want := append(slices.Clone(baseView), "ucast l2s-100 02:00:00:00:00:04 -> 192.0.2.2 ip=")
	checkView(t, srv, want...)
	n = b.Transactions()
	if res := set(t, b, cfg); res != (vtep.Result{}) || b.Transactions() != n {
		t.Errorf("not converged: %+v", res)
	}

	// With the server away, a Set with nothing to change (an agent's
	// resync) succeeds at once from the last state seen.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !b.cli.Connected() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if res, err := b.Set(ctx, cfg); err != nil || res != (vtep.Result{}) {
		t.Errorf("no-op Set with the server away: %+v %v", res, err)
	}
}

// TestReconnectsLeakNothing restarts the server under the backend five
// times: every reconnect replaces a libovsdb client, and the old one's
// goroutines must end with it; Close ends the rest.
func TestReconnectsLeakNothing(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	before := runtime.NumGoroutine()
	b := startBackend(t, srv, 0)
	set(t, b, baseConfig())
	connected := runtime.NumGoroutine()
	for range 5 {
		gen := b.cli.Generation()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return b.cli.Generation() > gen })
	}
	set(t, b, baseConfig())
	settles := func(limit int) bool {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > limit {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return true
	}
	if !settles(connected) {
		t.Errorf("%d goroutines after 5 reconnects, %d before them", runtime.NumGoroutine(), connected)
	}
	b.Close()
	if !settles(before) {
		t.Errorf("%d goroutines after Close, %d before the backend", runtime.NumGoroutine(), before)
	}
}

// A row deleted behind the backend's back is signalled on
// DataplaneChanged (the agent reconciles on it); a change to a table the
// backend does not write is not.
func TestDataplaneChangedOnDrift(t *testing.T) {
	srv := ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	b := startBackend(t, srv, 0)
	set(t, b, baseConfig())
	drain := func() {
		for {
			select {
			case <-b.DataplaneChanged():
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
	drain() // our own writes
	m1 := uuidOf(t, srv, "Ucast_Macs_Remote", "MAC", mac(1).String())
	transact(t, srv, `{"op":"delete","table":"Ucast_Macs_Remote","where":[["_uuid","==",["uuid","`+m1+`"]]]}`)
	select {
	case <-b.DataplaneChanged():
	case <-time.After(5 * time.Second):
		t.Fatal("a Ucast_Macs_Remote row deleted behind the backend's back was not signalled")
	}
	drain()
	ls := uuidOf(t, srv, "Logical_Switch", "name", "l2s-100")
	loc := uuidOf(t, srv, "Physical_Locator", "dst_ip", vtepB.String())
	transact(t, srv, `{"op":"insert","table":"Ucast_Macs_Local","row":{"MAC":"02:00:00:00:00:42","logical_switch":["uuid","`+ls+`"],"locator":["uuid","`+loc+`"]}}`)
	select {
	case <-b.DataplaneChanged():
		t.Fatal("a change to Ucast_Macs_Local (learned by the switch) signalled as drift of what the backend writes")
	case <-time.After(500 * time.Millisecond):
	}
}
