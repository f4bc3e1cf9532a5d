package linux

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/l2span/l2span/vtep"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fakeKernel holds devices and entries in maps with the kernel's semantics
// that matter here, and logs every write.
type fakeKernel struct {
	links  map[string]*fakeLink
	fdb    map[string][]fdbEntry
	neighs map[string][]neighEntry
	writes []string
	// failFDB makes AddFDB fail for these MACs (as strings).
	failFDB map[string]bool
}

type fakeLink struct {
	kLink
	learning, suppress bool
}

func newFake(devs ...string) *fakeKernel {
	f := &fakeKernel{links: map[string]*fakeLink{}, fdb: map[string][]fdbEntry{}, neighs: map[string][]neighEntry{}, failFDB: map[string]bool{}}
	for _, d := range devs {
		f.links[d] = &fakeLink{kLink: kLink{Name: d, Kind: "veth", MTU: 1500}}
	}
	return f
}

func (f *fakeKernel) log(format string, args ...any) {
	f.writes = append(f.writes, fmt.Sprintf(format, args...))
}

func (f *fakeKernel) get(name string) (*fakeLink, error) {
	l, ok := f.links[name]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", name, syscall.ENODEV)
	}
	return l, nil
}

func (f *fakeKernel) Links() ([]kLink, error) {
	var out []kLink
	for _, l := range f.links {
		kl := l.kLink
		if kl.VXLAN != nil {
			v := *kl.VXLAN
			kl.VXLAN = &v
		}
		out = append(out, kl)
	}
	return out, nil
}

func (f *fakeKernel) AddBridge(name string, mtu int) error {
	f.log("add bridge %s mtu %d", name, mtu)
	if _, ok := f.links[name]; ok {
		return syscall.EEXIST
	}
	if mtu == 0 {
		mtu = 1500
	}
	f.links[name] = &fakeLink{kLink: kLink{Name: name, Kind: "bridge", MTU: mtu}}
	return nil
}

func (f *fakeKernel) AddVXLAN(name string, a vxlanAttrs, mtu int) error {
	f.log("add vxlan %s %+v mtu %d", name, a, mtu)
	if _, ok := f.links[name]; ok {
		return syscall.EEXIST
	}
	if a.Underlay != "" {
		if _, err := f.get(a.Underlay); err != nil {
			return err
		}
	}
	if mtu == 0 {
		mtu = 1450
	}
	f.links[name] = &fakeLink{kLink: kLink{Name: name, Kind: "vxlan", MTU: mtu, VXLAN: &a}, learning: true}
	return nil
}

func (f *fakeKernel) DelLink(name string) error {
	f.log("del link %s", name)
	if _, err := f.get(name); err != nil {
		return err
	}
	delete(f.links, name)
	delete(f.fdb, name)
	delete(f.neighs, name)
	for _, l := range f.links {
		if l.Master == name {
			l.Master = ""
		}
	}
	return nil
}

func (f *fakeKernel) SetUp(name string) error {
	f.log("set up %s", name)
	l, err := f.get(name)
	if err != nil {
		return err
	}
	l.Up = true
	return nil
}

func (f *fakeKernel) SetMTU(name string, mtu int) error {
	f.log("set mtu %s %d", name, mtu)
	l, err := f.get(name)
	if err != nil {
		return err
	}
	l.MTU = mtu
	return nil
}

func (f *fakeKernel) SetMaster(name, master string) error {
	f.log("set master %s %q", name, master)
	l, err := f.get(name)
	if err != nil {
		return err
	}
	if master != "" {
		if _, err := f.get(master); err != nil {
			return err
		}
	}
	l.Master = master
	return nil
}

func (f *fakeKernel) PortFlags(name string) (bool, bool, error) {
	l, err := f.get(name)
	if err != nil {
		return false, false, err
	}
	return l.learning, l.suppress, nil
}

