// Package evpn is the BGP EVPN backend of vtep.Dataplane: a gateway that
// joins a pod whose fabric speaks EVPN over VXLAN (FRR, SONiC, any RFC
// 7432/8365 VTEP) to the inter-pod overlay.
//
// Per forwarded network (VNI) it holds, in the kernel:
//
//	bridge l2sb<VNI> ─ vxlan l2sv<VNI> (inter-pod overlay, vtep/linux, its own UDP port)
//	       └─ veth l2fx<VNI> ══ l2fy<VNI> ─ bridge l2fb<VNI> ─ vxlan l2fv<VNI> (the pod's fabric, port 4789)
//
// and, in BGP (GoBGP embedded as a library), toward the fabric:
//   - exports each remote MAC (a port in another pod) as a type-2 route,
//     MAC-only and one per IP, with the brain's mobility sequence as the
//     MAC Mobility extended community, and one type-3 route (PMSI ingress
//     replication, label = VNI), all with this gateway's VTEP as next hop
//     and RD/RT "ASN:VNI" unless configured;
//   - imports the fabric's type-2 routes as the FDB of l2fv<VNI> (MAC ->
//     the VTEP that advertised it) and as the pod's local MACs (MACSource,
//     which the agent reports to the brain), and its type-3 routes as the
//     flood list of l2fv<VNI>.
//
// No ESI and no RFC 8584 DF election: the agent hands over only the
// networks this gateway forwards as its pod's designated forwarder (gossip
// decides), so exactly one gateway of a pod advertises a network.
//
// Nothing is flushed on restart: the kernel keeps its entries, the fabric
// keeps our routes as stale (graceful restart, optionally long-lived) until
// we come back; neighbors are configured only after our routes are in the
// RIB, so the End-of-RIB we send is complete; the pod-side FDB is
// reprogrammed only after every neighbor sent its End-of-RIB (or
// ImportWait passed).
package evpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/l2span/l2span/vtep"
	"github.com/l2span/l2span/vtep/linux"
)

// Defaults.
const (
	DefaultTemplate    = "{asn}:{vni}"
	DefaultRestartTime = 120 * time.Second
	DefaultHoldTime    = 90 * time.Second
	DefaultImportWait  = 30 * time.Second
	DefaultFabricPort  = 4789
	DefaultPrefix      = "l2f"
)

// Neighbor is a BGP peer in the fabric (a route reflector or a leaf).
type Neighbor struct {
	Address  netip.Addr
	RemoteAS uint32
}

// Options configure a Backend.
type Options struct {
	// ASN is the local AS; RouterID defaults to VTEP (when IPv4).
	ASN      uint32
	RouterID netip.Addr
	// Neighbors are the fabric's BGP speakers this gateway peers with.
	Neighbors []Neighbor
	// ListenAddress and ListenPort are where BGP listens (ListenPort 0:
	// 179; -1: never listen, only connect). Port is the neighbors' port
	// (0: 179).
	ListenAddress netip.Addr
	ListenPort    int32
	Port          uint16
	// RD and RT are per-VNI templates with {asn} and {vni}
	// (DefaultTemplate when empty): "ASN:N" or "IPv4:N".
	RD, RT string
	// RestartTime is the graceful-restart time the fabric keeps our routes
	// for while we are gone; LongLivedStaleTime adds long-lived graceful
	// restart (RFC 9494) after it (0: off).
	RestartTime        time.Duration
	LongLivedStaleTime time.Duration
	// HoldTime of the sessions (keepalive is a third of it).
	HoldTime time.Duration
	// VTEP is this gateway's tunnel endpoint in the fabric: next hop of
	// every route we export and source of the pod-side VXLAN devices.
	VTEP netip.Addr
	// FabricPort is the fabric's VXLAN UDP port (DefaultFabricPort). The
	// inter-pod overlay (Overlay.Port) must use another: the kernel allows
	// one VXLAN device per VNI and port.
	FabricPort uint16
	// Prefix names the pod-side devices (DefaultPrefix).
	Prefix string
	// ImportWait bounds how long a starting backend waits for the
	// neighbors' End-of-RIB before it reprograms the pod-side FDB.
	ImportWait time.Duration
	// SpeakerSocket is the API socket of an l2span-bgpd that holds the BGP
	// sessions, so that they outlive the agent's restarts. Empty: GoBGP
	// runs inside this process, its API socket in SocketDir, and a restart
	// drops the sessions (a fabric without graceful restart for EVPN, such
	// as FRR before 10.5, then withdraws our routes until we are back).
	SpeakerSocket string
	// SocketDir is a private directory for an embedded GoBGP's API socket.
	SocketDir string
	// Overlay configures the inter-pod kernel dataplane (vtep/linux).
	Overlay linux.Options
	Logger  *slog.Logger
}

