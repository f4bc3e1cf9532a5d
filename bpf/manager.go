// Package bpf holds the gateway's eBPF dataplane: two TC programs on the
// gateway's port toward each pod-local segment, and a Manager that owns their
// attachments and maps as a full-state, idempotent reconcile.
//
// l2s_to_pod (egress of the port: frames that came from the overlay) rewrites
// a source MAC inside any remote pod's dvr_base_mac prefix to this gateway's
// own DVR MAC. l2s_to_overlay (ingress of the port: frames from the pod)
// drops DHCP, DHCPv6, ARP and IPv6 NS/NA about a gateway IP, and router
// advertisements, so they stay inside the pod. Every action is counted.
//
// State across agent restarts: the maps are pinned by name in Options.PinDir
// and reused by the next Manager; TCX links are pinned in PinDir/links, so
// they stay attached when the agent exits, and the next Manager re-adopts
// them and atomically swaps its freshly loaded programs in (link update, no
// gap). With legacy clsact filters (kernels without TCX) the filters persist
// by themselves and are found again by priority and name. Close never
// detaches; only Set removes what is no longer wanted.
package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where maps and links are pinned when Options.PinDir is
// empty (systemd mounts bpffs at /sys/fs/bpf).
const DefaultPinDir = "/sys/fs/bpf/l2span"

// Mode chooses how programs are attached.
type Mode int

const (
	// ModeAuto uses TCX links when the kernel has them (6.6+), else
	// legacy clsact filters.
	ModeAuto Mode = iota
	// ModeTCX uses TCX links pinned under PinDir/links.
	ModeTCX
	// ModeLegacyTC uses clsact qdiscs with cls_bpf direct-action filters.
	ModeLegacyTC
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeTCX:
		return "tcx"
	case ModeLegacyTC:
		return "legacy-tc"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configure a Manager.
type Options struct {
	// NetnsPath is the network namespace whose interfaces are programmed
	// (e.g. /run/netns/NAME); empty means the namespace of the caller.
	NetnsPath string
	// PinDir is a directory on a bpffs where maps (and TCX links) are
	// pinned; empty means DefaultPinDir. It must belong to one agent: two
	// Managers for different namespaces need different pin directories.
	PinDir string
	// Mode of attachment; the zero value is ModeAuto.
	Mode Mode
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Attachment is the wanted state of one gateway port toward a pod-local
// segment.
type Attachment struct {
	// Interface is the local-segment interface (a port of the gateway's
	// bridge), in the Manager's namespace.
	Interface string
	// OwnDVRMAC is this gateway's DVR MAC, registered in the local Neutron;
	// nil on a host without DVR (then RemoteDVRPrefixes must be empty too).
	OwnDVRMAC net.HardwareAddr
	// RemoteDVRPrefixes are every other pod's dvr_base_mac prefixes.
	RemoteDVRPrefixes []macaddr.Prefix
	// GatewayIPs are the gateway IPs of the network's subnets (IPv4 and
	// IPv6), the same in every pod: at most MaxGatewayIPv4 distinct IPv4
	// and MaxGatewayIPv6 distinct IPv6 addresses per interface.
	GatewayIPs []netip.Addr
}

// Result says what one Set really changed.
type Result struct {
	// Attached counts programs newly attached (two per new interface).
	Attached int
	// Replaced counts attachments switched to this Manager's programs, as
	// after an agent restart or upgrade (atomic, no gap).
	Replaced int
	// Detached counts programs removed from interfaces no longer wanted.
	Detached int
	// EntriesWritten and EntriesDeleted count map entries changed: one per
	// DVR prefix, and one per interface for its whole set of gateway IPs.
	EntriesWritten int
	EntriesDeleted int
}

// Changed reports whether Set changed anything.
func (r Result) Changed() bool { return r != Result{} }

// Manager owns the programs, maps and attachments of one network namespace.
// It is safe for concurrent use; Set calls are serialized.
type Manager struct {
	mu     sync.Mutex
	log    *slog.Logger
	pinDir string
	ns     netns.NsHandle // -1: the caller's namespace
	nl     *netlink.Handle
	objs   l2spanObjects
	att    attacher
	mode   Mode
}

// New loads the programs, opens (or creates) the pinned maps and prepares to
// attach in the namespace. It changes no attachment: that is Set's job.
func New(opts Options) (*Manager, error) {
	m := &Manager{log: opts.Logger, pinDir: opts.PinDir, ns: -1}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.pinDir == "" {
		m.pinDir = DefaultPinDir
	}
	if err := checkBPFFS(m.pinDir); err != nil {
		return nil, err
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	var err error
	if opts.NetnsPath != "" {
		if m.ns, err = netns.GetFromPath(opts.NetnsPath); err != nil {
			return nil, fmt.Errorf("open netns %s: %w", opts.NetnsPath, err)
		}
		m.nl, err = netlink.NewHandleAt(m.ns)
	} else {
		m.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}

	m.mode = opts.Mode
	if m.mode == ModeAuto {
		m.mode = ModeTCX
		if !haveTCX(m.objs.L2sToOverlay) {
			m.mode = ModeLegacyTC
		}
	}
	switch m.mode {
	case ModeTCX:
		m.att, err = newTCXAttacher(filepath.Join(m.pinDir, "links"), m.inNetns)
	case ModeLegacyTC:
		m.att = &legacyAttacher{nl: m.nl}
	default:
		err = fmt.Errorf("unknown attach mode %v", opts.Mode)
	}
	if err != nil {
		return nil, err
	}
	m.log.Debug("bpf manager ready", "pin_dir", m.pinDir, "mode", m.mode.String(), "netns", opts.NetnsPath)
	ok = true
	return m, nil
}

// Mode is the attach mode in use (never ModeAuto).
func (m *Manager) Mode() Mode { return m.mode }

// load loads the collection, reusing compatible pinned maps. Pinned maps
// left by an older, incompatible layout are replaced (their counters restart);
// the next Set moves every attachment to the new programs and maps.
func (m *Manager) load() error {
	spec, err := loadL2span()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: m.pinDir}}
	err = spec.LoadAndAssign(&m.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		m.log.Warn("pinned bpf maps have an old layout; replacing them", "pin_dir", m.pinDir, "err", err)
		for name := range spec.Maps {
			if rerr := os.Remove(filepath.Join(m.pinDir, name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return fmt.Errorf("remove incompatible pinned map %s: %w", name, rerr)
			}
		}
		err = spec.LoadAndAssign(&m.objs, opts)
	}
	if err != nil {
		return fmt.Errorf("load bpf objects (pin dir %s): %w", m.pinDir, err)
	}
	return nil
}

// Close releases file descriptors and handles. It never detaches programs or
// removes pins: attachments keep working without the agent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.att != nil {
		errs = append(errs, m.att.close())
		m.att = nil
	}
	errs = append(errs, m.objs.Close())
	if m.nl != nil {
		m.nl.Close()
		m.nl = nil
	}
	if m.ns >= 0 {
		errs = append(errs, m.ns.Close())
		m.ns = -1
	}
	return errors.Join(errs...)
}

