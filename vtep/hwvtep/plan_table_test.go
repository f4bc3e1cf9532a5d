package hwvtep

import (
	"context"
	"encoding/json"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Table tests of each per-table planner against an ovsdb.State literal.

var testOpts = Options{PhysicalSwitch: "sw0", TunnelIP: self}

func ownedLS(uuid string, vni int) *ovsdb.LogicalSwitch {
	return &ovsdb.LogicalSwitch{UUID: uuid, Name: lsName(uint32(vni)), TunnelKey: &vni, Description: "l2span network",
		OtherConfig: map[string]string{OwnerKey: strconv.Itoa(vni)}}
}

func vxlanLoc(uuid, ip string) *ovsdb.PhysicalLocator {
	return &ovsdb.PhysicalLocator{UUID: uuid, DstIP: ip, EncapsulationType: vxlan}
}

// fixture is a database a Set made earlier, with the switch's own rows
// and an operator's foreign switch:
//
//	ls-100  l2s-100 (owned), bound to p0:10; MACs 1 (-> A, ip 10.0.0.1)
//	        and 2 (-> C); flood A,B
//	ls-300  l2s-300 (owned), bound to p0:30; MAC 3 (-> B); flood B; a
//	        locally learned MAC behind loc-self
//	ls-7    "other" (foreign), bound to p0:20; a foreign MAC (-> B)
func fixture() *ovsdb.State {
	seven := 7
	return &ovsdb.State{
		Global:         map[string]*ovsdb.Global{"g": {UUID: "g", Switches: []string{"ps"}}},
		PhysicalSwitch: map[string]*ovsdb.PhysicalSwitch{"ps": {UUID: "ps", Name: "sw0", Ports: []string{"pp0"}}},
		PhysicalPort: map[string]*ovsdb.PhysicalPort{"pp0": {UUID: "pp0", Name: "p0",
			VLANBindings: map[int]string{10: "ls-100", 20: "ls-7", 30: "ls-300"}}},
		LogicalSwitch: map[string]*ovsdb.LogicalSwitch{
			"ls-100": ownedLS("ls-100", 100),
			"ls-300": ownedLS("ls-300", 300),
			"ls-7":   {UUID: "ls-7", Name: "other", TunnelKey: &seven},
		},
		PhysicalLocator: map[string]*ovsdb.PhysicalLocator{
			"loc-a":    vxlanLoc("loc-a", "192.0.2.1"),
			"loc-b":    vxlanLoc("loc-b", "192.0.2.2"),
			"loc-c":    vxlanLoc("loc-c", "192.0.2.3"),
			"loc-self": vxlanLoc("loc-self", "192.0.2.10"),
		},
		PhysicalLocatorSet: map[string]*ovsdb.PhysicalLocatorSet{
			"set-ab": {UUID: "set-ab", Locators: []string{"loc-b", "loc-a"}},
			"set-b":  {UUID: "set-b", Locators: []string{"loc-b"}},
		},
		UcastMacsRemote: map[string]*ovsdb.UcastMacsRemote{
			"u1": {UUID: "u1", MAC: "02:00:00:00:00:01", LogicalSwitch: "ls-100", Locator: "loc-a", Ipaddr: "10.0.0.1"},
			"u2": {UUID: "u2", MAC: "02:00:00:00:00:02", LogicalSwitch: "ls-100", Locator: "loc-c"},
			"u3": {UUID: "u3", MAC: "02:00:00:00:00:03", LogicalSwitch: "ls-300", Locator: "loc-b", Ipaddr: "10.0.0.3"},
			"u7": {UUID: "u7", MAC: "02:00:00:00:00:77", LogicalSwitch: "ls-7", Locator: "loc-b"},
		},
		McastMacsRemote: map[string]*ovsdb.McastMacsRemote{
			"m100": {UUID: "m100", MAC: unknownDst, LogicalSwitch: "ls-100", LocatorSet: "set-ab"},
			"m300": {UUID: "m300", MAC: unknownDst, LogicalSwitch: "ls-300", LocatorSet: "set-b"},
		},
		UcastMacsLocal: map[string]*ovsdb.UcastMacsLocal{
			"l1": {UUID: "l1", MAC: "02:aa:00:00:00:01", LogicalSwitch: "ls-300", Locator: "loc-self"},
		},
	}
}

// fixtureNet100 is what the fixture holds for VNI 100.
func fixtureNet100() vtep.Network {
	return vtep.Network{
		VNI: 100, LocalInterface: "p0:10",
		Flood: []netip.Addr{vtepA, vtepB},
		MACs:  []vtep.MACEntry{{MAC: mac(1), VTEP: vtepA}, {MAC: mac(2), VTEP: vtepC}},
		Neighbors: []vtep.Neighbor{
			{IP: netip.MustParseAddr("10.0.0.1"), MAC: mac(1)},
		},
	}
}

// plannerAfter runs the steps of makePlan that come before the one under
// test.
func plannerAfter(st *ovsdb.State, cfg vtep.Config, steps ...func(*planner)) *planner {
	pl := newPlanner(st, testOpts, cfg.Normalize())
	for _, step := range steps {
		step(pl)
	}
	return pl
}

var (
	stepLocators = (*planner).indexLocators
	stepOwned    = (*planner).selectOwnedSwitches
	stepPS       = (*planner).findPhysicalSwitch
	stepLS       = (*planner).planLogicalSwitches
	stepBindings = (*planner).planVLANBindings
	stepFlood    = (*planner).planFloodLists
	stepPin      = (*planner).pinKeptLocators
	stepsToLS    = []func(*planner){stepLocators, stepOwned, stepPS}
	stepsToFlood = []func(*planner){stepLocators, stepOwned, stepPS, stepLS, stepBindings}
	stepsToUcast = []func(*planner){stepLocators, stepOwned, stepPS, stepLS, stepBindings, stepFlood, stepPin}
	refInJSON    = regexp.MustCompile(`\["(?:named-)?uuid","([^"]*)"\]`)
)

// describeField is a value of an operation as JSON, references as plain
// names.
func describeField(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return refInJSON.ReplaceAllString(string(b), "$1")
}

// describe is one operation in words: op, table, named UUID, the row it
// targets, and its mutations, references as plain names.
func describe(op lo.Operation) string {
	s := op.Op + " " + op.Table
	if op.UUIDName != "" {
		s += " " + op.UUIDName
	}
	for _, c := range op.Where {
		s += " " + describeField(c.Value)
	}
	for _, m := range op.Mutations {
		s += " " + m.Column + " " + string(m.Mutator) + " " + describeField(m.Value)
	}
	return s
}

func describeAll(ops []lo.Operation) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, describe(op))
	}
	return out
}

