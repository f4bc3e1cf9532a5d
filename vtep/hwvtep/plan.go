package hwvtep

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// plan is what one Set will write, computed from a cache snapshot. It is a
// pure function of (state, options, config), tested without a server.
type plan struct {
	errs []error

	structOps    []lo.Operation
	lsInsertIdx  map[uint32]int    // VNI -> index of its insert in structOps
	lsUUID       map[uint32]string // VNI -> real UUID of its Logical_Switch
	locs         map[string]*locState
	locInsertIdx map[string]int // locator key -> index of insert in structOps
	struct_      struct{ addedNetworks, addedFlood, removedFlood int }

	macWrites  []macWrite
	macDeletes []macDelete
	removals   []removal
}

// writes says whether applying the plan would write anything.
func (p *plan) writes() bool {
	return len(p.structOps) > 0 || len(p.macWrites) > 0 || len(p.macDeletes) > 0 || len(p.removals) > 0
}

// locState tracks a Physical_Locator (keyed by dst_ip) through the batches
// of one Set: its UUID while it exists, how many Ucast_Macs_Remote rows
// refer to it, and whether something else keeps it alive.
type locState struct {
	uuid   string
	refs   int
	pinned bool
}

type macWrite struct {
	vni                 uint32
	ls                  string // real UUID of the switch; "" if created by this Set
	uuid                string // existing row to update; "" to insert
	mac                 string
	locator, oldLocator string // keys (dst_ip)
	ip, oldIP           string
}

type macDelete struct {
	uuid, locator, ip string
}

type removal struct {
	name                   string
	ops                    []lo.Operation
	macs, flood, neighbors int
}

func lsName(vni uint32) string { return NamePrefix + strconv.FormatUint(uint64(vni), 10) }

// locKey is the key of a VXLAN locator without tunnel_key, "" for others.
func locKey(l *ovsdb.PhysicalLocator) string {
	if l == nil || l.EncapsulationType != vxlan || l.TunnelKey != nil {
		return ""
	}
	ip, err := netip.ParseAddr(l.DstIP)
	if err != nil {
		return ""
	}
	return ip.String()
}

