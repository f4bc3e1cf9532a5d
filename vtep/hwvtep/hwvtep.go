// Package hwvtep is the hardware_vtep backend of vtep.Dataplane: it drives
// a switch (or OVS's VTEP emulator) through its OVSDB hardware_vtep
// database.
//
// For each vtep.Network it keeps:
//   - a Logical_Switch named "l2s-<VNI>" with tunnel_key = VNI and
//     other_config:l2span-vni = "<VNI>";
//   - if LocalInterface is set, a binding on a Physical_Port of the
//     configured Physical_Switch: LocalInterface is "PORT" (VLAN 0) or
//     "PORT:VLAN", and the backend sets Physical_Port[PORT].vlan_bindings
//     [VLAN] = the Logical_Switch;
//   - one Ucast_Macs_Remote per remote MAC, pointing at the
//     Physical_Locator (vxlan_over_ipv4, dst_ip = VTEP) of its VTEP; its
//     ipaddr is the lowest IPv4 address Neighbors bind to that MAC (the
//     schema has one ipaddr per row and hardware VTEPs answer ARP only;
//     IPv6 and further IPv4 neighbors are not written);
//   - one Mcast_Macs_Remote "unknown-dst" whose Physical_Locator_Set holds
//     the Flood VTEPs (head-end replication). Locator sets are immutable,
//     so a changed flood list gets a new set (an existing identical set is
//     reused); the old one disappears when nothing refers to it.
//
// Learn has no meaning here: a hardware VTEP always learns local MACs.
//
// Ownership: the backend owns the Logical_Switches that carry
// other_config:l2span-vni, and with them every Ucast_Macs_Remote and
// Mcast_Macs_Remote in those switches and every vlan_binding that points
// at them. Owned rows that are not wanted are deleted; everything else
// (other switches, other bindings, the switch's own Ucast/Mcast_Macs_Local)
// is left alone, except that deleting an owned Logical_Switch first
// deletes the *_Macs_Local rows in it, which would otherwise block the
// delete. Physical_Locators and Physical_Locator_Sets are not root rows:
// they are never deleted explicitly, the database drops them when the last
// reference goes. Locators are shared, whoever made them (the index on
// (encapsulation_type, dst_ip, tunnel_key) forbids duplicates).
//
// If the database has no Global row (a fresh database), no
// Physical_Switch with the configured name, or no Physical_Port named by
// a LocalInterface, the backend creates them (with the switch's
// tunnel_ips = TunnelIP) and never deletes them: they belong to the switch.
//
// Writes are planned against the client's monitor cache and committed in
// transactions of at most BatchSize rows; a Set that finds nothing to
// change sends no transaction. After a reconnect (e.g. an ovsdb-server
// restart) the cache is the server's fresh snapshot, so the next Set
// repairs whatever differs, without duplicates.
package hwvtep

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// OwnerKey is the Logical_Switch other_config key that marks the switches
// this backend owns; its value is the VNI.
const OwnerKey = "l2span-vni"

// NamePrefix starts the names of owned Logical_Switches ("l2s-<VNI>").
const NamePrefix = "l2s-"

// DefaultBatchSize is the number of rows written per transaction.
const DefaultBatchSize = 1000

// DefaultPipelineDepth is how many independent MAC batches may be in
// flight at once.
const DefaultPipelineDepth = 2

// barrierTimeout bounds the wait for the cache before a plan: a server
// that stopped answering must not hold Set up for its whole deadline.
const barrierTimeout = 5 * time.Second

const (
	maxVNI     = 1<<24 - 1
	unknownDst = "unknown-dst"
	vxlan      = "vxlan_over_ipv4"
)

// Options configure a Backend.
type Options struct {
	// Endpoint of the switch's OVSDB server: unix:PATH, tcp:HOST:PORT or
	// ssl:HOST:PORT.
	Endpoint string
	// TLS for ssl: endpoints (client certificate and CA).
	TLS *tls.Config
	// PhysicalSwitch is the name of the switch's Physical_Switch row.
	PhysicalSwitch string
	// TunnelIP is the switch's VTEP address; written to tunnel_ips only
	// when the backend has to create the Physical_Switch.
	TunnelIP netip.Addr
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// BatchSize is the number of rows per transaction; 0 means
	// DefaultBatchSize.
	BatchSize int
	// PipelineDepth is how many independent MAC batches may be in flight
	// at once; 0 means DefaultPipelineDepth, 1 sends one at a time.
	PipelineDepth int
}

// Backend implements vtep.Dataplane over hardware_vtep.
type Backend struct {
	opts Options
	log  *slog.Logger
	cli  *ovsdb.Client

	setMu   sync.Mutex
	txns    atomic.Uint64
	changes chan struct{}
}