func errText(errs []error) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

func checkOps(t *testing.T, got []lo.Operation, want ...string) {
	t.Helper()
	if g := describeAll(got); !slices.Equal(g, want) {
		t.Errorf("ops:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
}

func checkErrs(t *testing.T, errs []error, want string) {
	t.Helper()
	got := errText(errs)
	if (want == "") != (got == "") || !strings.Contains(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

func TestIndexLocators(t *testing.T) {
	st := fixture()
	st.McastMacsLocal = map[string]*ovsdb.McastMacsLocal{"ml": {UUID: "ml", MAC: unknownDst, LogicalSwitch: "ls-100", LocatorSet: "set-b"}}
	st.PhysicalLocator["loc-a2"] = vxlanLoc("loc-a2", "192.0.2.1") // a duplicate key: the first UUID wins
	st.PhysicalLocator["loc-k"] = &ovsdb.PhysicalLocator{UUID: "loc-k", DstIP: "192.0.2.9", EncapsulationType: vxlan, TunnelKey: new(int)}
	pl := plannerAfter(st, vtep.Config{}, stepLocators)
	want := map[string]*locState{
		"192.0.2.1":  {uuid: "loc-a", refs: 1},
		"192.0.2.2":  {uuid: "loc-b", refs: 2},
		"192.0.2.3":  {uuid: "loc-c", refs: 1},
		"192.0.2.10": {uuid: "loc-self", pinned: true},
	}
	if !reflect.DeepEqual(pl.p.locs, want) {
		for k, l := range pl.p.locs {
			t.Logf("%s: %+v", k, *l)
		}
		t.Error("locators differ")
	}
	if !pl.keptSets["set-b"] || len(pl.keptSets) != 1 {
		t.Errorf("kept sets %v, want set-b (Mcast_Macs_Local)", pl.keptSets)
	}
}

func TestSelectOwnedSwitches(t *testing.T) {
	dup := func(uuid, name string, vni int) *ovsdb.LogicalSwitch {
		ls := ownedLS(uuid, vni)
		ls.Name = name
		return ls
	}
	for _, tc := range []struct {
		name     string
		switches []*ovsdb.LogicalSwitch
		vnis     []uint32
		owned    map[uint32]string
		unwanted []string
	}{
		{"fixture", slices.Collect(maps.Values(fixture().LogicalSwitch)), []uint32{100}, map[uint32]string{100: "ls-100"}, []string{"ls-300"}},
		{"nothing wanted", slices.Collect(maps.Values(fixture().LogicalSwitch)), nil, map[uint32]string{}, []string{"ls-100", "ls-300"}},
		{"canonical name wins", []*ovsdb.LogicalSwitch{dup("a", "old", 5), dup("b", "l2s-5", 5)}, []uint32{5}, map[uint32]string{5: "b"}, []string{"a"}},
		{"lowest uuid wins", []*ovsdb.LogicalSwitch{dup("b", "l2s-5", 5), dup("a", "l2s-5", 5)}, []uint32{5}, map[uint32]string{5: "a"}, []string{"b"}},
		{"bad owner values ignored", []*ovsdb.LogicalSwitch{
			{UUID: "x", Name: "x", OtherConfig: map[string]string{OwnerKey: "x"}},
			{UUID: "y", Name: "y", OtherConfig: map[string]string{OwnerKey: "16777216"}},
		}, []uint32{5}, map[uint32]string{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &ovsdb.State{LogicalSwitch: map[string]*ovsdb.LogicalSwitch{}}
			for _, ls := range tc.switches {
				st.LogicalSwitch[ls.UUID] = ls
			}
			var cfg vtep.Config
			for _, v := range tc.vnis {
				cfg.Networks = append(cfg.Networks, vtep.Network{VNI: v})
			}
			pl := plannerAfter(st, cfg, stepOwned)
			owned := map[uint32]string{}
			for v, ls := range pl.owned {
				owned[v] = ls.UUID
			}
			var unwanted []string
			for _, ls := range pl.unwanted {
				unwanted = append(unwanted, ls.UUID)
			}
			if !reflect.DeepEqual(owned, tc.owned) || !slices.Equal(unwanted, tc.unwanted) {
				t.Errorf("owned %v unwanted %v, want %v %v", owned, unwanted, tc.owned, tc.unwanted)
			}
		})
	}
}

func TestPlanLogicalSwitch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*ovsdb.State)
		vnis   []uint32
		ops    []string
		ref    string
		added  int
		errMsg string
	}{
		{name: "in shape", vnis: []uint32{100}, ref: "ls-100"},
		{name: "new", vnis: []uint32{200}, ops: []string{"insert Logical_Switch ls200"}, ref: "ls200", added: 1},
		{name: "repaired", edit: func(st *ovsdb.State) {
			ls := *st.LogicalSwitch["ls-100"]
			ls.TunnelKey, ls.OtherConfig = nil, map[string]string{OwnerKey: "100", "keep": "me"}
			st.LogicalSwitch["ls-100"] = &ls
		}, vnis: []uint32{100}, ops: []string{"update Logical_Switch ls-100"}, ref: "ls-100"},
		{name: "name taken while repairing", edit: func(st *ovsdb.State) {
			ls := *st.LogicalSwitch["ls-100"]
			ls.Name = "renamed"
			st.LogicalSwitch["ls-100"] = &ls
			st.LogicalSwitch["ls-x"] = &ovsdb.LogicalSwitch{UUID: "ls-x", Name: "l2s-100"}
		}, vnis: []uint32{100}, ref: "ls-100", errMsg: "vni 100: logical switch name l2s-100 is taken by another switch"},
		{name: "foreign switch has the name", edit: func(st *ovsdb.State) {
			st.LogicalSwitch["ls-x"] = &ovsdb.LogicalSwitch{UUID: "ls-x", Name: "l2s-200"}
		}, vnis: []uint32{200}, errMsg: "vni 200: logical switch l2s-200 exists and is not owned by l2span"},
		{name: "too large", vnis: []uint32{1 << 24}, errMsg: "vni 16777216: larger than 24 bits"},
		{name: "twice", vnis: []uint32{100, 100}, ref: "ls-100", errMsg: "vni 100: listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fixture()
			if tc.edit != nil {
				tc.edit(st)
			}
			var cfg vtep.Config
			for _, v := range tc.vnis {
				cfg.Networks = append(cfg.Networks, vtep.Network{VNI: v})
			}
			pl := plannerAfter(st, cfg, stepsToLS...)
			for _, v := range tc.vnis {
				pl.planLogicalSwitch(v)
			}
			checkOps(t, pl.p.structOps, tc.ops...)
			checkErrs(t, pl.p.errs, tc.errMsg)
			if ref := pl.lsRef[tc.vnis[0]]; ref != tc.ref {
				t.Errorf("ref %q, want %q", ref, tc.ref)
			}
			if pl.p.structResult.Added.Networks != tc.added {
				t.Errorf("added %d networks, want %d", pl.p.structResult.Added.Networks, tc.added)
			}
			if tc.name == "repaired" {
				if row := describeField(pl.p.structOps[0].Row); !strings.Contains(row, `["keep","me"]`) || !strings.Contains(row, `"tunnel_key":["set",[100]]`) {
					t.Errorf("repaired row %s keeps foreign other_config and sets the key?", row)
				}
			}
		})
	}
}