func (f *fakeKernel) SetPortFlags(name string, learning, suppress bool) error {
	f.log("set port %s learning %v neigh_suppress %v", name, learning, suppress)
	l, err := f.get(name)
	if err != nil {
		return err
	}
	l.learning, l.suppress = learning, suppress
	return nil
}

func (f *fakeKernel) FDB(dev string) ([]fdbEntry, error) {
	if _, err := f.get(dev); err != nil {
		return nil, err
	}
	return slices.Clone(f.fdb[dev]), nil
}

func (f *fakeKernel) AddFDB(dev string, es []fdbEntry) []error {
	errs := make([]error, len(es))
	for i, e := range es {
		f.log("add fdb %s %s", dev, describeFDB(e))
		if _, err := f.get(dev); err != nil {
			errs[i] = err
			continue
		}
		if f.failFDB[e.MAC.String()] {
			errs[i] = syscall.EINVAL
			continue
		}
		cur := f.fdb[dev]
		if e.Append {
			if !slices.ContainsFunc(cur, func(c fdbEntry) bool { return !c.Master && bytes.Equal(c.MAC, e.MAC) && c.VTEP == e.VTEP }) {
				cur = append(cur, e)
			}
		} else {
			cur = slices.DeleteFunc(cur, func(c fdbEntry) bool { return c.Master == e.Master && bytes.Equal(c.MAC, e.MAC) })
			cur = append(cur, e)
		}
		f.fdb[dev] = cur
	}
	return errs
}

func (f *fakeKernel) DelFDB(dev string, es []fdbEntry) []error {
	errs := make([]error, len(es))
	for i, e := range es {
		f.log("del fdb %s %s", dev, describeFDB(e))
		n := len(f.fdb[dev])
		f.fdb[dev] = slices.DeleteFunc(f.fdb[dev], func(c fdbEntry) bool {
			return c.Master == e.Master && bytes.Equal(c.MAC, e.MAC) && (e.Master || c.VTEP == e.VTEP)
		})
		if len(f.fdb[dev]) == n {
			errs[i] = syscall.ENOENT
		}
	}
	return errs
}

func (f *fakeKernel) Neighs(dev string) ([]neighEntry, error) {
	if _, err := f.get(dev); err != nil {
		return nil, err
	}
	return slices.Clone(f.neighs[dev]), nil
}

func (f *fakeKernel) AddNeighs(dev string, es []neighEntry) []error {
	errs := make([]error, len(es))
	for i, e := range es {
		f.log("add neigh %s %s %s", dev, e.IP, e.MAC)
		if _, err := f.get(dev); err != nil {
			errs[i] = err
			continue
		}
		f.neighs[dev] = append(slices.DeleteFunc(f.neighs[dev], func(c neighEntry) bool { return c.IP == e.IP }), e)
	}
	return errs
}

func (f *fakeKernel) DelNeighs(dev string, es []neighEntry) []error {
	errs := make([]error, len(es))
	for i, e := range es {
		f.log("del neigh %s %s", dev, e.IP)
		n := len(f.neighs[dev])
		f.neighs[dev] = slices.DeleteFunc(f.neighs[dev], func(c neighEntry) bool { return c.IP == e.IP })
		if len(f.neighs[dev]) == n {
			errs[i] = syscall.ENOENT
		}
	}
	return errs
}

