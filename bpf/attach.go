package bpf

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// direction is where on the local-segment interface a program runs.
type direction int

const (
	// dirIngress: frames from the pod, toward the overlay (l2s_to_overlay).
	dirIngress direction = iota
	// dirEgress: frames from the overlay, toward the pod (l2s_to_pod).
	dirEgress
)

func (d direction) String() string {
	if d == dirIngress {
		return "ingress"
	}
	return "egress"
}

type attachPoint struct {
	ifindex int
	dir     direction
}

func (p attachPoint) String() string { return fmt.Sprintf("ifindex %d %s", p.ifindex, p.dir) }

// attachment is one of our programs found attached.
type attachment struct {
	attachPoint
	progID ebpf.ProgramID
	pin    string // TCX: the link's pin
}

// attacher is the seam over the two ways of attaching TC programs.
type attacher interface {
	// list returns our programs attached now in the namespace.
	list() ([]attachment, error)
	attach(p attachPoint, prog *ebpf.Program) error
	replace(a attachment, prog *ebpf.Program) error
	detach(a attachment) error
	close() error
}

// haveTCX probes for TCX links without touching any interface: on a kernel
// with TCX, attaching to a nonexistent ifindex fails with ENODEV, which
// cilium/ebpf reports as anything but ErrNotSupported.
func haveTCX(prog *ebpf.Program) bool {
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return true
	}
	return !errors.Is(err, ebpf.ErrNotSupported)
}

// tcxAttacher keeps TCX links pinned as <dir>/<ifindex>_<direction>, so
// they outlive the agent process.
type tcxAttacher struct {
	dir     string
	inNetns func(func() error) error
}

func newTCXAttacher(dir string, inNetns func(func() error) error) (*tcxAttacher, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create link pin dir: %w", err)
	}
	return &tcxAttacher{dir: dir, inNetns: inNetns}, nil
}

func (t *tcxAttacher) pinName(p attachPoint) string {
	return filepath.Join(t.dir, fmt.Sprintf("%d_%s", p.ifindex, p.dir))
}

func (t *tcxAttacher) list() ([]attachment, error) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("read link pin dir: %w", err)
	}
	var out []attachment
	var errs []error
	for _, e := range ents {
		pin := filepath.Join(t.dir, e.Name())
		idxStr, dirStr, ok := strings.Cut(e.Name(), "_")
		idx, err := strconv.Atoi(idxStr)
		if !ok || err != nil || (dirStr != "ingress" && dirStr != "egress") {
			continue // not ours
		}
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("load pinned link %s: %w", pin, err))
			continue
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("read pinned link %s: %w", pin, err))
			continue
		}
		tcx := info.TCX()
		if tcx == nil || tcx.Ifindex == 0 || int(tcx.Ifindex) != idx {
			// Defunct: its interface is gone. Nothing to detach.
			if err := os.Remove(pin); err != nil {
				errs = append(errs, fmt.Errorf("remove defunct link pin %s: %w", pin, err))
			}
			continue
		}
		d := dirIngress
		if dirStr == "egress" {
			d = dirEgress
		}
		out = append(out, attachment{attachPoint: attachPoint{idx, d}, progID: info.Program, pin: pin})
	}
	return sortedAttachments(out), errors.Join(errs...)
}

func (t *tcxAttacher) attach(p attachPoint, prog *ebpf.Program) error {
	at := ebpf.AttachTCXIngress
	if p.dir == dirEgress {
		at = ebpf.AttachTCXEgress
	}
	var l link.Link
	err := t.inNetns(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Interface: p.ifindex, Program: prog, Attach: at})
		return err
	})
	if err != nil {
		return fmt.Errorf("attach tcx: %w", err)
	}
	defer l.Close() // the pin keeps it
	if err := l.Pin(t.pinName(p)); err != nil {
		// Unpinned, the link goes away with l.Close: nothing half-done.
		return fmt.Errorf("pin tcx link: %w", err)
	}
	return nil
}

func (t *tcxAttacher) replace(a attachment, prog *ebpf.Program) error {
	l, err := link.LoadPinnedLink(a.pin, nil)
	if err != nil {
		return fmt.Errorf("load pinned link: %w", err)
	}
	defer l.Close()
	if err := l.Update(prog); err != nil {
		return fmt.Errorf("update tcx link: %w", err)
	}
	return nil
}

func (t *tcxAttacher) detach(a attachment) error {
	l, err := link.LoadPinnedLink(a.pin, nil)
	if err != nil {
		return fmt.Errorf("load pinned link: %w", err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin tcx link: %w", err)
	}
	// Detach explicitly rather than waiting for the last reference.
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("detach tcx link: %w", err)
	}
	return nil
}

func (t *tcxAttacher) close() error { return nil }

// Legacy clsact filters: priority and name identify ours.
const (
	legacyPriority = 0xc15a
	legacyHandle   = 1
)

var legacyNames = map[direction]string{dirIngress: "l2s_to_overlay", dirEgress: "l2s_to_pod"}

// legacyAttacher attaches cls_bpf direct-action filters under clsact; they
// persist in the kernel without pins.
type legacyAttacher struct {
	nl *netlink.Handle
}

func legacyParent(d direction) uint32 {
	if d == dirEgress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

func (l *legacyAttacher) list() ([]attachment, error) {
	links, err := l.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []attachment
	var errs []error
	for _, lk := range links {
		for _, d := range []direction{dirIngress, dirEgress} {
			fs, err := l.nl.FilterList(lk, legacyParent(d))
			if err != nil {
				if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("list %s filters of %s: %w", d, lk.Attrs().Name, err))
				}
				continue
			}
			for _, f := range fs {
				bf, ok := f.(*netlink.BpfFilter)
				if !ok || bf.Priority != legacyPriority || !strings.HasPrefix(bf.Name, legacyNames[d]) {
					continue
				}
				out = append(out, attachment{attachPoint: attachPoint{lk.Attrs().Index, d}, progID: ebpf.ProgramID(bf.Id)})
			}
		}
	}
	return sortedAttachments(out), errors.Join(errs...)
}

func (l *legacyAttacher) filter(p attachPoint, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: p.ifindex,
			Parent:    legacyParent(p.dir),
			Handle:    legacyHandle,
			Priority:  legacyPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           fd,
		Name:         legacyNames[p.dir],
		DirectAction: true,
	}
}

func (l *legacyAttacher) attach(p attachPoint, prog *ebpf.Program) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: p.ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := l.nl.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	if err := l.nl.FilterReplace(l.filter(p, prog.FD())); err != nil {
		return fmt.Errorf("add bpf filter: %w", err)
	}
	return nil
}

func (l *legacyAttacher) replace(a attachment, prog *ebpf.Program) error {
	if err := l.nl.FilterReplace(l.filter(a.attachPoint, prog.FD())); err != nil {
		return fmt.Errorf("replace bpf filter: %w", err)
	}
	return nil
}

func (l *legacyAttacher) detach(a attachment) error {
	// The clsact qdisc stays: other filters may hang off it.
	if err := l.nl.FilterDel(l.filter(a.attachPoint, -1)); err != nil {
		return fmt.Errorf("delete bpf filter: %w", err)
	}
	return nil
}

func (l *legacyAttacher) close() error { return nil }
