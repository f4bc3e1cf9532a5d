// Package linux is the kernel VXLAN backend of vtep.Dataplane: per network a
// bridge "<prefix>b<VNI>" joining a VXLAN device "<prefix>v<VNI>" to the
// pod-local interface, static FDB entries MAC -> remote VTEP, all-zero-MAC
// flood entries, and neighbor entries on the bridge for ARP/ND suppression.
//
// Ownership: the backend owns the devices whose names match its prefix
// pattern and whose kind matches (bridge / vxlan), and, on those devices,
// the FDB and neighbor entries flagged NTF_EXT_LEARNED (which it sets on
// everything it writes). It removes only owned things it no longer wants;
// kernel-learned or hand-added entries and other devices are left alone.
// Interfaces it enslaved are released, never deleted.
package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/vtep"
)

// DefaultPort is the IANA VXLAN UDP port. (The kernel's default, used when
// no port is given, is the legacy 8472.)
const DefaultPort = 4789

// DefaultPrefix starts the names of the devices the backend owns.
const DefaultPrefix = "l2s"

// maxVNI is the largest 24-bit VNI.
const maxVNI = 1<<24 - 1

// Options configure a Backend.
type Options struct {
	// NetnsPath is the network namespace to program (e.g.
	// /run/netns/NAME); empty means the namespace of the caller.
	NetnsPath string
	// LocalVTEP is this gateway's tunnel source address.
	LocalVTEP netip.Addr
	// UnderlayDev is the device VXLAN packets leave by; empty lets the
	// routing table decide.
	UnderlayDev string
	// Port is the VXLAN UDP port; 0 means DefaultPort.
	Port uint16
	// MTU of the bridges and VXLAN devices; 0 keeps the kernel's choice.
	MTU int
	// Prefix of owned device names; "" means DefaultPrefix. At most 6
	// characters, so "<prefix>b<VNI>" fits in 15.
	Prefix string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Pod makes the gateway a tunnel endpoint of its pod's own mesh
	// (podside.go); zero means no pod side.
	Pod PodOptions
}

func (o Options) withDefaults() (Options, error) {
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.Prefix) > 6 {
		return o, fmt.Errorf("prefix %q: longer than 6 characters", o.Prefix)
	}
	if strings.ContainsAny(o.Prefix, "/ \t\n:") {
		return o, fmt.Errorf("prefix %q: not a valid device name prefix", o.Prefix)
	}
	if !o.LocalVTEP.IsValid() {
		return o, errors.New("local vtep: not set")
	}
	if o.MTU < 0 {
		return o, fmt.Errorf("mtu %d: negative", o.MTU)
	}
	var err error
	o.Pod, err = o.Pod.withDefaults(o.UnderlayDev)
	return o, err
}

// Backend programs one network namespace. It is safe for concurrent use;
// Set calls are serialized.
type Backend struct {
	opts  Options
	log   *slog.Logger
	k     kernel
	close func() error

	mu sync.Mutex
}

var _ vtep.Dataplane = (*Backend)(nil)

// New opens one persistent netlink handle (and one batching netlink socket)
// in the namespace; Close releases them.
func New(opts Options) (*Backend, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	k, err := openNetlink(opts.NetnsPath)
	if err != nil {
		return nil, err
	}
	b := newBackend(opts, k)
	b.close = k.Close
	return b, nil
}

func newBackend(opts Options, k kernel) *Backend {
	return &Backend{opts: opts, log: opts.Logger, k: k}
}

// Close releases the netlink sockets; it never removes programmed state.
func (b *Backend) Close() error {
	if b.close == nil {
		return nil
	}
	err := b.close()
	b.close = nil
	return err
}

// BridgeName is the name of the bridge of vni.
func (b *Backend) BridgeName(vni uint32) string {
	return b.opts.Prefix + "b" + strconv.FormatUint(uint64(vni), 10)
}

// VXLANName is the name of the VXLAN device of vni.
func (b *Backend) VXLANName(vni uint32) string {
	return b.opts.Prefix + "v" + strconv.FormatUint(uint64(vni), 10)
}

