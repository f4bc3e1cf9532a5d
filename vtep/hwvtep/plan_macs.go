package hwvtep

import (
	"slices"
	"strconv"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Planners of the MAC tables: Mcast_Macs_Remote with its
// Physical_Locator_Set and Physical_Locators (flood lists), Ucast_Macs_Remote,
// and the removal of unwanted Logical_Switches with every row in them.

// planFloodLists makes each network's unknown-dst Mcast_Macs_Remote point
// at a locator set of exactly its Flood VTEPs.
func (pl *planner) planFloodLists() {
	for n, ref := range pl.networkRefs {
		pl.planFloodList(n.VNI, ref, pl.floodKeys(n))
	}
}

// floodKeys is n's Flood as sorted, distinct locator keys; invalid
// addresses are reported and left out.
func (pl *planner) floodKeys(n vtep.Network) []string {
	var want []string
	for _, a := range n.Flood {
		if !a.IsValid() {
			pl.errf("vni %d: invalid flood VTEP", n.VNI)
			continue
		}
		want = append(want, a.String())
	}
	slices.Sort(want)
	return slices.Compact(want)
}

// planFloodList plans the flood list of switch ref: other owned
// Mcast_Macs_Remote rows go, the unknown-dst row is inserted, repointed or
// deleted.
func (pl *planner) planFloodList(vni uint32, ref string, want []string) {
	var cur *ovsdb.McastMacsRemote
	for _, r := range pl.mcastBySwitch[ref] {
		if r.MAC == unknownDst && cur == nil {
			cur = r
			continue
		}
		pl.add(ovsdb.DeleteMcastMacsRemoteOps(pl.p.structOps, r.UUID)) // owned, never wanted
	}
	var have []string
	if cur != nil {
		have = pl.setKeys(cur.LocatorSet)
	}
	if slices.Equal(have, want) && (cur != nil || len(want) == 0) {
		if cur != nil {
			pl.keptSets[cur.LocatorSet] = true
		}
		return
	}
	for _, k := range want {
		if !slices.Contains(have, k) {
			pl.p.structResult.Added.Flood++
		}
	}
	for _, k := range have {
		if !slices.Contains(want, k) {
			pl.p.structResult.Removed.Flood++
		}
	}
	if len(want) == 0 {
		pl.add(ovsdb.DeleteMcastMacsRemoteOps(pl.p.structOps, cur.UUID))
		return
	}
	setRef := pl.locatorSet(vni, want)
	if cur == nil {
		pl.add(ovsdb.InsertMcastMacsRemoteOps(pl.p.structOps, &ovsdb.McastMacsRemote{MAC: unknownDst, LogicalSwitch: ref, LocatorSet: setRef}))
	} else {
		pl.add(ovsdb.UpdateMcastMacsRemoteOps(pl.p.structOps, &ovsdb.McastMacsRemote{UUID: cur.UUID, MAC: unknownDst, LocatorSet: setRef}))
	}
}

// locatorSet returns an existing Physical_Locator_Set of exactly the
// locators keys, or inserts one (sets are immutable).
func (pl *planner) locatorSet(vni uint32, keys []string) string {
	for _, su := range sortedKeys(pl.st.PhysicalLocatorSet) {
		if slices.Equal(pl.setKeys(su), keys) {
			pl.keptSets[su] = true
			return su
		}
	}
	locRefs := make([]string, 0, len(keys))
	for _, k := range keys {
		locRefs = append(locRefs, pl.floodLocator(k))
	}
	setRef := "fset" + strconv.FormatUint(uint64(vni), 10)
	pl.add(ovsdb.InsertPhysicalLocatorSetOps(pl.p.structOps, &ovsdb.PhysicalLocatorSet{UUID: setRef, Locators: locRefs}))
	return setRef
}

// setKeys is the sorted locator keys of a Physical_Locator_Set.
func (pl *planner) setKeys(setUUID string) []string {
	s := pl.st.PhysicalLocatorSet[setUUID]
	if s == nil {
		return nil
	}
	var keys []string
	for _, l := range s.Locators {
		keys = append(keys, pl.keyOf(l))
	}
	slices.Sort(keys)
	return keys
}

// floodLocator returns the reference of the locator key for a flood set in
// the structure transaction, inserting it once if it does not exist.
func (pl *planner) floodLocator(key string) string {
	if l := pl.p.locs[key]; l != nil && l.uuid != "" {
		l.pinned = true
		return l.uuid
	}
	if idx, ok := pl.p.locInsertIdx[key]; ok {
		return pl.p.structOps[idx].UUIDName
	}
	name := "floc" + strconv.Itoa(len(pl.p.structOps))
	before := len(pl.p.structOps)
	pl.add(ovsdb.InsertPhysicalLocatorOps(pl.p.structOps, &ovsdb.PhysicalLocator{UUID: name, DstIP: key, EncapsulationType: vxlan}))
	if len(pl.p.structOps) > before {
		pl.p.locInsertIdx[key] = len(pl.p.structOps) - 1
		pl.p.locs[key] = &locState{pinned: true}
	}
	return name
}

// pinKeptLocators pins the locators of every set still referenced after
// the structure transaction: those the flood planner kept, those of
// switches it did not touch, and those of unwanted switches until their
// removal at the very end.
func (pl *planner) pinKeptLocators() {
	for _, r := range pl.st.McastMacsRemote {
		ls := pl.st.LogicalSwitch[r.LogicalSwitch]
		if ls == nil {
			continue
		}
		if vni, ok := ownedVNI(ls); !ok || !pl.wantVNI[vni] || pl.owned[vni] == nil || pl.owned[vni].UUID != ls.UUID {
			pl.keptSets[r.LocatorSet] = true
		}
	}
	for su := range pl.keptSets {
		if s := pl.st.PhysicalLocatorSet[su]; s != nil {
			for _, l := range s.Locators {
				pl.pinLoc(l)
			}
		}
	}
}

// planUcastMacs plans the Ucast_Macs_Remote writes and deletes of every
// network with a planned switch.
func (pl *planner) planUcastMacs() {
	for n := range pl.networkRefs {
		pl.planUcastMacsOf(n)
	}
}

// planUcastMacsOf makes switch n.VNI hold one row per wanted MAC with its
// VTEP's locator and its neighbor IP; other rows (unwanted MACs,
// duplicates) are deleted.
func (pl *planner) planUcastMacsOf(n vtep.Network) {
	realLS := pl.p.lsUUID[n.VNI]
	ips := neighborIPs(n)
	have := pl.ucastBySwitch[realLS] // nil for a new switch
	wanted := map[string]bool{}
	for _, e := range n.MACs {
		if len(e.MAC) != 6 || !e.VTEP.IsValid() {
			pl.errf("vni %d: bad MAC entry %s -> %s", n.VNI, e.MAC, e.VTEP)
			continue
		}
		mac := e.MAC.String()
		wanted[mac] = true
		w := macWrite{vni: n.VNI, ls: realLS, mac: mac, locator: e.VTEP.String(), ip: ips[mac]}
		if rows := have[mac]; len(rows) > 0 {
			r := rows[0]
			if pl.keyOf(r.Locator) == w.locator && r.Ipaddr == w.ip {
				continue
			}
			w.uuid, w.oldLocator, w.oldIP = r.UUID, pl.keyOf(r.Locator), r.Ipaddr
		}
		pl.p.macWrites = append(pl.p.macWrites, w)
	}
	for _, mac := range sortedKeys(have) {
		rows := have[mac]
		if wanted[mac] {
			rows = rows[1:] // the first is kept (and rewritten)
		}
		for _, r := range rows {
			pl.p.macDeletes = append(pl.p.macDeletes, macDelete{uuid: r.UUID, locator: pl.keyOf(r.Locator), ip: r.Ipaddr})
		}
	}
}

// planRemovals plans one transaction per unwanted switch.
func (pl *planner) planRemovals() {
	for _, ls := range pl.unwanted {
		r, err := pl.removal(ls)
		if err != nil {
			pl.errf("remove logical switch %s: %w", ls.Name, err)
			continue
		}
		pl.p.removals = append(pl.p.removals, r)
	}
}

// removal deletes an unwanted switch with everything that refers to it in
// one transaction, the switch's own *_Macs_Local rows included.
func (pl *planner) removal(ls *ovsdb.LogicalSwitch) (removal, error) {
	r := removal{name: ls.Name}
	var ops []lo.Operation
	var err error
	del := func(o []lo.Operation, e error) {
		if e != nil {
			err = e
			return
		}
		ops = o
	}
	for _, u := range sortedKeys(pl.st.UcastMacsLocal) {
		if pl.st.UcastMacsLocal[u].LogicalSwitch == ls.UUID {
			del(ovsdb.DeleteUcastMacsLocalOps(ops, u))
		}
	}
	for _, u := range sortedKeys(pl.st.McastMacsLocal) {
		if pl.st.McastMacsLocal[u].LogicalSwitch == ls.UUID {
			del(ovsdb.DeleteMcastMacsLocalOps(ops, u))
		}
	}
	byMAC := pl.ucastBySwitch[ls.UUID]
	for _, mac := range sortedKeys(byMAC) {
		for _, row := range byMAC[mac] {
			del(ovsdb.DeleteUcastMacsRemoteOps(ops, row.UUID))
			r.macs++
			if row.Ipaddr != "" {
				r.neighbors++
			}
		}
	}
	for _, row := range pl.mcastBySwitch[ls.UUID] {
		del(ovsdb.DeleteMcastMacsRemoteOps(ops, row.UUID))
		if row.MAC == unknownDst {
			r.flood += len(pl.setKeys(row.LocatorSet))
		}
	}
	for _, pu := range sortedKeys(pl.st.PhysicalPort) {
		pp := pl.st.PhysicalPort[pu]
		var vlans []int
		for _, vlan := range sortedKeys(pp.VLANBindings) {
			if pp.VLANBindings[vlan] == ls.UUID {
				vlans = append(vlans, vlan)
			}
		}
		if len(vlans) > 0 {
			del(ovsdb.SetVLANBindingsOps(ops, pu, nil, vlans))
		}
	}
	del(ovsdb.DeleteLogicalSwitchOps(ops, ls.UUID))
	if err != nil {
		return removal{}, err
	}
	r.ops = ops
	return r, nil
}