func TestPlanVLANBindings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*ovsdb.State)
		nets   []vtep.Network
		ops    []string
		errMsg string
	}{
		{name: "in shape but for an unwanted switch's binding",
			nets: []vtep.Network{{VNI: 100, LocalInterface: "p0:10"}},
			ops:  []string{`mutate Physical_Port pp0 vlan_bindings delete ["set",[30]]`}},
		{name: "moved to another VLAN",
			nets: []vtep.Network{{VNI: 100, LocalInterface: "p0:11"}},
			ops:  []string{`mutate Physical_Port pp0 vlan_bindings delete ["set",[10,30,11]] vlan_bindings insert ["map",[[11,ls-100]]]`}},
		{name: "no network on the port, unwanted switch's binding left to its removal",
			nets: []vtep.Network{{VNI: 100}},
			ops:  []string{`mutate Physical_Port pp0 vlan_bindings delete ["set",[10]]`}},
		{name: "foreign binding in the way",
			nets:   []vtep.Network{{VNI: 100, LocalInterface: "p0:20"}},
			ops:    []string{`mutate Physical_Port pp0 vlan_bindings delete ["set",[10,30]]`},
			errMsg: "port p0 vlan 20: bound to logical switch ls-7, which l2span does not own"},
		{name: "new port",
			nets: []vtep.Network{{VNI: 100, LocalInterface: "p0:10"}, {VNI: 200, LocalInterface: "p1"}},
			ops: []string{"insert Logical_Switch ls200", `mutate Physical_Port pp0 vlan_bindings delete ["set",[30]]`,
				"insert Physical_Port port2", `mutate Physical_Switch ps ports insert ["set",[port2]]`}},
		{name: "fresh database", edit: func(st *ovsdb.State) { *st = ovsdb.State{} },
			nets: []vtep.Network{{VNI: 200, LocalInterface: "p1:5"}},
			ops: []string{"insert Logical_Switch ls200", "insert Global global",
				"insert Physical_Switch pswitch", `mutate Global global switches insert ["set",[pswitch]]`,
				"insert Physical_Port port4", `mutate Physical_Switch pswitch ports insert ["set",[port4]]`}},
		{name: "bad interface", nets: []vtep.Network{{VNI: 100, LocalInterface: "p0:10"}, {VNI: 200, LocalInterface: "p0:x"}},
			ops: []string{"insert Logical_Switch ls200", `mutate Physical_Port pp0 vlan_bindings delete ["set",[30]]`}, errMsg: "vni 200: local interface \"p0:x\": VLAN must be 0-4095"},
		{name: "two networks on one VLAN", nets: []vtep.Network{{VNI: 100, LocalInterface: "p0:10"}, {VNI: 200, LocalInterface: "p0:10"}},
			ops: []string{"insert Logical_Switch ls200", `mutate Physical_Port pp0 vlan_bindings delete ["set",[30]]`}, errMsg: "vni 200: p0:10 already bound to another network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fixture()
			if tc.edit != nil {
				tc.edit(st)
			}
			pl := plannerAfter(st, vtep.Config{Networks: tc.nets}, append(stepsToLS, stepLS, stepBindings)...)
			checkOps(t, pl.p.structOps, tc.ops...)
			checkErrs(t, pl.p.errs, tc.errMsg)
		})
	}
}