// owned parses the name of an owned device: its VNI and whether it is the
// bridge (else the VXLAN device). The kind must match too.
func (b *Backend) owned(l kLink) (vni uint32, bridge, ok bool) {
	rest, found := strings.CutPrefix(l.Name, b.opts.Prefix)
	if !found || len(rest) < 2 {
		return 0, false, false
	}
	switch {
	case rest[0] == 'b' && l.Kind == "bridge":
		bridge = true
	case (rest[0] == 'v' || rest[0] == 'p') && l.Kind == "vxlan": // overlay or pod side
	default:
		return 0, false, false
	}
	digits := rest[1:]
	if digits[0] == '0' {
		return 0, false, false // not canonical: not ours
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || v > maxVNI {
		return 0, false, false
	}
	return uint32(v), bridge, true
}

// errList gathers errors, keeping the first few in full and counting the
// rest, so 100,000 failures do not make a 100,000-line error.
type errList struct {
	errs    []error
	dropped int
}

const maxErrs = 20

func (e *errList) add(err error) {
	if err == nil {
		return
	}
	if len(e.errs) >= maxErrs {
		e.dropped++
		return
	}
	e.errs = append(e.errs, err)
}

func (e *errList) err() error {
	if e.dropped > 0 {
		return errors.Join(append(e.errs, fmt.Errorf("and %d more errors", e.dropped))...)
	}
	return errors.Join(e.errs...)
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Set makes the namespace hold exactly cfg for the networks this backend
// owns. It reads the devices and entries back from the kernel, writes only
// the differences, applies as much as it can, and returns every error
// joined with the counts of what really changed.
func (b *Backend) Set(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set(ctx, b.k, cfg)
}

// set is Set over kernel k; the caller holds b.mu.
func (b *Backend) set(ctx context.Context, k kernel, cfg vtep.Config) (vtep.Result, error) {
	saved := b.k
	b.k = k
	defer func() { b.k = saved }()
	var res vtep.Result
	var errs errList

	cfg = cfg.Normalize()
	want := make(map[uint32]vtep.Network, len(cfg.Networks))
	nets := make([]vtep.Network, 0, len(cfg.Networks))
	locals := map[string]uint32{}
	for _, n := range cfg.Networks {
		if n.VNI == 0 || n.VNI > maxVNI {
			errs.add(fmt.Errorf("network vni %d: out of range 1-%d", n.VNI, maxVNI))
			continue
		}
		if _, dup := want[n.VNI]; dup {
			errs.add(fmt.Errorf("network vni %d: listed twice", n.VNI))
			continue
		}
		n = b.podSideLocal(n, &errs)
		if n.LocalInterface != "" {
			if other, dup := locals[n.LocalInterface]; dup {
				errs.add(fmt.Errorf("network vni %d: local interface %s already used by vni %d", n.VNI, n.LocalInterface, other))
				n.LocalInterface = ""
			} else {
				locals[n.LocalInterface] = n.VNI
			}
		}
		want[n.VNI] = n
		nets = append(nets, n)
	}

	links, err := b.k.Links()
	if err != nil {
		return res, fmt.Errorf("list links: %w", err)
	}
	slices.SortFunc(links, func(a, b kLink) int { return strings.Compare(a.Name, b.Name) })
	byName := make(map[string]kLink, len(links))
	for _, l := range links {
		byName[l.Name] = l
	}

	// Remove networks no longer wanted: release their ports, delete their
	// devices. This runs first so that their local interfaces are free.
	removed := map[uint32]bool{}
	for _, l := range links {
		vni, isBridge, ok := b.owned(l)
		if !ok {
			continue
		}
		if _, keep := want[vni]; keep {
			continue
		}
		if isBridge {
			for _, p := range links {
				if p.Master == l.Name && p.Name != b.VXLANName(vni) {
					if err := b.k.SetMaster(p.Name, ""); err != nil {
						errs.add(fmt.Errorf("release %s from %s: %w", p.Name, l.Name, err))
					} else {
						b.log.Info("released interface", "dev", p.Name, "bridge", l.Name)
					}
				}
			}
		}
		if err := b.k.DelLink(l.Name); err != nil {
			errs.add(fmt.Errorf("delete %s: %w", l.Name, err))
			continue
		}
		b.log.Info("deleted device", "dev", l.Name, "vni", vni)
		removed[vni] = true
	}
	res.Removed.Networks = len(removed)

	for _, n := range nets {
		if err := ctx.Err(); err != nil {
			errs.add(err)
			break
		}
		b.ensurePodSide(n, byName, &errs)
		ok, created := b.ensureDevices(n, links, byName, locals, &errs)
		if created {
			res.Added.Networks++
		}
		if !ok {
			continue
		}
		b.syncFDB(n, &res, &errs)
		b.syncPodSide(n, &res, &errs)
		b.syncNeighs(n, &res, &errs)
	}
	b.syncVIP(k, slices.ContainsFunc(nets, func(n vtep.Network) bool { return n.PodSide != nil }), &errs)
	return res, errs.err()
}

// ensureDevices makes the bridge and VXLAN device of n exist with the right
// attributes, the VXLAN device and the local interface enslaved and all up.
// ok says the devices exist, so entries can be programmed.
func (b *Backend) ensureDevices(n vtep.Network, links []kLink, byName map[string]kLink, locals map[string]uint32, errs *errList) (ok, created bool) {
	brName, vxName := b.BridgeName(n.VNI), b.VXLANName(n.VNI)
	br, exists := byName[brName]
	switch {
	case !exists:
		if err := b.k.AddBridge(brName, b.opts.MTU); err != nil {
			errs.add(fmt.Errorf("add bridge %s: %w", brName, err))
			return false, false
		}
		b.log.Info("created bridge", "dev", brName, "vni", n.VNI)
		br = kLink{Name: brName, Kind: "bridge", MTU: b.opts.MTU}
		created = true
	case br.Kind != "bridge":
		errs.add(fmt.Errorf("network vni %d: device %s exists and is a %s, not a bridge", n.VNI, brName, br.Kind))
		return false, false
	}

	wantVX := vxlanAttrs{VNI: n.VNI, Local: b.opts.LocalVTEP, Underlay: b.opts.UnderlayDev, Port: b.opts.Port, Learning: n.Learn}
	vx, exists := byName[vxName]
	if exists && vx.Kind != "vxlan" {
		errs.add(fmt.Errorf("network vni %d: device %s exists and is a %s, not vxlan", n.VNI, vxName, vx.Kind))
		return false, created
	}
	if exists && (vx.VXLAN == nil || *vx.VXLAN != wantVX) {
		b.log.Info("recreating vxlan device with new attributes", "dev", vxName, "have", fmt.Sprint(vx.VXLAN), "want", fmt.Sprint(wantVX))
		if err := b.k.DelLink(vxName); err != nil {
			errs.add(fmt.Errorf("delete %s to recreate it: %w", vxName, err))
			return false, created
		}
		exists = false
	}
	if !exists {
		if err := b.k.AddVXLAN(vxName, wantVX, b.opts.MTU); err != nil {
			errs.add(fmt.Errorf("add vxlan %s: %w", vxName, err))
			return false, created
		}
		b.log.Info("created vxlan device", "dev", vxName, "vni", n.VNI, "local", b.opts.LocalVTEP, "port", b.opts.Port)
		vx = kLink{Name: vxName, Kind: "vxlan", MTU: b.opts.MTU, VXLAN: &wantVX}
	}
	ok = true
	if b.opts.MTU > 0 {
		for _, l := range []kLink{br, vx} {
			if l.MTU != b.opts.MTU {
				if err := b.k.SetMTU(l.Name, b.opts.MTU); err != nil {
					errs.add(fmt.Errorf("set mtu %d on %s: %w", b.opts.MTU, l.Name, err))
				}
			}
		}
	}
	if vx.Master != brName {
		if err := b.k.SetMaster(vxName, brName); err != nil {
			errs.add(fmt.Errorf("enslave %s to %s: %w", vxName, brName, err))
			ok = false
		}
	}
	if ok {
		learning, suppress, err := b.k.PortFlags(vxName)
		if err != nil {
			errs.add(fmt.Errorf("read port flags of %s: %w", vxName, err))
		}
		if err != nil || learning != n.Learn || !suppress {
			if err := b.k.SetPortFlags(vxName, n.Learn, true); err != nil {
				errs.add(fmt.Errorf("set learning %v neigh_suppress on on %s: %w", n.Learn, vxName, err))
			}
		}
	}
	for _, l := range []kLink{br, vx} {
		if !l.Up {
			if err := b.k.SetUp(l.Name); err != nil {
				errs.add(fmt.Errorf("set %s up: %w", l.Name, err))
			}
		}
	}

	// Release whatever else sits in the bridge, unless another network
	// wants it (it moves there when that network is synced).
	for _, p := range links {
		if p.Master == brName && p.Name != vxName && p.Name != n.LocalInterface {
			if _, elsewhere := locals[p.Name]; elsewhere {
				continue
			}
			if err := b.k.SetMaster(p.Name, ""); err != nil {
				errs.add(fmt.Errorf("release %s from %s: %w", p.Name, brName, err))
			} else {
				b.log.Info("released interface", "dev", p.Name, "bridge", brName)
			}
		}
	}
	if n.LocalInterface != "" {
		li, exists := byName[n.LocalInterface]
		switch {
		case !exists:
			errs.add(fmt.Errorf("network vni %d: local interface %s: not found", n.VNI, n.LocalInterface))
		default:
			if li.Master != brName {
				if err := b.k.SetMaster(li.Name, brName); err != nil {
					errs.add(fmt.Errorf("enslave %s to %s: %w", li.Name, brName, err))
				} else {
					b.log.Info("attached interface", "dev", li.Name, "bridge", brName)
				}
			}
			if !li.Up {
				if err := b.k.SetUp(li.Name); err != nil {
					errs.add(fmt.Errorf("set %s up: %w", li.Name, err))
				}
			}
		}
	}
	return ok, created
}

func macKey(m net.HardwareAddr) string { return string(m) }

// syncFDB diffs the FDB of n's VXLAN device. For each wanted MAC it wants
// a self entry MAC -> VTEP and a master entry (bridge -> VXLAN port); for
// each flood VTEP an all-zero-MAC self entry. Owned entries not wanted are
// deleted; anything not owned is left alone unless it is in the way of a
// wanted entry, which then replaces it.
func (b *Backend) syncFDB(n vtep.Network, res *vtep.Result, errs *errList) {
	b.syncDevFDB(b.VXLANName(n.VNI), n.VNI, n.MACs, n.Flood, res, errs)
}

// syncDevFDB is syncFDB for the VXLAN device dev of network vni.
func (b *Backend) syncDevFDB(dev string, vni uint32, macs []vtep.MACEntry, flood []netip.Addr, res *vtep.Result, errs *errList) {
	have, err := b.k.FDB(dev)
	if err != nil {
		errs.add(fmt.Errorf("list fdb of %s: %w", dev, err))
		return
	}
	type selfKey struct {
		mac  string
		vtep netip.Addr
	}
	haveSelf := map[selfKey]fdbEntry{}
	haveMaster := map[string]fdbEntry{}
	for _, e := range have {
		if e.Master {
			haveMaster[macKey(e.MAC)] = e
		} else {
			haveSelf[selfKey{macKey(e.MAC), e.VTEP}] = e
		}
	}

	var adds []fdbEntry
	var addKind []int // index into counters: MAC index or -1 for flood
	wantSelf := map[selfKey]bool{}
	wantMaster := map[string]bool{}
	for i, m := range macs {
		if len(m.MAC) != 6 || macaddr.IsZero(m.MAC) || !m.VTEP.IsValid() {
			errs.add(fmt.Errorf("network vni %d: mac entry %s -> %s: invalid", vni, m.MAC, m.VTEP))
			continue
		}
		vt := m.VTEP.Unmap()
		k := selfKey{macKey(m.MAC), vt}
		wantSelf[k] = true
		wantMaster[k.mac] = true
		if e, ok := haveSelf[k]; !ok || !e.Owned {
			adds = append(adds, fdbEntry{MAC: m.MAC, VTEP: vt, Owned: true})
			addKind = append(addKind, i)
		}
		if e, ok := haveMaster[k.mac]; !ok || !e.Owned {
			adds = append(adds, fdbEntry{MAC: m.MAC, Master: true, Owned: true})
			addKind = append(addKind, i)
		}
	}
	for _, f := range flood {
		if !f.IsValid() {
			continue
		}
		f = f.Unmap()
		k := selfKey{macKey(zeroMAC), f}
		wantSelf[k] = true
		if _, ok := haveSelf[k]; !ok {
			adds = append(adds, fdbEntry{MAC: zeroMAC, VTEP: f, Owned: true, Append: true})
			addKind = append(addKind, -1)
		}
	}

	// Deletes first, so a MAC that moved to another VTEP is replaced, and
	// flood lists shrink before they grow.
	var dels []fdbEntry
	for k, e := range haveSelf {
		if !e.Owned || wantSelf[k] {
			continue
		}
		if k.mac != macKey(zeroMAC) && wantMaster[k.mac] {
			continue // the wanted entry for this MAC replaces it
		}
		dels = append(dels, e)
	}
	for k, e := range haveMaster {
		if e.Owned && !wantMaster[k] {
			dels = append(dels, e)
		}
	}
	if len(dels) > 0 {
		slices.SortFunc(dels, func(a, b fdbEntry) int {
			if a.Master != b.Master {
				if a.Master {
					return 1
				}
				return -1
			}
			if c := bytes.Compare(a.MAC, b.MAC); c != 0 {
				return c
			}
			return a.VTEP.Compare(b.VTEP)
		})
		delErrs := b.k.DelFDB(dev, dels)
		for i, e := range dels {
			if err := delErrs[i]; err != nil {
				errs.add(fmt.Errorf("delete fdb %s on %s: %w", describeFDB(e), dev, err))
				continue
			}
			switch {
			case e.Master:
			case macaddr.IsZero(e.MAC):
				res.Removed.Flood++
			default:
				res.Removed.MACs++
			}
		}
	}
	if len(adds) > 0 {
		addErrs := b.k.AddFDB(dev, adds)
		added := map[int]bool{}
		for i, e := range adds {
			if err := addErrs[i]; err != nil {
				errs.add(fmt.Errorf("add fdb %s on %s: %w", describeFDB(e), dev, err))
				continue
			}
			if addKind[i] < 0 {
				res.Added.Flood++
			} else if !added[addKind[i]] {
				added[addKind[i]] = true
				res.Added.MACs++
			}
		}
	}
}

func describeFDB(e fdbEntry) string {
	if e.Master {
		return e.MAC.String() + " master"
	}
	return e.MAC.String() + " dst " + e.VTEP.String()
}

// syncNeighs diffs the neighbor entries on n's bridge.
func (b *Backend) syncNeighs(n vtep.Network, res *vtep.Result, errs *errList) {
	dev := b.BridgeName(n.VNI)
	have, err := b.k.Neighs(dev)
	if err != nil {
		errs.add(fmt.Errorf("list neighbors of %s: %w", dev, err))
		return
	}
	haveBy := make(map[netip.Addr]neighEntry, len(have))
	for _, e := range have {
		haveBy[e.IP] = e
	}
	wantBy := make(map[netip.Addr]bool, len(n.Neighbors))
	var adds []neighEntry
	for _, nb := range n.Neighbors {
		ip := nb.IP.Unmap()
		if !ip.IsValid() || len(nb.MAC) != 6 {
			errs.add(fmt.Errorf("network vni %d: neighbor %s -> %s: invalid", n.VNI, nb.IP, nb.MAC))
			continue
		}
		if wantBy[ip] {
			continue
		}
		wantBy[ip] = true
		e, ok := haveBy[ip]
		if ok && e.Owned && e.Permanent && bytes.Equal(e.MAC, nb.MAC) {
			continue
		}
		adds = append(adds, neighEntry{IP: ip, MAC: nb.MAC, Owned: true, Permanent: true})
	}
	var dels []neighEntry
	for _, e := range have {
		if e.Owned && !wantBy[e.IP] {
			dels = append(dels, e)
		}
	}
	if len(dels) > 0 {
		delErrs := b.k.DelNeighs(dev, dels)
		for i, e := range dels {
			if err := delErrs[i]; err != nil {
				errs.add(fmt.Errorf("delete neighbor %s on %s: %w", e.IP, dev, err))
				continue
			}
			res.Removed.Neighbors++
		}
	}
	if len(adds) > 0 {
		addErrs := b.k.AddNeighs(dev, adds)
		for i, e := range adds {
			if err := addErrs[i]; err != nil {
				errs.add(fmt.Errorf("add neighbor %s lladdr %s on %s: %w", e.IP, e.MAC, dev, err))
				continue
			}
			res.Added.Neighbors++
		}
	}
}