// wanted is one valid, resolved attachment.
type wanted struct {
	ifindex int
	a       Attachment
}

// Set makes the namespace hold exactly want: programs attached to (only)
// these interfaces and the maps holding (only) their entries. It reads the
// actual state back, changes only what differs, applies as much as it can
// and returns every error joined with what it really did. An attachment that
// is invalid leaves whatever its interface holds now untouched.
func (m *Manager) Set(ctx context.Context, want []Attachment) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res Result
	if m.att == nil {
		return res, errors.New("bpf manager is closed")
	}
	var errs []error
	wants, keep, verrs := m.resolve(want)
	errs = append(errs, verrs...)

	dvr, gw := desiredEntries(wants)

	// 1. Entries first, so a newly attached program sees its whole config
	// from the first packet.
	dvrHave, gwHave, err := m.readEntries()
	if err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	for k, v := range dvr {
		if old, ok := dvrHave[k]; ok && old == v {
			continue
		}
		if err := m.objs.L2sDvr.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("write dvr prefix entry %s: %w", fmtDVRKey(k), err))
			continue
		}
		res.EntriesWritten++
	}
	for k, ips := range gw {
		old, ok := gwHave[k]
		v, write := gwUpdate(old, ok, ips)
		if !write {
			continue
		}
		// One write replaces the interface's whole set, keeping the
		// addresses that stay where they are (see gwLayout).
		if err := m.putGateways(k, v); err != nil {
			errs = append(errs, fmt.Errorf("write gateway ip entry %s: %w", fmtGWEntry(k, ips), err))
			continue
		}
		res.EntriesWritten++
	}
	if err := ctx.Err(); err != nil {
		return res, errors.Join(append(errs, err)...)
	}

	// 2. Attachments.
	have, err := m.att.list()
	if err != nil {
		errs = append(errs, fmt.Errorf("list attachments: %w", err))
	} else {
		errs = append(errs, m.reconcileAttachments(wants, keep, have, &res)...)
	}
	if err := ctx.Err(); err != nil {
		return res, errors.Join(append(errs, err)...)
	}

	// 3. Stale entries last, after their programs are gone.
	for k := range dvrHave {
		if _, ok := dvr[k]; ok || keep[int(k.Ifindex)] {
			continue
		}
		if err := m.objs.L2sDvr.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete dvr prefix entry %s: %w", fmtDVRKey(k), err))
			continue
		}
		res.EntriesDeleted++
	}
	for k, v := range gwHave {
		if _, ok := gw[k]; ok || keep[int(k)] {
			continue
		}
		if err := m.deleteGateways(k); err != nil {
			errs = append(errs, fmt.Errorf("delete gateway ip entry %s: %w", fmtGWEntry(k, gwAddrs(v)), err))
			continue
		}
		res.EntriesDeleted++
	}
	if res.Changed() {
		m.log.Info("bpf dataplane updated", "attached", res.Attached, "replaced", res.Replaced,
			"detached", res.Detached, "entries_written", res.EntriesWritten, "entries_deleted", res.EntriesDeleted)
	}
	return res, errors.Join(errs...)
}