func TestPlanFloodLists(t *testing.T) {
	withFlood := func(vni uint32, vteps ...netip.Addr) []vtep.Network {
		return []vtep.Network{{VNI: vni, Flood: vteps}}
	}
	for _, tc := range []struct {
		name           string
		edit           func(*ovsdb.State)
		nets           []vtep.Network
		ops            []string
		added, removed int
		kept           []string
		errMsg         string
	}{
		{name: "in shape", nets: withFlood(100, vtepB, vtepA), kept: []string{"set-ab", "set-b"}},
		{name: "shrinks to an existing set", nets: withFlood(100, vtepB),
			ops: []string{"update Mcast_Macs_Remote m100"}, removed: 1, kept: []string{"set-b"}},
		{name: "grows: new set, existing and new locators", nets: withFlood(100, vtepA, vtepB, netip.MustParseAddr("192.0.2.4")),
			ops:   []string{"insert Physical_Locator floc1", "insert Physical_Locator_Set fset100", "update Mcast_Macs_Remote m100"},
			added: 1, kept: []string{"set-b"}},
		{name: "emptied", nets: withFlood(100), ops: []string{"delete Mcast_Macs_Remote m100"}, removed: 2, kept: []string{"set-b"}},
		{name: "new switch", nets: append(withFlood(100, vtepA, vtepB), withFlood(200, vtepB)...),
			ops: []string{"insert Mcast_Macs_Remote"}, added: 1, kept: []string{"set-ab", "set-b"}},
		{name: "strays deleted", edit: func(st *ovsdb.State) {
			st.McastMacsRemote["m100b"] = &ovsdb.McastMacsRemote{UUID: "m100b", MAC: unknownDst, LogicalSwitch: "ls-100", LocatorSet: "set-b"}
			st.McastMacsRemote["m100c"] = &ovsdb.McastMacsRemote{UUID: "m100c", MAC: "01:00:5e:00:00:01", LogicalSwitch: "ls-100", LocatorSet: "set-b"}
		}, nets: withFlood(100, vtepA, vtepB), ops: []string{"delete Mcast_Macs_Remote m100b", "delete Mcast_Macs_Remote m100c"},
			kept: []string{"set-ab", "set-b"}},
		{name: "invalid VTEP", nets: withFlood(100, vtepA, vtepB, netip.Addr{}), kept: []string{"set-ab", "set-b"},
			errMsg: "vni 100: invalid flood VTEP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fixture()
			if tc.edit != nil {
				tc.edit(st)
			}
			pl := plannerAfter(st, vtep.Config{Networks: tc.nets}, stepsToFlood...)
			before := len(pl.p.structOps)
			pl.planFloodLists()
			pl.pinKeptLocators()
			checkOps(t, pl.p.structOps[before:], tc.ops...)
			checkErrs(t, pl.p.errs, tc.errMsg)
			if r := pl.p.structResult; r.Added.Flood != tc.added || r.Removed.Flood != tc.removed {
				t.Errorf("flood +%d -%d, want +%d -%d", r.Added.Flood, r.Removed.Flood, tc.added, tc.removed)
			}
			if kept := slices.Sorted(maps.Keys(pl.keptSets)); !slices.Equal(kept, tc.kept) {
				t.Errorf("kept sets %v, want %v", kept, tc.kept)
			}
		})
	}
}

