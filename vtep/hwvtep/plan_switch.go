package hwvtep

import (
	"maps"
	"slices"
	"strconv"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
)

// Planners of the structure: Logical_Switch, Global and Physical_Switch,
// Physical_Port vlan_bindings.

// selectOwnedSwitches picks the one owned Logical_Switch per wanted VNI
// (preferring the one with the canonical name) and lists the others as
// unwanted.
func (pl *planner) selectOwnedSwitches() {
	for _, uuid := range sortedKeys(pl.st.LogicalSwitch) {
		ls := pl.st.LogicalSwitch[uuid]
		vni, ok := ownedVNI(ls)
		if !ok {
			continue
		}
		if prev, dup := pl.owned[vni]; dup {
			if ls.Name == lsName(vni) && prev.Name != lsName(vni) {
				pl.owned[vni], ls = ls, prev
			}
			pl.unwanted = append(pl.unwanted, ls)
			continue
		}
		pl.owned[vni] = ls
	}
	for _, vni := range sortedKeys(pl.owned) {
		if !pl.wantVNI[vni] {
			pl.unwanted = append(pl.unwanted, pl.owned[vni])
			delete(pl.owned, vni)
		}
	}
}

// planLogicalSwitches inserts or repairs the Logical_Switch of each
// network, in config order.
func (pl *planner) planLogicalSwitches() {
	for _, n := range pl.cfg.Networks {
		pl.planLogicalSwitch(n.VNI)
	}
}

func (pl *planner) planLogicalSwitch(vni uint32) {
	if vni > maxVNI {
		pl.errf("vni %d: larger than 24 bits", vni)
		return
	}
	if _, dup := pl.lsRef[vni]; dup {
		pl.errf("vni %d: listed twice", vni)
		return
	}
	key := int(vni)
	want := &ovsdb.LogicalSwitch{
		Name: lsName(vni), TunnelKey: &key,
		Description: "l2span network",
		OtherConfig: map[string]string{OwnerKey: strconv.FormatUint(uint64(vni), 10)},
	}
	if cur := pl.owned[vni]; cur != nil {
		pl.lsRef[vni] = cur.UUID
		pl.p.lsUUID[vni] = cur.UUID
		if cur.Name == want.Name && cur.TunnelKey != nil && *cur.TunnelKey == key && cur.Description == want.Description {
			return
		}
		if other := pl.lsByName[want.Name]; other != nil && other.UUID != cur.UUID {
			pl.errf("vni %d: logical switch name %s is taken by another switch", vni, want.Name)
			return
		}
		oc := maps.Clone(cur.OtherConfig)
		maps.Copy(oc, want.OtherConfig)
		want.UUID, want.OtherConfig = cur.UUID, oc
		pl.add(ovsdb.UpdateLogicalSwitchOps(pl.p.structOps, want))
		return
	}
	if other := pl.lsByName[want.Name]; other != nil {
		pl.errf("vni %d: logical switch %s exists and is not owned by l2span (no other_config:%s)", vni, want.Name, OwnerKey)
		return
	}
	want.UUID = "ls" + strconv.FormatUint(uint64(vni), 10)
	before := len(pl.p.structOps)
	pl.add(ovsdb.InsertLogicalSwitchOps(pl.p.structOps, want))
	if len(pl.p.structOps) > before {
		pl.lsRef[vni] = want.UUID
		pl.p.lsInsertIdx[vni] = len(pl.p.structOps) - 1
		pl.p.structResult.Added.Networks++
	}
}

// findPhysicalSwitch finds the configured Physical_Switch and its ports.
func (pl *planner) findPhysicalSwitch() {
	for _, uuid := range sortedKeys(pl.st.PhysicalSwitch) {
		if pl.st.PhysicalSwitch[uuid].Name == pl.opts.PhysicalSwitch {
			pl.ps = pl.st.PhysicalSwitch[uuid]
			break
		}
	}
	if pl.ps == nil {
		return
	}
	pl.psRef = pl.ps.UUID
	for _, u := range pl.ps.Ports {
		if pp := pl.st.PhysicalPort[u]; pp != nil {
			pl.ports[pp.Name] = pp
		}
	}
}