// dump renders the whole state, sorted, for golden comparison.
func (f *fakeKernel) dump() string {
	var lines []string
	for _, l := range f.links {
		s := fmt.Sprintf("link %s %s up=%v mtu=%d", l.Name, l.Kind, l.Up, l.MTU)
		if l.Master != "" {
			s += fmt.Sprintf(" master=%s learning=%v neigh_suppress=%v", l.Master, l.learning, l.suppress)
		}
		if v := l.VXLAN; v != nil {
			s += fmt.Sprintf(" vni=%d local=%s dev=%s port=%d vxlan-learning=%v", v.VNI, v.Local, v.Underlay, v.Port, v.Learning)
		}
		lines = append(lines, s)
	}
	for dev, es := range f.fdb {
		for _, e := range es {
			lines = append(lines, fmt.Sprintf("fdb %s %s owned=%v", dev, describeFDB(e), e.Owned))
		}
	}
	for dev, es := range f.neighs {
		for _, e := range es {
			lines = append(lines, fmt.Sprintf("neigh %s %s lladdr %s owned=%v permanent=%v", dev, e.IP, e.MAC, e.Owned, e.Permanent))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fakeBackend(t *testing.T, f *fakeKernel) *Backend {
	t.Helper()
	opts, err := Options{LocalVTEP: netip.MustParseAddr("198.51.100.11"), UnderlayDev: "ul0", Logger: quietLogger()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return newBackend(opts, f)
}

var (
	vtepB = netip.MustParseAddr("198.51.100.12")
	vtepC = netip.MustParseAddr("198.51.100.13")
	macB  = mustMAC("02:00:00:00:02:02")
	macC  = mustMAC("02:00:00:00:03:03")
)

func twoNetworks() vtep.Config {
	return vtep.Config{Networks: []vtep.Network{
		{
			VNI:            100,
			LocalInterface: "seg0",
			Flood:          []netip.Addr{vtepC, vtepB, vtepB},
			MACs:           []vtep.MACEntry{{MAC: macC, VTEP: vtepC}, {MAC: macB, VTEP: vtepB}},
			Neighbors: []vtep.Neighbor{
				{IP: netip.MustParseAddr("203.0.113.2"), MAC: macB},
				{IP: netip.MustParseAddr("2001:db8::2"), MAC: macB},
			},
		},
		{VNI: 200, LocalInterface: "seg1", Flood: []netip.Addr{vtepB}, Learn: true},
	}}
}

func TestSetGolden(t *testing.T) {
	f := newFake("ul0", "seg0", "seg1")
	b := fakeBackend(t, f)
	res, err := b.Set(context.Background(), twoNetworks())
	if err != nil {
		t.Fatal(err)
	}
	want := vtep.Result{Added: vtep.Counts{Networks: 2, MACs: 2, Flood: 3, Neighbors: 2}}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	golden(t, "two-networks.state", f.dump())
	golden(t, "two-networks.writes", strings.Join(f.writes, "\n")+"\n")

	// The same config again: no write at all.
	f.writes = nil
	res, err = b.Set(context.Background(), twoNetworks())
	if err != nil {
		t.Fatal(err)
	}
	if res != (vtep.Result{}) || len(f.writes) != 0 {
		t.Fatalf("second Set: %+v, writes %q", res, f.writes)
	}
	// A new backend over the same kernel (agent restart): no write either.
	if res, err := fakeBackend(t, f).Set(context.Background(), twoNetworks()); err != nil || res != (vtep.Result{}) || len(f.writes) != 0 {
		t.Fatalf("Set after restart: %+v %v, writes %q", res, err, f.writes)
	}
}

func TestSetRemovesOnlyOwned(t *testing.T) {
	f := newFake("ul0", "seg0", "seg1", "eth9")
	b := fakeBackend(t, f)
	if _, err := b.Set(context.Background(), twoNetworks()); err != nil {
		t.Fatal(err)
	}
	// Things the backend does not own: a learned and a hand-made entry on
	// its VXLAN device, a kernel neighbor on its bridge, a device that looks
	// like its own by name but is not a bridge, another interface in its
	// bridge.
	f.fdb["l2sv100"] = append(f.fdb["l2sv100"],
		fdbEntry{MAC: mustMAC("02:00:00:00:0a:0a"), VTEP: vtepC},
		fdbEntry{MAC: mustMAC("02:00:00:00:0b:0b"), Master: true})
	f.neighs["l2sb100"] = append(f.neighs["l2sb100"], neighEntry{IP: netip.MustParseAddr("203.0.113.50"), MAC: macC})
	f.links["l2sb7"] = &fakeLink{kLink: kLink{Name: "l2sb7", Kind: "veth"}}
	f.links["l2sb08"] = &fakeLink{kLink: kLink{Name: "l2sb08", Kind: "bridge"}}
	f.links["eth9"].Master = "l2sb100"

	// Drop MAC C and VNI 200.
	cfg := twoNetworks()
	cfg.Networks = cfg.Networks[:1]
	cfg.Networks[0].MACs = cfg.Networks[0].MACs[1:]
	cfg.Networks[0].Flood = []netip.Addr{vtepB}
	f.writes = nil
	res, err := b.Set(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := vtep.Result{Removed: vtep.Counts{Networks: 1, MACs: 1, Flood: 1}}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	golden(t, "remove.state", f.dump())
	golden(t, "remove.writes", strings.Join(f.writes, "\n")+"\n")

	// Everything gone: all owned devices deleted, local interfaces released.
	f.writes = nil
	res, err = b.Set(context.Background(), vtep.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if res != (vtep.Result{Removed: vtep.Counts{Networks: 1}}) {
		t.Errorf("remove all: %+v", res)
	}
	golden(t, "empty.state", f.dump())
}

func TestSetRepairsAndMoves(t *testing.T) {
	f := newFake("ul0", "seg0", "seg1")
	b := fakeBackend(t, f)
	if _, err := b.Set(context.Background(), twoNetworks()); err != nil {
		t.Fatal(err)
	}
	before := f.dump()
	// Drift: an entry, a neighbor, a port flag and a link state vanish.
	f.fdb["l2sv100"] = slices.DeleteFunc(f.fdb["l2sv100"], func(e fdbEntry) bool { return !e.Master && bytes.Equal(e.MAC, macB) })
	f.neighs["l2sb100"] = f.neighs["l2sb100"][1:]
	f.links["l2sv100"].suppress = false
	f.links["seg0"].Up = false
	res, err := b.Set(context.Background(), twoNetworks())
	if err != nil {
		t.Fatal(err)
	}
	if res != (vtep.Result{Added: vtep.Counts{MACs: 1, Neighbors: 1}}) {
		t.Errorf("repair: %+v", res)
	}
	if got := f.dump(); got != before {
		t.Errorf("not repaired:\n%s\nwant\n%s", got, before)
	}

	// MAC B moves to VTEP C: one replace, no delete.
	cfg := twoNetworks()
	cfg.Networks[0].MACs[1].VTEP = vtepC
	f.writes = nil
	res, err = b.Set(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res != (vtep.Result{Added: vtep.Counts{MACs: 1}}) {
		t.Errorf("move: %+v", res)
	}
	if want := []string{"add fdb l2sv100 02:00:00:00:02:02 dst 198.51.100.13"}; !slices.Equal(f.writes, want) {
		t.Errorf("move writes %q, want %q", f.writes, want)
	}

	// Learning switched off on VNI 200: the device is recreated.
	cfg.Networks[1].Learn = false
	f.writes = nil
	if _, err := b.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if v := f.links["l2sv200"]; v.VXLAN.Learning || v.learning || v.Master != "l2sb200" || !v.Up {
		t.Errorf("l2sv200 after switch: %+v learning %v", v.kLink, v.learning)
	}
}

func TestSetCollectsErrors(t *testing.T) {
	f := newFake("ul0", "seg0")
	f.failFDB[macC.String()] = true
	b := fakeBackend(t, f)
	cfg := twoNetworks()
	cfg.Networks = append(cfg.Networks, vtep.Network{VNI: 1 << 24}, vtep.Network{VNI: 100})
	res, err := b.Set(context.Background(), cfg)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, s := range []string{
		"add fdb 02:00:00:00:03:03 dst 198.51.100.13 on l2sv100: invalid argument",
		"add fdb 02:00:00:00:03:03 master on l2sv100: invalid argument",
		"local interface seg1: not found",
		"network vni 16777216: out of range",
		"network vni 100: listed twice",
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("error does not wrap EINVAL: %v", err)
	}
	// Everything else was applied, and counted.
	want := vtep.Result{Added: vtep.Counts{Networks: 2, MACs: 1, Flood: 3, Neighbors: 2}}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
}

func TestOwnedNames(t *testing.T) {
	b := fakeBackend(t, newFake())
	for _, tc := range []struct {
		name, kind string
		vni        uint32
		bridge, ok bool
	}{
		{"l2sb100", "bridge", 100, true, true},
		{"l2sv100", "vxlan", 100, false, true},
		{"l2sv16777215", "vxlan", 16777215, false, true},
		{"l2sv16777216", "vxlan", 0, false, false},
		{"l2sb100", "vxlan", 0, false, false},
		{"l2sv100", "bridge", 0, false, false},
		{"l2sb0100", "bridge", 0, false, false},
		{"l2sbx", "bridge", 0, false, false},
		{"l2sb", "bridge", 0, false, false},
		{"xl2sb1", "bridge", 0, false, false},
	} {
		vni, bridge, ok := b.owned(kLink{Name: tc.name, Kind: tc.kind})
		if vni != tc.vni || bridge != tc.bridge || ok != tc.ok {
			t.Errorf("owned(%s %s) = %d %v %v, want %d %v %v", tc.name, tc.kind, vni, bridge, ok, tc.vni, tc.bridge, tc.ok)
		}
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{LocalVTEP: netip.MustParseAddr("192.0.2.1")}.withDefaults()
	if err != nil || o.Port != 4789 || o.Prefix != "l2s" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	if _, err := (Options{}).withDefaults(); err == nil {
		t.Error("missing local vtep accepted")
	}
	if _, err := (Options{LocalVTEP: netip.MustParseAddr("192.0.2.1"), Prefix: "toolong"}).withDefaults(); err == nil {
		t.Error("long prefix accepted")
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Check reports the drift Set would repair, and changes nothing.
func TestCheckReportsDriftWithoutWriting(t *testing.T) {
	f := newFake("ul0", "seg0", "seg1")
	b := fakeBackend(t, f)
	res, err := b.Check(context.Background(), twoNetworks())
	want := vtep.Result{Added: vtep.Counts{Networks: 2, MACs: 2, Flood: 3, Neighbors: 2}}
	if err != nil || res != want {
		t.Fatalf("check before programming: %+v %v, want %+v", res, err, want)
	}
	if len(f.writes) != 0 || len(f.links) != 3 {
		t.Fatalf("Check wrote to the kernel: %q", f.writes)
	}
	if _, err := b.Set(context.Background(), twoNetworks()); err != nil {
		t.Fatal(err)
	}
	f.writes = nil
	if res, err := b.Check(context.Background(), twoNetworks()); err != nil || res != (vtep.Result{}) {
		t.Fatalf("check after Set: %+v %v", res, err)
	}
	// One entry removed behind the backend's back: Check sees exactly it.
	f.fdb["l2sv100"] = slices.DeleteFunc(f.fdb["l2sv100"], func(e fdbEntry) bool { return !e.Master && bytes.Equal(e.MAC, macB) })
	res, err = b.Check(context.Background(), twoNetworks())
	if err != nil || res != (vtep.Result{Added: vtep.Counts{MACs: 1}}) {
		t.Fatalf("check after drift: %+v %v", res, err)
	}
	if len(f.writes) != 0 {
		t.Fatalf("Check wrote to the kernel: %q", f.writes)
	}
	// Set still writes for real after a Check.
	if res, err := b.Set(context.Background(), twoNetworks()); err != nil || res.Added.MACs != 1 || len(f.writes) == 0 {
		t.Fatalf("Set after Check: %+v %v %q", res, err, f.writes)
	}
}