// Validate fills defaults and checks opts, naming the option at fault.
func (o Options) withDefaults() (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RD == "" {
		o.RD = DefaultTemplate
	}
	if o.RT == "" {
		o.RT = DefaultTemplate
	}
	if o.RestartTime == 0 {
		o.RestartTime = DefaultRestartTime
	}
	if o.HoldTime == 0 {
		o.HoldTime = DefaultHoldTime
	}
	if o.ImportWait == 0 {
		o.ImportWait = DefaultImportWait
	}
	if o.FabricPort == 0 {
		o.FabricPort = DefaultFabricPort
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.ListenPort == 0 {
		o.ListenPort = 179
	}
	if !o.RouterID.IsValid() && o.VTEP.Is4() {
		o.RouterID = o.VTEP
	}
	return o, o.validate()
}

func (o Options) validate() error {
	switch {
	case o.ASN == 0:
		return errors.New("evpn-asn: required")
	case !o.RouterID.Is4():
		return errors.New("evpn-router-id: required (an IPv4 address) when the VTEP is not IPv4")
	case !o.VTEP.IsValid():
		return errors.New("evpn-vtep: required")
	case len(o.Neighbors) == 0:
		return errors.New("evpn-neighbors: at least one neighbor")
	case o.HoldTime < 3*time.Second:
		return fmt.Errorf("evpn-hold-time %s: want at least 3s", o.HoldTime)
	case o.RestartTime < time.Second || o.RestartTime > 4095*time.Second:
		return fmt.Errorf("evpn-restart-time %s: want 1s-4095s (the capability's 12 bits)", o.RestartTime)
	case o.LongLivedStaleTime < 0 || o.LongLivedStaleTime > (1<<24-1)*time.Second:
		return fmt.Errorf("evpn-llgr-stale-time %s: want 0-16777215s", o.LongLivedStaleTime)
	case o.SocketDir == "" && o.SpeakerSocket == "":
		return errors.New("evpn socket dir: required")
	case len(o.Prefix) > 4:
		return fmt.Errorf("evpn-device-prefix %q: at most 4 characters", o.Prefix)
	}
	for i, n := range o.Neighbors {
		if !n.Address.IsValid() || n.RemoteAS == 0 {
			return fmt.Errorf("evpn-neighbors[%d]: want ADDRESS:REMOTE_AS", i)
		}
	}
	if err := template(o.RD).check(o.ASN); err != nil {
		return fmt.Errorf("evpn-rd: %w", err)
	}
	if err := template(o.RT).check(o.ASN); err != nil {
		return fmt.Errorf("evpn-rt: %w", err)
	}
	if o.Overlay.Port == o.FabricPort || o.Overlay.Port == 0 && o.FabricPort == linux.DefaultPort {
		return fmt.Errorf("vxlan-port %d: the inter-pod overlay needs another UDP port than the fabric's (evpn-fabric-port %d)", o.Overlay.Port, o.FabricPort)
	}
	return nil
}

// Backend is the EVPN dataplane. Set calls and import passes are
// serialized.
type Backend struct {
	opts    Options
	log     *slog.Logger
	overlay *linux.Backend
	fabric  *linux.Backend
	links   *links
	bgp     *speaker
	attrs   netAttrs
	metrics *metrics
	started time.Time

	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}

	mu      sync.Mutex
	cfg     vtep.Config
	haveCfg bool
	// ready is set once the pod-side FDB has been programmed from a
	// complete import.
	ready bool

	macMu   sync.Mutex
	macs    []vtep.LocalMAC
	changed chan struct{}
}

var (
	_ vtep.Dataplane     = (*Backend)(nil)
	_ vtep.MACSource     = (*Backend)(nil)
	_ vtep.SessionSource = (*Backend)(nil)
)