func TestPlanUcastMacs(t *testing.T) {
	type write struct{ uuid, mac, locator, oldLocator, ip, oldIP string }
	for _, tc := range []struct {
		name    string
		edit    func(*ovsdb.State)
		net     func(*vtep.Network)
		writes  []write
		deletes []string
		errMsg  string
	}{
		{name: "in shape"},
		{name: "moved, neighbor changed, added", net: func(n *vtep.Network) {
			n.MACs[1].VTEP = vtepB
			n.MACs = append(n.MACs, vtep.MACEntry{MAC: mac(4), VTEP: vtepA})
			n.Neighbors = []vtep.Neighbor{{IP: netip.MustParseAddr("10.0.0.2"), MAC: mac(2)}}
		}, writes: []write{
			{uuid: "u1", mac: mac(1).String(), locator: "192.0.2.1", oldLocator: "192.0.2.1", oldIP: "10.0.0.1"},
			{uuid: "u2", mac: mac(2).String(), locator: "192.0.2.2", oldLocator: "192.0.2.3", ip: "10.0.0.2"},
			{mac: mac(4).String(), locator: "192.0.2.1"},
		}},
		{name: "unwanted and duplicate rows deleted, MAC case ignored", edit: func(st *ovsdb.State) {
			st.UcastMacsRemote["u0"] = &ovsdb.UcastMacsRemote{UUID: "u0", MAC: "02:00:00:00:00:02", LogicalSwitch: "ls-100", Locator: "loc-a"}
			st.UcastMacsRemote["u9"] = &ovsdb.UcastMacsRemote{UUID: "u9", MAC: "02:00:00:00:00:0A", LogicalSwitch: "ls-100", Locator: "loc-b", Ipaddr: "10.0.0.9"}
		}, writes: []write{
			{uuid: "u0", mac: mac(2).String(), locator: "192.0.2.3", oldLocator: "192.0.2.1"},
		}, deletes: []string{"u2 192.0.2.3 ", "u9 192.0.2.2 10.0.0.9"}},
		{name: "bad entry", net: func(n *vtep.Network) {
			n.MACs = append(n.MACs, vtep.MACEntry{MAC: mac(5)})
		}, errMsg: "vni 100: bad MAC entry 02:00:00:00:00:05 -> invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fixture()
			if tc.edit != nil {
				tc.edit(st)
			}
			n := fixtureNet100()
			if tc.net != nil {
				tc.net(&n)
			}
			pl := plannerAfter(st, vtep.Config{Networks: []vtep.Network{n}}, stepsToUcast...)
			pl.planUcastMacs()
			var writes []write
			for _, w := range pl.p.macWrites {
				if w.vni != 100 || w.ls != "ls-100" {
					t.Errorf("write %+v: wrong switch", w)
				}
				writes = append(writes, write{w.uuid, w.mac, w.locator, w.oldLocator, w.ip, w.oldIP})
			}
			var deletes []string
			for _, d := range pl.p.macDeletes {
				deletes = append(deletes, d.uuid+" "+d.locator+" "+d.ip)
			}
			if !slices.Equal(writes, tc.writes) || !slices.Equal(deletes, tc.deletes) {
				t.Errorf("writes %+v\ndeletes %q\nwant %+v\n%q", writes, deletes, tc.writes, tc.deletes)
			}
			checkErrs(t, pl.p.errs, tc.errMsg)
		})
	}
}