func normMAC(s string) string {
	if hw, err := net.ParseMAC(s); err == nil {
		return hw.String()
	}
	return strings.ToLower(s)
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

func makePlan(st *ovsdb.State, opts Options, cfg vtep.Config) *plan {
	p := &plan{
		lsInsertIdx:  map[uint32]int{},
		lsUUID:       map[uint32]string{},
		locs:         map[string]*locState{},
		locInsertIdx: map[string]int{},
	}
	errf := func(format string, args ...any) { p.errs = append(p.errs, fmt.Errorf(format, args...)) }
	add := func(ops []lo.Operation, err error) {
		if err != nil {
			p.errs = append(p.errs, err)
			return
		}
		p.structOps = ops
	}

	// Locators as they are now.
	for _, uuid := range sortedKeys(st.PhysicalLocator) {
		if k := locKey(st.PhysicalLocator[uuid]); k != "" {
			if _, dup := p.locs[k]; !dup {
				p.locs[k] = &locState{uuid: uuid}
			}
		}
	}
	keyOf := func(locUUID string) string { return locKey(st.PhysicalLocator[locUUID]) }
	for _, r := range st.UcastMacsRemote {
		if l := p.locs[keyOf(r.Locator)]; l != nil {
			l.refs++
		}
	}
	pinLoc := func(locUUID string) {
		if l := p.locs[keyOf(locUUID)]; l != nil {
			l.pinned = true
		}
	}
	for _, r := range st.UcastMacsLocal {
		pinLoc(r.Locator)
	}
	keptSets := map[string]bool{} // locator sets referenced after the structure transaction
	for _, r := range st.McastMacsLocal {
		keptSets[r.LocatorSet] = true
	}

	// Owned switches.
	owned := map[uint32]*ovsdb.LogicalSwitch{}
	var unwanted []*ovsdb.LogicalSwitch
	for _, uuid := range sortedKeys(st.LogicalSwitch) {
		ls := st.LogicalSwitch[uuid]
		vni, ok := ownedVNI(ls)
		if !ok {
			continue
		}
		if prev, dup := owned[vni]; dup {
			if ls.Name == lsName(vni) && prev.Name != lsName(vni) {
				owned[vni], ls = ls, prev
			}
			unwanted = append(unwanted, ls)
			continue
		}
		owned[vni] = ls
	}
	wantVNI := map[uint32]bool{}
	for _, n := range cfg.Networks {
		wantVNI[n.VNI] = true
	}
	for _, vni := range sortedKeys(owned) {
		if !wantVNI[vni] {
			unwanted = append(unwanted, owned[vni])
			delete(owned, vni)
		}
	}
	lsByName := map[string]*ovsdb.LogicalSwitch{}
	for _, ls := range st.LogicalSwitch {
		lsByName[ls.Name] = ls
	}

	// Global and Physical_Switch (created only when missing).
	var ps *ovsdb.PhysicalSwitch
	for _, uuid := range sortedKeys(st.PhysicalSwitch) {
		if st.PhysicalSwitch[uuid].Name == opts.PhysicalSwitch {
			ps = st.PhysicalSwitch[uuid]
			break
		}
	}
	psRef := ""
	if ps != nil {
		psRef = ps.UUID
	}
	ensureSwitch := func() string {
		if psRef != "" {
			return psRef
		}
		gRef := ""
		if gs := sortedKeys(st.Global); len(gs) > 0 {
			gRef = gs[0]
		} else {
			gRef = "global"
			add(ovsdb.InsertGlobalOps(p.structOps, &ovsdb.Global{UUID: gRef}))
		}
		newPS := &ovsdb.PhysicalSwitch{UUID: "pswitch", Name: opts.PhysicalSwitch}
		if opts.TunnelIP.IsValid() {
			newPS.TunnelIPs = []string{opts.TunnelIP.String()}
		}
		add(ovsdb.InsertPhysicalSwitchOps(p.structOps, gRef, newPS))
		psRef = newPS.UUID
		return psRef
	}
	ports := map[string]*ovsdb.PhysicalPort{}
	if ps != nil {
		for _, u := range ps.Ports {
			if pp := st.PhysicalPort[u]; pp != nil {
				ports[pp.Name] = pp
			}
		}
	}

	// Logical switches.
	lsRef := map[uint32]string{} // real or named
	for _, n := range cfg.Networks {
		if n.VNI > maxVNI {
			errf("vni %d: larger than 24 bits", n.VNI)
			continue
		}
		if _, dup := lsRef[n.VNI]; dup {
			errf("vni %d: listed twice", n.VNI)
			continue
		}
		key := int(n.VNI)
		want := &ovsdb.LogicalSwitch{
			Name: lsName(n.VNI), TunnelKey: &key,
			Description: "l2span network",
			OtherConfig: map[string]string{OwnerKey: strconv.FormatUint(uint64(n.VNI), 10)},
		}
		if cur := owned[n.VNI]; cur != nil {
			lsRef[n.VNI] = cur.UUID
			p.lsUUID[n.VNI] = cur.UUID
			if cur.Name != want.Name || cur.TunnelKey == nil || *cur.TunnelKey != key || cur.Description != want.Description {
				if other := lsByName[want.Name]; other != nil && other.UUID != cur.UUID {
					errf("vni %d: logical switch name %s is taken by another switch", n.VNI, want.Name)
					continue
				}
				oc := maps.Clone(cur.OtherConfig)
				maps.Copy(oc, want.OtherConfig)
				want.UUID, want.OtherConfig = cur.UUID, oc
				add(ovsdb.UpdateLogicalSwitchOps(p.structOps, want))
			}
			continue
		}
		if other := lsByName[want.Name]; other != nil {
			errf("vni %d: logical switch %s exists and is not owned by l2span (no other_config:%s)", n.VNI, want.Name, OwnerKey)
			continue
		}
		want.UUID = "ls" + strconv.FormatUint(uint64(n.VNI), 10)
		before := len(p.structOps)
		add(ovsdb.InsertLogicalSwitchOps(p.structOps, want))
		if len(p.structOps) > before {
			lsRef[n.VNI] = want.UUID
			p.lsInsertIdx[n.VNI] = len(p.structOps) - 1
			p.struct_.addedNetworks++
		}
	}

	// Port bindings.
	isOwned := func(lsUUID string) bool {
		ls := st.LogicalSwitch[lsUUID]
		if ls == nil {
			return false
		}
		_, ok := ownedVNI(ls)
		return ok
	}
	wantBind := map[string]map[int]string{} // port -> vlan -> ls ref
	for _, n := range cfg.Networks {
		ref, ok := lsRef[n.VNI]
		if !ok || n.LocalInterface == "" {
			continue
		}
		port, vlan, err := ParseLocalInterface(n.LocalInterface)
		if err != nil {
			errf("vni %d: %w", n.VNI, err)
			continue
		}
		if wantBind[port] == nil {
			wantBind[port] = map[int]string{}
		}
		if _, dup := wantBind[port][vlan]; dup {
			errf("vni %d: %s already bound to another network", n.VNI, n.LocalInterface)
			continue
		}
		wantBind[port][vlan] = ref
	}
	for _, name := range sortedKeys(wantBind) {
		want := wantBind[name]
		pp := ports[name]
		if pp == nil {
			ref := ensureSwitch()
			add(ovsdb.InsertPhysicalPortOps(p.structOps, ref, &ovsdb.PhysicalPort{UUID: "port" + strconv.Itoa(len(p.structOps)), Name: name, VLANBindings: want}))
			continue
		}
		set := map[int]string{}
		var remove []int
		for _, vlan := range sortedKeys(pp.VLANBindings) {
			cur := pp.VLANBindings[vlan]
			if ref, ok := want[vlan]; ok {
				if cur != ref && !isOwned(cur) {
					errf("port %s vlan %d: bound to logical switch %s, which l2span does not own", name, vlan, cur)
					delete(want, vlan)
				}
				continue
			}
			if isOwned(cur) {
				remove = append(remove, vlan)
			}
		}
		for vlan, ref := range want {
			if pp.VLANBindings[vlan] != ref {
				set[vlan] = ref
			}
		}
		add(ovsdb.SetVLANBindingsOps(p.structOps, pp.UUID, set, remove))
	}
	for _, name := range sortedKeys(ports) {
		if _, done := wantBind[name]; done {
			continue
		}
		pp := ports[name]
		var remove []int
		for _, vlan := range sortedKeys(pp.VLANBindings) {
			if isOwned(pp.VLANBindings[vlan]) && !slices.ContainsFunc(unwanted, func(ls *ovsdb.LogicalSwitch) bool { return ls.UUID == pp.VLANBindings[vlan] }) {
				remove = append(remove, vlan)
			}
		}
		add(ovsdb.SetVLANBindingsOps(p.structOps, pp.UUID, nil, remove))
	}
	if ps == nil && len(cfg.Networks) > 0 {
		ensureSwitch()
	}

	// Flood lists (unknown-dst).
	structLoc := func(key string) string {
		if l := p.locs[key]; l != nil && l.uuid != "" {
			l.pinned = true
			return l.uuid
		}
		if idx, ok := p.locInsertIdx[key]; ok {
			return p.structOps[idx].UUIDName
		}
		name := "floc" + strconv.Itoa(len(p.structOps))
		before := len(p.structOps)
		add(ovsdb.InsertPhysicalLocatorOps(p.structOps, &ovsdb.PhysicalLocator{UUID: name, DstIP: key, EncapsulationType: vxlan}))
		if len(p.structOps) > before {
			p.locInsertIdx[key] = len(p.structOps) - 1
			p.locs[key] = &locState{pinned: true}
		}
		return name
	}
	setKeys := func(setUUID string) []string {
		s := st.PhysicalLocatorSet[setUUID]
		if s == nil {
			return nil
		}
		var keys []string
		for _, l := range s.Locators {
			keys = append(keys, keyOf(l))
		}
		slices.Sort(keys)
		return keys
	}
	mcastBySwitch := map[string][]*ovsdb.McastMacsRemote{}
	for _, uuid := range sortedKeys(st.McastMacsRemote) {
		r := st.McastMacsRemote[uuid]
		mcastBySwitch[r.LogicalSwitch] = append(mcastBySwitch[r.LogicalSwitch], r)
	}
	for _, n := range cfg.Networks {
		ref, ok := lsRef[n.VNI]
		if !ok {
			continue
		}
		var want []string
		for _, a := range n.Flood {
			if !a.IsValid() {
				errf("vni %d: invalid flood VTEP", n.VNI)
				continue
			}
			want = append(want, a.String())
		}
		slices.Sort(want)
		want = slices.Compact(want)
		var cur *ovsdb.McastMacsRemote
		for _, r := range mcastBySwitch[ref] {
			if r.MAC != unknownDst {
				add(ovsdb.DeleteMcastMacsRemoteOps(p.structOps, r.UUID)) // owned, never wanted
				continue
			}
			if cur == nil {
				cur = r
				continue
			}
			add(ovsdb.DeleteMcastMacsRemoteOps(p.structOps, r.UUID))
		}
		var have []string
		if cur != nil {
			have = setKeys(cur.LocatorSet)
		}
		if slices.Equal(have, want) && (cur != nil || len(want) == 0) {
			if cur != nil {
				keptSets[cur.LocatorSet] = true
			}
			continue
		}
		for _, k := range want {
			if !slices.Contains(have, k) {
				p.struct_.addedFlood++
			}
		}
		for _, k := range have {
			if !slices.Contains(want, k) {
				p.struct_.removedFlood++
			}
		}
		if len(want) == 0 {
			add(ovsdb.DeleteMcastMacsRemoteOps(p.structOps, cur.UUID))
			continue
		}
		setRef := ""
		for _, su := range sortedKeys(st.PhysicalLocatorSet) {
			if slices.Equal(setKeys(su), want) {
				setRef = su
				keptSets[su] = true
				break
			}
		}
		if setRef == "" {
			locRefs := make([]string, 0, len(want))
			for _, k := range want {
				locRefs = append(locRefs, structLoc(k))
			}
			setRef = "fset" + strconv.FormatUint(uint64(n.VNI), 10)
			add(ovsdb.InsertPhysicalLocatorSetOps(p.structOps, &ovsdb.PhysicalLocatorSet{UUID: setRef, Locators: locRefs}))
		}
		if cur == nil {
			add(ovsdb.InsertMcastMacsRemoteOps(p.structOps, &ovsdb.McastMacsRemote{MAC: unknownDst, LogicalSwitch: ref, LocatorSet: setRef}))
		} else {
			add(ovsdb.UpdateMcastMacsRemoteOps(p.structOps, &ovsdb.McastMacsRemote{UUID: cur.UUID, MAC: unknownDst, LocatorSet: setRef}))
		}
	}
	// Sets of switches we do not touch stay referenced, and so do those of
	// unwanted switches until their removal at the very end.
	for _, r := range st.McastMacsRemote {
		ls := st.LogicalSwitch[r.LogicalSwitch]
		if ls == nil {
			continue
		}
		if vni, ok := ownedVNI(ls); !ok || !wantVNI[vni] || owned[vni] == nil || owned[vni].UUID != ls.UUID {
			keptSets[r.LocatorSet] = true
		}
	}
	for su := range keptSets {
		if s := st.PhysicalLocatorSet[su]; s != nil {
			for _, l := range s.Locators {
				pinLoc(l)
			}
		}
	}

	// Unicast MACs.
	ucastBySwitch := map[string]map[string][]*ovsdb.UcastMacsRemote{}
	for _, r := range st.UcastMacsRemote {
		m := ucastBySwitch[r.LogicalSwitch]
		if m == nil {
			m = map[string][]*ovsdb.UcastMacsRemote{}
			ucastBySwitch[r.LogicalSwitch] = m
		}
		mac := normMAC(r.MAC)
		m[mac] = append(m[mac], r)
	}
	for _, n := range cfg.Networks {
		_, ok := lsRef[n.VNI]
		if !ok {
			continue
		}
		realLS := p.lsUUID[n.VNI]
		ips := neighborIPs(n)
		have := ucastBySwitch[realLS] // nil for a new switch
		wanted := map[string]bool{}
		for _, e := range n.MACs {
			if len(e.MAC) != 6 || !e.VTEP.IsValid() {
				errf("vni %d: bad MAC entry %s -> %s", n.VNI, e.MAC, e.VTEP)
				continue
			}
			mac := e.MAC.String()
			wanted[mac] = true
			w := macWrite{vni: n.VNI, ls: realLS, mac: mac, locator: e.VTEP.String(), ip: ips[mac]}
			if rows := have[mac]; len(rows) > 0 {
				slices.SortFunc(rows, func(a, b *ovsdb.UcastMacsRemote) int { return strings.Compare(a.UUID, b.UUID) })
				r := rows[0]
				if keyOf(r.Locator) == w.locator && r.Ipaddr == w.ip {
					continue
				}
				w.uuid, w.oldLocator, w.oldIP = r.UUID, keyOf(r.Locator), r.Ipaddr
			}
			p.macWrites = append(p.macWrites, w)
		}
		for _, mac := range sortedKeys(have) {
			rows := have[mac]
			start := 1
			if !wanted[mac] {
				start = 0
			}
			for _, r := range rows[start:] {
				p.macDeletes = append(p.macDeletes, macDelete{uuid: r.UUID, locator: keyOf(r.Locator), ip: r.Ipaddr})
			}
		}
	}

	// Unwanted switches: everything that refers to them goes in the same
	// transaction, the switch's own *_Macs_Local rows included.
	for _, ls := range unwanted {
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
		for _, u := range sortedKeys(st.UcastMacsLocal) {
			if st.UcastMacsLocal[u].LogicalSwitch == ls.UUID {
				del(ovsdb.DeleteUcastMacsLocalOps(ops, u))
			}
		}
		for _, u := range sortedKeys(st.McastMacsLocal) {
			if st.McastMacsLocal[u].LogicalSwitch == ls.UUID {
				del(ovsdb.DeleteMcastMacsLocalOps(ops, u))
			}
		}
		for _, rows := range ucastBySwitch[ls.UUID] {
			for _, row := range rows {
				del(ovsdb.DeleteUcastMacsRemoteOps(ops, row.UUID))
				r.macs++
				if row.Ipaddr != "" {
					r.neighbors++
				}
			}
		}
		for _, row := range mcastBySwitch[ls.UUID] {
			del(ovsdb.DeleteMcastMacsRemoteOps(ops, row.UUID))
			if row.MAC == unknownDst {
				r.flood += len(setKeys(row.LocatorSet))
			}
		}
		for _, pu := range sortedKeys(st.PhysicalPort) {
			pp := st.PhysicalPort[pu]
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
			errf("remove logical switch %s: %w", ls.Name, err)
			continue
		}
		r.ops = ops
		p.removals = append(p.removals, r)
	}
	return p
}

// neighborIPs picks, per MAC, the lowest IPv4 address Neighbors bind to
// it.
func neighborIPs(n vtep.Network) map[string]string {
	out := map[string]string{}
	for _, nb := range n.Neighbors { // sorted by IP (Normalize)
		if !nb.IP.Unmap().Is4() || len(nb.MAC) != 6 {
			continue
		}
		mac := nb.MAC.String()
		if _, ok := out[mac]; !ok {
			out[mac] = nb.IP.Unmap().String()
		}
	}
	return out
}