// New opens the kernel handles and starts the BGP speaker (with no
// neighbor yet: they are added by the first Set).
func New(ctx context.Context, opts Options) (*Backend, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	fo := opts.Overlay
	fo.LocalVTEP, fo.Port, fo.Prefix = opts.VTEP, opts.FabricPort, opts.Prefix
	fo.Logger = opts.Logger.With("side", "fabric")
	if opts.Overlay.Logger == nil {
		opts.Overlay.Logger = opts.Logger.With("side", "overlay")
	}
	b := &Backend{opts: opts, log: opts.Logger, attrs: netAttrs{asn: opts.ASN, rd: template(opts.RD), rt: template(opts.RT)},
		metrics: newMetrics(), started: time.Now(), done: make(chan struct{}), kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
	if b.overlay, err = linux.New(opts.Overlay); err != nil {
		return nil, fmt.Errorf("open overlay dataplane: %w", err)
	}
	if b.fabric, err = linux.New(fo); err != nil {
		b.overlay.Close()
		return nil, fmt.Errorf("open fabric dataplane: %w", err)
	}
	if b.links, err = openLinks(opts.Overlay.NetnsPath, opts.Prefix, opts.Overlay.MTU); err != nil {
		b.overlay.Close()
		b.fabric.Close()
		return nil, err
	}
	if b.bgp, err = startSpeaker(ctx, opts); err != nil {
		b.overlay.Close()
		b.fabric.Close()
		b.links.close()
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.loop(loopCtx)
	return b, nil
}

// Close stops the import loop and releases handles; it never touches the
// kernel or the routes. An l2span-bgpd keeps the sessions and our routes;
// an embedded speaker is left to end with the process (a TCP close, no
// NOTIFICATION: a graceful-restart helper keeps our routes as stale).
func (b *Backend) Close() error {
	b.cancel()
	<-b.done
	b.bgp.close()
	return errors.Join(b.overlay.Close(), b.fabric.Close(), b.links.close())
}

// Stop is Close for good: an embedded speaker is stopped too (its
// sessions end with a NOTIFICATION, its goroutines end). An l2span-bgpd
// is left as it is.
func (b *Backend) Stop() error {
	err := b.Close()
	b.bgp.stop()
	return err
}

func (b *Backend) vethOverlay(vni uint32) string {
	return b.opts.Prefix + "x" + strconv.FormatUint(uint64(vni), 10)
}

func (b *Backend) vethFabric(vni uint32) string {
	return b.opts.Prefix + "y" + strconv.FormatUint(uint64(vni), 10)
}

// Set programs the inter-pod overlay for cfg, advertises cfg's remote
// MACs to the fabric and reprograms the pod side from the fabric's routes.
func (b *Backend) Set(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg = cfg.Normalize()
	b.cfg, b.haveCfg = cfg, true
	var errs []error
	vnis := make([]uint32, 0, len(cfg.Networks))
	for _, n := range cfg.Networks {
		vnis = append(vnis, n.VNI)
	}
	if err := b.links.ensure(vnis, b.vethOverlay, b.vethFabric); err != nil {
		errs = append(errs, err)
	}
	over := vtep.Config{Networks: make([]vtep.Network, 0, len(cfg.Networks))}
	for _, n := range cfg.Networks {
		n.LocalInterface = b.vethOverlay(n.VNI)
		over.Networks = append(over.Networks, n)
	}
	res, err := b.overlay.Set(ctx, over)
	if err != nil {
		errs = append(errs, fmt.Errorf("overlay: %w", err))
	}
	if err := b.links.prune(vnis); err != nil {
		errs = append(errs, err)
	}
	if err := b.syncBGP(ctx); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// syncBGP reads the RIB back, advertises and withdraws the difference,
// adds the neighbors once our routes are in, and reprograms the pod side
// when the import is complete. The caller holds b.mu.
func (b *Backend) syncBGP(ctx context.Context) error {
	rtVNI := map[string]uint32{}
	for _, n := range b.cfg.Networks {
		target, err := rt(b.attrs.rt.expand(b.attrs.asn, n.VNI))
		if err != nil {
			return fmt.Errorf("rt of vni %d: %w", n.VNI, err)
		}
		rtVNI[rtString(target)] = n.VNI
	}
	// An l2span-bgpd that restarted has lost its settings and routes.
	if started, err := b.bgp.ensureGlobal(ctx); err != nil {
		return err
	} else if started && b.ready {
		// Keep the pod side until the fabric has sent everything again.
		b.log.Warn("bgp speaker started afresh (l2span-bgpd restarted?); routes sent again")
		b.ready, b.started = false, time.Now()
	}
	ours, theirs, err := b.bgp.list(ctx, rtVNI, b.opts.VTEP)
	if err != nil {
		return err
	}
	im := newImported(theirs, b.opts.VTEP)
	want := wantExport(b.cfg, b.opts.VTEP, im.macs())
	for k, r := range want {
		if want[k], err = b.attrs.fill(r); err != nil {
			return err
		}
	}
	// Routes of VNIs no longer in the config cannot be told from their RT
	// any more: list keeps ours whatever their RT (VNI from the label).
	withdraw, advertise := exportDiff(ours, want)
	var errs []error
	if err := b.bgp.send(ctx, b.attrs, withdraw, advertise); err != nil {
		errs = append(errs, err)
	} else {
		if len(withdraw)+len(advertise) > 0 {
			b.log.Debug("evpn routes sent", "withdrawn", len(withdraw), "advertised", len(advertise))
		}
		if err := b.bgp.addPeers(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	b.metrics.setRoutes(want, im.byKey)
	sessions, ready := b.bgp.sessions(ctx)
	b.metrics.setSessions(sessions)
	if !ready && !b.ready && time.Since(b.started) < b.opts.ImportWait {
		// Keep the pod side as the kernel has it until the fabric has
		// told us everything: an empty RIB after a restart is no reason
		// to remove what forwards now.
		b.kickAfter(time.Second)
		return errors.Join(errs...)
	}
	if !ready && !b.ready {
		b.log.Warn("fabric End-of-RIB not received from every neighbor; programming the pod side from what arrived", "wait", b.opts.ImportWait)
	}
	fab := vtep.Config{}
	for _, n := range b.cfg.Networks {
		fab.Networks = append(fab.Networks, im.fabricNetwork(n.VNI, b.vethFabric(n.VNI)))
	}
	if _, err := b.fabric.Set(ctx, fab); err != nil {
		errs = append(errs, fmt.Errorf("fabric side: %w", err))
	} else {
		b.ready = true
	}
	b.setLocalMACs(im.localMACs())
	return errors.Join(errs...)
}

func (b *Backend) kickAfter(d time.Duration) {
	time.AfterFunc(d, func() {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	})
}

// loop reruns syncBGP when the fabric's routes or sessions change.
func (b *Backend) loop(ctx context.Context) {
	defer close(b.done)
	events := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			err := b.bgp.watch(ctx, func() {
				select {
				case events <- struct{}{}:
				default:
				}
			})
			if ctx.Err() != nil {
				return
			}
			// The speaker went away (l2span-bgpd restarting): the
			// passes below set it up again; watch again shortly.
			b.log.Warn("bgp speaker events", "err", err)
			select {
			case events <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	resync := time.NewTicker(10 * time.Second)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-b.kick:
		case <-resync.C:
		}
		// Let a burst of UPDATEs settle into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		b.mu.Lock()
		if b.haveCfg {
			if err := b.syncBGP(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("evpn import pass", "err", err)
				b.kickAfter(2 * time.Second)
			}
		}
		b.mu.Unlock()
	}
}

func (b *Backend) setLocalMACs(macs []vtep.LocalMAC) {
	b.macMu.Lock()
	same := slices.EqualFunc(macs, b.macs, func(a, c vtep.LocalMAC) bool {
		return a.VNI == c.VNI && string(a.MAC) == string(c.MAC) && a.IP == c.IP && a.Locator == c.Locator && a.Seq == c.Seq && a.Sticky == c.Sticky
	})
	b.macs = macs
	b.macMu.Unlock()
	if !same {
		select {
		case b.changed <- struct{}{}:
		default:
		}
	}
}

// LocalMACs is the fabric's MACs in the networks of the last Set.
func (b *Backend) LocalMACs() []vtep.LocalMAC {
	b.macMu.Lock()
	defer b.macMu.Unlock()
	return slices.Clone(b.macs)
}

// LocalMACsChanged is signalled when LocalMACs may have changed.
func (b *Backend) LocalMACsChanged() <-chan struct{} { return b.changed }

// Sessions is the state of each configured neighbor.
func (b *Backend) Sessions() []vtep.Session {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, _ := b.bgp.sessions(ctx)
	return s
}