func (m *Manager) reconcileAttachments(wants []wanted, keep map[int]bool, have []attachment, res *Result) []error {
	var errs []error
	progs := map[direction]*ebpf.Program{dirIngress: m.objs.L2sToOverlay, dirEgress: m.objs.L2sToPod}
	progIDs := map[direction]ebpf.ProgramID{}
	for d, p := range progs {
		info, err := p.Info()
		if err != nil {
			return []error{fmt.Errorf("read program info: %w", err)}
		}
		id, _ := info.ID()
		progIDs[d] = id
	}
	wantSet := map[attachPoint]bool{}
	for _, w := range wants {
		wantSet[attachPoint{w.ifindex, dirIngress}] = true
		wantSet[attachPoint{w.ifindex, dirEgress}] = true
	}
	present := map[attachPoint]bool{}
	for _, a := range have {
		switch {
		case keep[a.ifindex]:
			present[a.attachPoint] = true
		case !wantSet[a.attachPoint]:
			if err := m.att.detach(a); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
				continue
			}
			res.Detached++
		case present[a.attachPoint]:
			// A duplicate (only possible by hand): keep one.
			if err := m.att.detach(a); err != nil {
				errs = append(errs, fmt.Errorf("detach duplicate %s: %w", a, err))
			}
		default:
			present[a.attachPoint] = true
			if a.progID == progIDs[a.dir] {
				continue
			}
			if err := m.att.replace(a, progs[a.dir]); err != nil {
				errs = append(errs, fmt.Errorf("replace program of %s: %w", a, err))
				continue
			}
			res.Replaced++
		}
	}
	for _, w := range wants {
		for _, d := range []direction{dirIngress, dirEgress} {
			p := attachPoint{w.ifindex, d}
			if present[p] {
				continue
			}
			if err := m.att.attach(p, progs[d]); err != nil {
				errs = append(errs, fmt.Errorf("attach to %s (%s): %w", w.a.Interface, p, err))
				continue
			}
			res.Attached++
		}
	}
	return errs
}

// resolve validates the attachments and finds their interfaces. keep holds
// the ifindexes of attachments that are wanted but invalid: their current
// state is left alone.
func (m *Manager) resolve(want []Attachment) (wants []wanted, keep map[int]bool, errs []error) {
	keep = map[int]bool{}
	seen := map[string]bool{}
	for _, a := range want {
		if seen[a.Interface] {
			errs = append(errs, fmt.Errorf("attachment %q: interface listed twice", a.Interface))
			continue
		}
		seen[a.Interface] = true
		if a.Interface == "" {
			errs = append(errs, errors.New("attachment without interface"))
			continue
		}
		l, err := m.nl.LinkByName(a.Interface)
		if err != nil {
			errs = append(errs, fmt.Errorf("attachment %q: find interface: %w", a.Interface, err))
			continue
		}
		idx := l.Attrs().Index
		if err := m.validate(a); err != nil {
			keep[idx] = true
			errs = append(errs, fmt.Errorf("attachment %q: %w", a.Interface, err))
			continue
		}
		wants = append(wants, wanted{ifindex: idx, a: a})
	}
	return wants, keep, errs
}