func TestPlanRemovals(t *testing.T) {
	st := fixture()
	st.McastMacsLocal = map[string]*ovsdb.McastMacsLocal{"ml": {UUID: "ml", MAC: unknownDst, LogicalSwitch: "ls-300", LocatorSet: "set-b"}}
	pl := plannerAfter(st, vtep.Config{Networks: []vtep.Network{fixtureNet100()}}, stepsToUcast...)
	pl.planUcastMacs()
	pl.planRemovals()
	if len(pl.p.errs) != 0 || len(pl.p.removals) != 1 {
		t.Fatalf("removals %d, errors %v", len(pl.p.removals), pl.p.errs)
	}
	r := pl.p.removals[0]
	if r.name != "l2s-300" || r.macs != 1 || r.neighbors != 1 || r.flood != 1 {
		t.Errorf("removal %s: %d MACs, %d neighbors, %d flood; want l2s-300: 1, 1, 1", r.name, r.macs, r.neighbors, r.flood)
	}
	checkOps(t, r.ops,
		"delete Ucast_Macs_Local l1",
		"delete Mcast_Macs_Local ml",
		"delete Ucast_Macs_Remote u3",
		"delete Mcast_Macs_Remote m300",
		`mutate Physical_Port pp0 vlan_bindings delete ["set",[30]]`,
		"delete Logical_Switch ls-300",
	)
	// The unwanted switch's flood set keeps its locator until then.
	if l := pl.p.locs["192.0.2.2"]; l == nil || !l.pinned {
		t.Errorf("locator B %+v: want pinned by set-b", l)
	}
}

