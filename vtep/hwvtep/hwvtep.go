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
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2span/l2span/internal/macaddr"
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
	// drift is signalled when a table the backend writes changes (its own
	// writes included): a row deleted behind its back is put back at
	// once rather than at the next resync.
	drift chan struct{}

	// waitingForSwitch, if set (by tests), is called when a Set with
	// something to write starts waiting for the switch to come back.
	waitingForSwitch func()
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
	b := &Backend{opts: opts, log: log.With("backend", "hwvtep", "switch", opts.PhysicalSwitch), changes: make(chan struct{}, 1), drift: make(chan struct{}, 1)}
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
			if slices.ContainsFunc(tables, func(t string) bool { return slices.Contains(writtenTables, t) }) {
				select {
				case b.drift <- struct{}{}:
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

// writtenTables are the tables Set writes.
var writtenTables = []string{ovsdb.LogicalSwitchTable, ovsdb.PhysicalPortTable, ovsdb.PhysicalLocatorTable,
	ovsdb.PhysicalLocatorSetTable, ovsdb.UcastMacsRemoteTable, ovsdb.McastMacsRemoteTable}

// DataplaneChanged is signalled (coalesced) when a table Set writes
// changes in the database, by this backend or anyone else; a Set then
// repairs what someone else changed. After its own writes the next Set
// finds nothing to do.
func (b *Backend) DataplaneChanged() <-chan struct{} { return b.drift }

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
			mac, err := macaddr.Parse(r.MAC)
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
		if b.waitingForSwitch != nil {
			b.waitingForSwitch()
		}
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
	return b.apply(ctx, p, dryRun(), false)
}

// transact sends one transaction and counts it.
func (b *Backend) transact(ctx context.Context, ops []lo.Operation) ([]lo.OperationResult, error) {
	b.txns.Add(1)
	return b.cli.Transact(ctx, ops...)
}

// dryRun is a transactor that writes nothing and answers every operation
// with a fresh UUID, so apply can count what a Set would change.
func dryRun() func(context.Context, []lo.Operation) ([]lo.OperationResult, error) {
	n := 0
	return func(_ context.Context, ops []lo.Operation) ([]lo.OperationResult, error) {
		out := make([]lo.OperationResult, len(ops))
		for i := range out {
			n++
			out[i].UUID = lo.UUID{GoUUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", n)}
		}
		return out, nil
	}
}