// ensurePhysicalSwitch returns the reference of the configured
// Physical_Switch, inserting it (and a Global row on a fresh database)
// when missing.
func (pl *planner) ensurePhysicalSwitch() string {
	if pl.psRef != "" {
		return pl.psRef
	}
	gRef := ""
	if gs := sortedKeys(pl.st.Global); len(gs) > 0 {
		gRef = gs[0]
	} else {
		gRef = "global"
		pl.add(ovsdb.InsertGlobalOps(pl.p.structOps, &ovsdb.Global{UUID: gRef}))
	}
	newPS := &ovsdb.PhysicalSwitch{UUID: "pswitch", Name: pl.opts.PhysicalSwitch}
	if pl.opts.TunnelIP.IsValid() {
		newPS.TunnelIPs = []string{pl.opts.TunnelIP.String()}
	}
	pl.add(ovsdb.InsertPhysicalSwitchOps(pl.p.structOps, gRef, newPS))
	pl.psRef = newPS.UUID
	return pl.psRef
}

// wantedBindings is port -> VLAN -> switch reference for every network
// with a local interface and a planned switch.
func (pl *planner) wantedBindings() map[string]map[int]string {
	want := map[string]map[int]string{}
	for _, n := range pl.cfg.Networks {
		ref, ok := pl.lsRef[n.VNI]
		if !ok || n.LocalInterface == "" {
			continue
		}
		port, vlan, err := ParseLocalInterface(n.LocalInterface)
		if err != nil {
			pl.errf("vni %d: %w", n.VNI, err)
			continue
		}
		if want[port] == nil {
			want[port] = map[int]string{}
		}
		if _, dup := want[port][vlan]; dup {
			pl.errf("vni %d: %s already bound to another network", n.VNI, n.LocalInterface)
			continue
		}
		want[port][vlan] = ref
	}
	return want
}

// planVLANBindings makes each port's owned vlan_bindings what the networks
// want, inserting missing ports; bindings to switches the backend does not
// own are left alone (and block a wanted binding on the same VLAN).
func (pl *planner) planVLANBindings() {
	wantBind := pl.wantedBindings()
	for _, name := range sortedKeys(wantBind) {
		pl.bindPort(name, wantBind[name])
	}
	for _, name := range sortedKeys(pl.ports) {
		if _, done := wantBind[name]; !done {
			pl.unbindPort(pl.ports[name])
		}
	}
}

// bindPort plans the bindings of port name, which should be exactly want
// among the VLANs bound to owned switches.
func (pl *planner) bindPort(name string, want map[int]string) {
	pp := pl.ports[name]
	if pp == nil {
		ref := pl.ensurePhysicalSwitch()
		pl.add(ovsdb.InsertPhysicalPortOps(pl.p.structOps, ref, &ovsdb.PhysicalPort{UUID: "port" + strconv.Itoa(len(pl.p.structOps)), Name: name, VLANBindings: want}))
		return
	}
	set := map[int]string{}
	var remove []int
	for _, vlan := range sortedKeys(pp.VLANBindings) {
		cur := pp.VLANBindings[vlan]
		if ref, ok := want[vlan]; ok {
			if cur != ref && !pl.isOwned(cur) {
				pl.errf("port %s vlan %d: bound to logical switch %s, which l2span does not own", name, vlan, cur)
				delete(want, vlan)
			}
			continue
		}
		if pl.isOwned(cur) {
			remove = append(remove, vlan)
		}
	}
	for vlan, ref := range want {
		if pp.VLANBindings[vlan] != ref {
			set[vlan] = ref
		}
	}
	pl.add(ovsdb.SetVLANBindingsOps(pl.p.structOps, pp.UUID, set, remove))
}

// unbindPort removes a port's bindings to owned switches no network wants
// on it, except those of unwanted switches: their removal does that.
func (pl *planner) unbindPort(pp *ovsdb.PhysicalPort) {
	var remove []int
	for _, vlan := range sortedKeys(pp.VLANBindings) {
		ls := pp.VLANBindings[vlan]
		if pl.isOwned(ls) && !slices.ContainsFunc(pl.unwanted, func(u *ovsdb.LogicalSwitch) bool { return u.UUID == ls }) {
			remove = append(remove, vlan)
		}
	}
	pl.add(ovsdb.SetVLANBindingsOps(pl.p.structOps, pp.UUID, nil, remove))
}

// networkRefs yields each network with a planned switch and its reference.
func (pl *planner) networkRefs(yield func(vtep.Network, string) bool) {
	for _, n := range pl.cfg.Networks {
		if ref, ok := pl.lsRef[n.VNI]; ok && !yield(n, ref) {
			return
		}
	}
}