// TestApplyLeavesPlanAlone applies a plan through a pretend transaction:
// the plan must read the same afterwards (Set may plan again, Check must
// not disturb anything).
func TestApplyLeavesPlanAlone(t *testing.T) {
	cfg := vtep.Config{Networks: []vtep.Network{fixtureNet100(), {VNI: 200, Flood: []netip.Addr{netip.MustParseAddr("192.0.2.4")},
		MACs: []vtep.MACEntry{{MAC: mac(9), VTEP: netip.MustParseAddr("192.0.2.5")}}}}}
	cfg.Networks[0].MACs[0].VTEP = vtepB
	opts := Options{PhysicalSwitch: "sw0", BatchSize: 1, PipelineDepth: 1}
	p := makePlan(fixture(), opts, cfg.Normalize())
	want := makePlan(fixture(), opts, cfg.Normalize())
	if !reflect.DeepEqual(p, want) {
		t.Fatal("makePlan is not deterministic")
	}
	b := &Backend{opts: opts}
	res, err := b.apply(context.Background(), p, dryRun(), false)
	if err != nil {
		t.Fatal(err)
	}
	if wantRes := (vtep.Result{Added: vtep.Counts{Networks: 1, MACs: 2, Flood: 1}, Removed: vtep.Counts{Networks: 1, MACs: 2, Flood: 1, Neighbors: 1}}); res != wantRes {
		t.Errorf("result %+v, want %+v", res, wantRes)
	}
	if !reflect.DeepEqual(p, want) {
		t.Error("apply changed the plan")
	}
}