func (m *Manager) validateGateways(a Attachment) error {
	return validateGatewayIPs(a.GatewayIPs)
}

func (m *Manager) validate(a Attachment) error {
	// A host without DVR has no DVR MAC: isolation only, no rewrite.
	if len(a.OwnDVRMAC) == 0 && len(a.RemoteDVRPrefixes) == 0 {
		return m.validateGateways(a)
	}
	if len(a.OwnDVRMAC) != 6 {
		return fmt.Errorf("own dvr mac %q: not a 48-bit MAC", a.OwnDVRMAC)
	}
	if a.OwnDVRMAC[0]&1 != 0 {
		return fmt.Errorf("own dvr mac %s: multicast", a.OwnDVRMAC)
	}
	for _, p := range a.RemoteDVRPrefixes {
		if !p.IsValid() {
			return errors.New("remote dvr prefix without length")
		}
		if p.Contains(a.OwnDVRMAC) {
			m.log.Warn("own dvr mac lies inside a remote pod's dvr prefix", "interface", a.Interface,
				"own_dvr_mac", a.OwnDVRMAC.String(), "prefix", p.String())
		}
	}
	return m.validateGateways(a)
}

// desiredEntries returns the DVR prefix entries and, per interface with any,
// its gateway IPs (distinct, sorted, IPv4 first).
func desiredEntries(wants []wanted) (map[l2spanDvrKey]l2spanDvrVal, map[uint32][]netip.Addr) {
	dvr := map[l2spanDvrKey]l2spanDvrVal{}
	gw := map[uint32][]netip.Addr{}
	for _, w := range wants {
		var v l2spanDvrVal
		copy(v.Mac[:], w.a.OwnDVRMAC)
		for _, p := range w.a.RemoteDVRPrefixes {
			dvr[dvrKey(w.ifindex, p)] = v
		}
		if v4, v6 := splitGateways(w.a.GatewayIPs); len(v4)+len(v6) > 0 {
			gw[uint32(w.ifindex)] = append(v4, v6...)
		}
	}
	return dvr, gw
}

func dvrKey(ifindex int, p macaddr.Prefix) l2spanDvrKey {
	k := l2spanDvrKey{Prefixlen: uint32(32 + p.Bits()), Ifindex: uint32(ifindex)}
	copy(k.Mac[:], p.Addr())
	return k
}

func fmtDVRKey(k l2spanDvrKey) string {
	return fmt.Sprintf("if%d %s/%d", k.Ifindex, net.HardwareAddr(k.Mac[:]), int(k.Prefixlen)-32)
}

func (m *Manager) readEntries() (map[l2spanDvrKey]l2spanDvrVal, map[uint32]l2spanGwVal, error) {
	dvr := map[l2spanDvrKey]l2spanDvrVal{}
	var dk l2spanDvrKey
	var dv l2spanDvrVal
	it := m.objs.L2sDvr.Iterate()
	for it.Next(&dk, &dv) {
		dvr[dk] = dv
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read dvr prefix map: %w", err)
	}
	gw, err := m.readGateways()
	if err != nil {
		return nil, nil, err
	}
	return dvr, gw, nil
}

// inNetns runs fn inside the Manager's namespace (see nsexec.Run).
func (m *Manager) inNetns(fn func() error) error {
	return nsexec.Run(m.ns, fn)
}

func checkBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("stat pin dir %s: %w", dir, err)
	}
	if uint32(st.Type) != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin dir %s is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", dir)
	}
	return nil
}

// sortedAttachments orders attachments for stable logs and tests.
func sortedAttachments(as []attachment) []attachment {
	sort.Slice(as, func(i, j int) bool {
		if as[i].ifindex != as[j].ifindex {
			return as[i].ifindex < as[j].ifindex
		}
		return as[i].dir < as[j].dir
	})
	return as
}
