package hwvtep

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// plan is what one Set will write, computed from a cache snapshot. It is a
// pure function of (state, options, config), tested without a server, and
// apply only reads it.
type plan struct {
	errs []error

	// structOps is the structure transaction: Global, Physical_Switch,
	// Physical_Ports and their bindings, Logical_Switches, flood lists.
	structOps    []lo.Operation
	lsInsertIdx  map[uint32]int    // VNI -> index of its insert in structOps
	lsUUID       map[uint32]string // VNI -> real UUID of its existing Logical_Switch
	locs         map[string]*locState
	locInsertIdx map[string]int // locator key -> index of insert in structOps
	// structResult is what the structure transaction adds and removes.
	structResult vtep.Result

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

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// makePlan diffs cfg (normalised) against the snapshot st, one table after
// the other in the order the structure transaction needs them: a later
// step refers to the rows an earlier one inserted.
func makePlan(st *ovsdb.State, opts Options, cfg vtep.Config) *plan {
	pl := newPlanner(st, opts, cfg)
	pl.indexLocators()
	pl.selectOwnedSwitches()
	pl.findPhysicalSwitch()
	pl.planLogicalSwitches()
	pl.planVLANBindings()
	if pl.ps == nil && len(cfg.Networks) > 0 {
		pl.ensurePhysicalSwitch()
	}
	pl.planFloodLists()
	pl.pinKeptLocators()
	pl.planUcastMacs()
	pl.planRemovals()
	return pl.p
}

// planner holds what the steps of makePlan share: the snapshot, the
// config, the plan being built, and the decisions of earlier steps.
type planner struct {
	st   *ovsdb.State
	opts Options
	cfg  vtep.Config
	p    *plan

	// keptSets are the locator sets still referenced after the structure
	// transaction; their locators must not be counted as collected.
	keptSets map[string]bool
	// owned is the wanted owned switch of each VNI; unwanted are the
	// owned switches to delete (not wanted, or duplicates).
	owned    map[uint32]*ovsdb.LogicalSwitch
	unwanted []*ovsdb.LogicalSwitch
	wantVNI  map[uint32]bool
	lsByName map[string]*ovsdb.LogicalSwitch
	// lsRef is the real or named UUID of each planned switch.
	lsRef map[uint32]string
	// ps is the configured Physical_Switch (nil when missing), psRef its
	// real or named UUID ("" until made), ports its ports by name.
	ps    *ovsdb.PhysicalSwitch
	psRef string
	ports map[string]*ovsdb.PhysicalPort

	mcastBySwitch map[string][]*ovsdb.McastMacsRemote            // sorted by UUID
	ucastBySwitch map[string]map[string][]*ovsdb.UcastMacsRemote // switch -> MAC -> rows sorted by UUID
}

func newPlanner(st *ovsdb.State, opts Options, cfg vtep.Config) *planner {
	pl := &planner{
		st: st, opts: opts, cfg: cfg,
		p: &plan{
			lsInsertIdx:  map[uint32]int{},
			lsUUID:       map[uint32]string{},
			locs:         map[string]*locState{},
			locInsertIdx: map[string]int{},
		},
		keptSets:      map[string]bool{},
		owned:         map[uint32]*ovsdb.LogicalSwitch{},
		wantVNI:       map[uint32]bool{},
		lsByName:      map[string]*ovsdb.LogicalSwitch{},
		lsRef:         map[uint32]string{},
		ports:         map[string]*ovsdb.PhysicalPort{},
		mcastBySwitch: map[string][]*ovsdb.McastMacsRemote{},
		ucastBySwitch: map[string]map[string][]*ovsdb.UcastMacsRemote{},
	}
	for _, n := range cfg.Networks {
		pl.wantVNI[n.VNI] = true
	}
	for _, ls := range st.LogicalSwitch {
		pl.lsByName[ls.Name] = ls
	}
	for _, uuid := range sortedKeys(st.McastMacsRemote) {
		r := st.McastMacsRemote[uuid]
		pl.mcastBySwitch[r.LogicalSwitch] = append(pl.mcastBySwitch[r.LogicalSwitch], r)
	}
	for _, r := range st.UcastMacsRemote {
		m := pl.ucastBySwitch[r.LogicalSwitch]
		if m == nil {
			m = map[string][]*ovsdb.UcastMacsRemote{}
			pl.ucastBySwitch[r.LogicalSwitch] = m
		}
		mac := macaddr.Canonical(r.MAC)
		m[mac] = append(m[mac], r)
	}
	for _, byMAC := range pl.ucastBySwitch {
		for _, rows := range byMAC {
			if len(rows) > 1 {
				slices.SortFunc(rows, func(a, b *ovsdb.UcastMacsRemote) int { return strings.Compare(a.UUID, b.UUID) })
			}
		}
	}
	return pl
}

func (pl *planner) errf(format string, args ...any) {
	pl.p.errs = append(pl.p.errs, fmt.Errorf(format, args...))
}

// add takes the structure transaction an ovsdb builder returned.
func (pl *planner) add(ops []lo.Operation, err error) {
	if err != nil {
		pl.p.errs = append(pl.p.errs, err)
		return
	}
	pl.p.structOps = ops
}

// keyOf is the locator key of the Physical_Locator locUUID.
func (pl *planner) keyOf(locUUID string) string { return locKey(pl.st.PhysicalLocator[locUUID]) }

func (pl *planner) pinLoc(locUUID string) {
	if l := pl.p.locs[pl.keyOf(locUUID)]; l != nil {
		l.pinned = true
	}
}

// isOwned says whether lsUUID is a Logical_Switch the backend owns.
func (pl *planner) isOwned(lsUUID string) bool {
	ls := pl.st.LogicalSwitch[lsUUID]
	if ls == nil {
		return false
	}
	_, ok := ownedVNI(ls)
	return ok
}

// indexLocators records the Physical_Locators as they are now (one per
// key), how many Ucast_Macs_Remote rows refer to each, and which are kept
// alive by the switch's own rows (Ucast_Macs_Local, and the locator sets
// of Mcast_Macs_Local).
func (pl *planner) indexLocators() {
	for _, uuid := range sortedKeys(pl.st.PhysicalLocator) {
		if k := locKey(pl.st.PhysicalLocator[uuid]); k != "" {
			if _, dup := pl.p.locs[k]; !dup {
				pl.p.locs[k] = &locState{uuid: uuid}
			}
		}
	}
	for _, r := range pl.st.UcastMacsRemote {
		if l := pl.p.locs[pl.keyOf(r.Locator)]; l != nil {
			l.refs++
		}
	}
	for _, r := range pl.st.UcastMacsLocal {
		pl.pinLoc(r.Locator)
	}
	for _, r := range pl.st.McastMacsLocal {
		pl.keptSets[r.LocatorSet] = true
	}
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