var _ vtep.Dataplane = (*Backend)(nil)

// New connects to the switch's database and waits for the first snapshot
// (until ctx ends). The connection is repaired in the background.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.PhysicalSwitch == "" {
		return nil, errors.New("hwvtep: PhysicalSwitch is required")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.PipelineDepth <= 0 {
		opts.PipelineDepth = DefaultPipelineDepth
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{opts: opts, log: log.With("backend", "hwvtep", "switch", opts.PhysicalSwitch), changes: make(chan struct{}, 1)}
	cli, err := ovsdb.Connect(ctx, ovsdb.ClientOptions{
		Endpoint: opts.Endpoint,
		TLS:      opts.TLS,
		Logger:   b.log,
		OnChange: func(tables []string) {
			if slices.Contains(tables, ovsdb.UcastMacsLocalTable) || slices.Contains(tables, ovsdb.LogicalSwitchTable) {
				select {
				case b.changes <- struct{}{}:
				default:
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("hwvtep: %w", err)
	}
	b.cli = cli
	return b, nil
}

// Close closes the connection; programmed state stays.
func (b *Backend) Close() error {
	return b.cli.Close()
}

// Transactions is the number of write transactions sent so far.
func (b *Backend) Transactions() uint64 { return b.txns.Load() }

// LocalMACsChanged is signalled (coalesced, never blocking the backend)
// when Ucast_Macs_Local or the set of owned switches may have changed,
// including after a reconnect; call LocalMACs then.
func (b *Backend) LocalMACsChanged() <-chan struct{} { return b.changes }

// LocalMACs returns the MACs the switch learned locally in owned Logical
// Switches, sorted by VNI and MAC.
func (b *Backend) LocalMACs() []vtep.LocalMAC {
	var out []vtep.LocalMAC
	b.cli.Read(func(st *ovsdb.State) {
		for _, r := range st.UcastMacsLocal {
			ls := st.LogicalSwitch[r.LogicalSwitch]
			if ls == nil {
				continue
			}
			vni, ok := ownedVNI(ls)
			if !ok {
				continue
			}
			mac, err := net.ParseMAC(r.MAC)
			if err != nil {
				continue
			}
			m := vtep.LocalMAC{VNI: vni, MAC: mac}
			if ip, err := netip.ParseAddr(r.Ipaddr); err == nil {
				m.IP = ip
			}
			if loc := st.PhysicalLocator[r.Locator]; loc != nil {
				if ip, err := netip.ParseAddr(loc.DstIP); err == nil {
					m.Locator = ip
				}
			}
			out = append(out, m)
		}
	})
	slices.SortFunc(out, func(a, b vtep.LocalMAC) int {
		if a.VNI != b.VNI {
			return int(int64(a.VNI) - int64(b.VNI))
		}
		return slices.Compare(a.MAC, b.MAC)
	})
	return out
}

func ownedVNI(ls *ovsdb.LogicalSwitch) (uint32, bool) {
	v, ok := ls.OtherConfig[OwnerKey]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > maxVNI {
		return 0, false
	}
	return uint32(n), true
}

// ParseLocalInterface splits "PORT" or "PORT:VLAN" (VLAN 0-4095; none
// means 0).
func ParseLocalInterface(s string) (port string, vlan int, err error) {
	port, v, found := strings.Cut(s, ":")
	if port == "" {
		return "", 0, fmt.Errorf("local interface %q: empty port name", s)
	}
	if !found {
		return port, 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 4095 {
		return "", 0, fmt.Errorf("local interface %q: VLAN must be 0-4095", s)
	}
	return port, n, nil
}

// Set makes the owned part of the database hold exactly cfg.
func (b *Backend) Set(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	connected := b.cli.Connected()
	p := b.plan(ctx, cfg)
	if !connected && p.writes() {
		// The switch is away and the plan comes from the last state seen,
		// which may miss what the switch committed before the connection
		// broke: wait for it and plan again from what it holds.
		if err := b.cli.Barrier(ctx); err != nil {
			err = fmt.Errorf("wait for the switch database: %w", err)
			b.log.Warn("set incomplete", "err", err)
			return vtep.Result{}, err
		}
		p = b.plan(ctx, cfg)
	}
	res, err := b.apply(ctx, p, b.transact, true)
	if err != nil {
		b.log.Warn("set incomplete", "err", err)
	}
	return res, err
}

// plan diffs cfg against the cache; the caller holds setMu. While the
// server is reachable the cache is first brought up to every change
// committed before the call (by the switch or anyone else); while it is
// not, the plan is made from the last state seen.
func (b *Backend) plan(ctx context.Context, cfg vtep.Config) *plan {
	if b.cli.Connected() {
		bctx, cancel := context.WithTimeout(ctx, barrierTimeout)
		if err := b.cli.Barrier(bctx); err != nil {
			b.log.Debug("plan without barrier", "err", err)
		}
		cancel()
	}
	var p *plan
	b.cli.Read(func(st *ovsdb.State) { p = makePlan(st, b.opts, cfg.Normalize()) })
	return p
}

// Check reports what Set(cfg) would change without writing: the same plan,
// applied through a transact that only pretends (inserts get made-up UUIDs).
func (b *Backend) Check(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	p := b.plan(ctx, cfg)
	n := 0
	pretend := func(_ context.Context, ops []lo.Operation) ([]lo.OperationResult, error) {
		out := make([]lo.OperationResult, len(ops))
		for i := range out {
			n++
			out[i].UUID = lo.UUID{GoUUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", n)}
		}
		return out, nil
	}
	return b.apply(ctx, p, pretend, false)
}

// batchCounts is what one MAC batch adds to a Result once committed.
type batchCounts struct{ adds, removes, nbrAdds, nbrDels int }

func (c batchCounts) addTo(r *vtep.Result) {
	r.Added.MACs += c.adds
	r.Removed.MACs += c.removes
	r.Added.Neighbors += c.nbrAdds
	r.Removed.Neighbors += c.nbrDels
}

// pendingTxn is a MAC batch in flight.
type pendingTxn struct {
	ops    []lo.Operation
	counts batchCounts
	done   chan struct{}
	err    error
}

// transact sends one transaction and counts it.
func (b *Backend) transact(ctx context.Context, ops []lo.Operation) ([]lo.OperationResult, error) {
	b.txns.Add(1)
	return b.cli.Transact(ctx, ops...)
}

// apply runs the plan: the structural transaction, the batched MAC
// writes, the batched MAC deletes, the removal of unwanted switches, and a
// barrier so that the cache holds what was written.
func (b *Backend) apply(ctx context.Context, p *plan, transact func(context.Context, []lo.Operation) ([]lo.OperationResult, error), barrier bool) (vtep.Result, error) {
	errs := p.errs
	var res vtep.Result
	wrote := false

	// 1. Structure: Global, switch, ports, Logical_Switches, bindings,
	// flood sets.
	if len(p.structOps) > 0 {
		wrote = true
		results, err := transact(ctx, p.structOps)
		if err != nil {
			errs = append(errs, fmt.Errorf("structure transaction: %w", err))
			return res, errors.Join(errs...)
		}
		for vni, idx := range p.lsInsertIdx {
			p.lsUUID[vni] = results[idx].UUID.GoUUID
		}
		for key, idx := range p.locInsertIdx {
			p.locs[key].uuid = results[idx].UUID.GoUUID
		}
		res.Added.Networks += p.struct_.addedNetworks
		res.Added.Flood += p.struct_.addedFlood
		res.Removed.Flood += p.struct_.removedFlood
	}

	// 2. MAC inserts and updates in batches. A batch that only inserts
	// MACs pointing at locators already in the database is independent
	// of every other such batch, so up to pipelineDepth of them are in
	// flight at once: the server commits one while this side encodes the
	// next and the cache takes the last one's update. A batch that inserts
	// a locator (later batches need its UUID), moves or deletes a MAC (it
	// may let the server collect a locator) goes alone, after the window
	// has drained.
	var batch []lo.Operation
	var named map[string]int // locator key -> op index of its insert in batch
	var counts batchCounts
	alone := false // the batch must not overlap with others
	rows := 0
	var window []*pendingTxn
	var windowErr error
	settle := func(keep int) {
		for len(window) > keep {
			t := window[0]
			window = window[1:]
			<-t.done
			if t.err != nil {
				windowErr = cmp.Or(windowErr, t.err)
				continue
			}
			t.counts.addTo(&res)
		}
	}
	flush := func() error {
		if len(batch) == 0 {
			return windowErr
		}
		wrote = true
		if !alone && b.opts.PipelineDepth > 1 {
			settle(b.opts.PipelineDepth - 1)
			if windowErr != nil {
				return windowErr
			}
			t := &pendingTxn{ops: batch, counts: counts, done: make(chan struct{})}
			go func() {
				defer close(t.done)
				_, t.err = transact(ctx, t.ops)
			}()
			window = append(window, t)
			batch, named, rows, counts = nil, nil, 0, batchCounts{}
			return nil
		}
		settle(0)
		if windowErr != nil {
			return windowErr
		}
		results, err := transact(ctx, batch)
		if err != nil {
			return err
		}
		for key, idx := range named {
			p.locs[key].uuid = results[idx].UUID.GoUUID
		}
		for _, l := range p.locs {
			if l.uuid != "" && l.refs <= 0 && !l.pinned {
				l.uuid = "" // garbage-collected by the server at commit
			}
		}
		counts.addTo(&res)
		batch, named, rows, counts, alone = batch[:0], nil, 0, batchCounts{}, false
		return nil
	}
	locRef := func(key string) (string, error) {
		l := p.locs[key]
		if l == nil {
			l = &locState{}
			p.locs[key] = l
		}
		l.refs++
		if l.uuid != "" {
			return l.uuid, nil
		}
		if idx, ok := named[key]; ok {
			return batch[idx].UUIDName, nil
		}
		if named == nil {
			named = map[string]int{}
		}
		name := ovsdb.NamedUUID("loc", len(batch))
		var err error
		batch, err = ovsdb.InsertPhysicalLocatorOps(batch, &ovsdb.PhysicalLocator{UUID: name, DstIP: key, EncapsulationType: vxlan})
		if err != nil {
			return "", err
		}
		named[key] = len(batch) - 1
		alone = true
		return name, nil
	}
	for _, w := range p.macWrites {
		if ctx.Err() != nil {
			break
		}
		lsUUID := w.ls
		if lsUUID == "" {
			lsUUID = p.lsUUID[w.vni]
		}
		if lsUUID == "" {
			continue // its switch could not be made; error already reported
		}
		loc, err := locRef(w.locator)
		if err != nil {
			errs = append(errs, fmt.Errorf("vni %d mac %s: %w", w.vni, w.mac, err))
			continue
		}
		row := &ovsdb.UcastMacsRemote{UUID: w.uuid, MAC: w.mac, LogicalSwitch: lsUUID, Locator: loc, Ipaddr: w.ip}
		if w.uuid == "" {
			batch, err = ovsdb.InsertUcastMacsRemoteOps(batch, row)
		} else {
			if old := p.locs[w.oldLocator]; old != nil {
				old.refs--
			}
			batch, err = ovsdb.UpdateUcastMacsRemoteOps(batch, row)
			counts.removes++
			alone = true
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("vni %d: %w", w.vni, err))
			continue
		}
		counts.adds++
		if w.ip != "" && w.ip != w.oldIP {
			counts.nbrAdds++
		}
		if w.oldIP != "" && w.ip != w.oldIP {
			counts.nbrDels++
		}
		rows++
		if rows >= b.opts.BatchSize {
			if err := flush(); err != nil {
				settle(0) // nothing may still be writing when Set returns
				errs = append(errs, fmt.Errorf("mac batch: %w", err))
				return res, errors.Join(errs...)
			}
		}
	}

	// 3. MAC deletes, after every write (so no locator a write needs is
	// collected before it), filling up the last write batch.
	for _, d := range p.macDeletes {
		var err error
		batch, err = ovsdb.DeleteUcastMacsRemoteOps(batch, d.uuid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l := p.locs[d.locator]; l != nil {
			l.refs--
		}
		alone = true
		counts.removes++
		if d.ip != "" {
			counts.nbrDels++
		}
		rows++
		if rows >= b.opts.BatchSize {
			if err := flush(); err != nil {
				settle(0) // nothing may still be writing when Set returns
				errs = append(errs, fmt.Errorf("mac delete batch: %w", err))
				return res, errors.Join(errs...)
			}
		}
	}
	err := flush()
	settle(0)
	if err = cmp.Or(err, windowErr); err != nil {
		errs = append(errs, fmt.Errorf("mac batch: %w", err))
		return res, errors.Join(errs...)
	}

	// 4. Unwanted switches, each with everything that refers to it, in
	// one transaction per switch (a delete must not leave references).
	for _, r := range p.removals {
		if ctx.Err() != nil {
			break
		}
		wrote = true
		if _, err := transact(ctx, r.ops); err != nil {
			errs = append(errs, fmt.Errorf("remove logical switch %s: %w", r.name, err))
			continue
		}
		res.Removed.Networks++
		res.Removed.MACs += r.macs
		res.Removed.Flood += r.flood
		res.Removed.Neighbors += r.neighbors
	}

	if wrote && barrier {
		if err := b.cli.Barrier(ctx); err != nil {
			errs = append(errs, fmt.Errorf("wait for cache: %w", err))
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("set: %w", err))
	}
	return res, errors.Join(errs...)
}
