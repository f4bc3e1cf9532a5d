package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/vtep"
)

// portsBrain keeps ports in memory with the brain's rules that matter here:
// one MAC per network, moves need a newer mobility_seq, IPs may be refused.
type portsBrain struct {
	mu     sync.Mutex
	ports  map[string]api.Port
	n      int
	down   bool
	badIPs map[string]bool
	writes []string
	// refused counts lists refused while down: one per pass attempted.
	refused int
}

func newPortsBrain(ports ...api.Port) *portsBrain {
	b := &portsBrain{ports: map[string]api.Port{}, badIPs: map[string]bool{}}
	for _, p := range ports {
		b.ports[p.ID] = p
	}
	return b
}

var errDown = errors.New("connection refused")

func (b *portsBrain) ListPorts(_ context.Context, o api.ListOptions) (api.List[api.Port], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		b.refused++
		return api.List[api.Port]{}, errDown
	}
	var out []api.Port
	for _, p := range b.ports {
		f := o.Filters
		if (f["pod_id"] != "" && p.PodID != f["pod_id"]) || (f["network_id"] != "" && p.NetworkID != f["network_id"]) ||
			(f["mac"] != "" && p.MAC != f["mac"]) {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return api.List[api.Port]{Items: out}, nil
}

func (b *portsBrain) CreatePort(_ context.Context, pc api.PortCreate) (api.Port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return api.Port{}, errDown
	}
	for _, ip := range pc.IPs {
		if b.badIPs[ip] {
			return api.Port{}, &api.Error{Status: http.StatusBadRequest, ErrorDetail: api.ErrorDetail{Code: "invalid", Field: "ips"}}
		}
	}
	for _, p := range b.ports {
		if p.NetworkID == pc.NetworkID && p.MAC == pc.MAC {
			return api.Port{}, &api.Error{Status: http.StatusConflict, ErrorDetail: api.ErrorDetail{Code: "conflict", Field: "mac"}}
		}
	}
	b.n++
	p := api.Port{ID: fmt.Sprintf("learned-%d", b.n), NetworkID: pc.NetworkID, PodID: pc.PodID, MAC: pc.MAC, IPs: pc.IPs, DeviceOwner: pc.DeviceOwner}
	b.ports[p.ID] = p
	b.writes = append(b.writes, "create "+p.MAC)
	return p, nil
}

func (b *portsBrain) UpdatePort(_ context.Context, id string, u api.PortUpdate) (api.Port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return api.Port{}, errDown
	}
	p, ok := b.ports[id]
	if !ok {
		return p, &api.Error{Status: http.StatusNotFound}
	}
	if u.IPs != nil {
		for _, ip := range *u.IPs {
			if b.badIPs[ip] {
				return api.Port{}, &api.Error{Status: http.StatusBadRequest, ErrorDetail: api.ErrorDetail{Code: "invalid", Field: "ips"}}
			}
		}
		p.IPs = *u.IPs
		b.writes = append(b.writes, "ips "+p.MAC)
	}
	if u.PodID != nil && *u.PodID != p.PodID {
		if u.MobilitySeq != nil && *u.MobilitySeq <= p.MobilitySeq {
			return p, &api.Error{Status: http.StatusConflict, ErrorDetail: api.ErrorDetail{Code: "conflict", Field: "mobility_seq"}}
		}
		if p.Duplicate {
			return p, &api.Error{Status: http.StatusConflict, ErrorDetail: api.ErrorDetail{Code: "conflict", Field: "pod_id"}}
		}
		p.PodID = *u.PodID
		p.MobilitySeq++
		if u.MobilitySeq != nil {
			p.MobilitySeq = *u.MobilitySeq
		}
		b.writes = append(b.writes, fmt.Sprintf("move %s %s %d", p.MAC, p.PodID, p.MobilitySeq))
	}
	b.ports[id] = p
	return p, nil
}

func (b *portsBrain) DeletePort(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errDown
	}
	p, ok := b.ports[id]
	if !ok {
		return &api.Error{Status: http.StatusNotFound}
	}
	delete(b.ports, id)
	b.writes = append(b.writes, "delete "+p.MAC)
	return nil
}

func (b *portsBrain) setDown(v bool) { b.mu.Lock(); b.down = v; b.mu.Unlock() }

func (b *portsBrain) refusals() int { b.mu.Lock(); defer b.mu.Unlock(); return b.refused }

// takeWrites returns and forgets the writes so far.
func (b *portsBrain) takeWrites() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.writes
	b.writes = nil
	return w
}

func (b *portsBrain) port(network, mac string) (api.Port, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.ports {
		if p.NetworkID == network && p.MAC == mac {
			return p, true
		}
	}
	return api.Port{}, false
}

// macSwitch is a vtep.MACSource.
type macSwitch struct {
	mu      sync.Mutex
	macs    []vtep.LocalMAC
	changed chan struct{}
}

func newMACSwitch() *macSwitch { return &macSwitch{changed: make(chan struct{}, 1)} }

func (s *macSwitch) LocalMACs() []vtep.LocalMAC {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.macs)
}

func (s *macSwitch) LocalMACsChanged() <-chan struct{} { return s.changed }

func (s *macSwitch) set(macs ...vtep.LocalMAC) {
	s.mu.Lock()
	s.macs = macs
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func local(vni uint32, mac, ip string) vtep.LocalMAC {
	m := vtep.LocalMAC{VNI: vni, MAC: must(net.ParseMAC(mac))}
	if ip != "" {
		m.IP = netip.MustParseAddr(ip)
	}
	return m
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func learnState() api.PodState {
	return api.PodState{PodID: "pod1", Revision: 3, Networks: []api.NetworkState{
		{NetworkID: "net-a", VNI: 100}, {NetworkID: "net-b", VNI: 200},
	}}
}

type learnRig struct {
	brain *portsBrain
	sw    *macSwitch
	l     *Learner
	fwd   map[uint32]bool
	st    api.PodState
	have  bool
}

func newLearnRig(t *testing.T, ports ...api.Port) *learnRig {
	r := &learnRig{brain: newPortsBrain(ports...), sw: newMACSwitch(), st: learnState(), have: true}
	var mu sync.Mutex
	r.l = NewLearner(r.brain, r.sw, "pod1", func() (api.PodState, bool) { mu.Lock(); defer mu.Unlock(); return r.st, r.have },
		func() map[uint32]bool {
			mu.Lock()
			defer mu.Unlock()
			return r.fwd
		}, time.Hour, slog.New(slog.DiscardHandler))
	r.l.forgetAfter = 0 // most tests judge one pass; TestLearnerForgetAfter tests the hold
	return r
}

func (r *learnRig) sync(t *testing.T) {
	t.Helper()
	if err := r.l.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func TestLearnerCreatesAndDeletes(t *testing.T) {
	other := api.Port{ID: "vm1", NetworkID: "net-a", PodID: "pod1", MAC: "fa:16:3e:00:00:01", DeviceOwner: "compute:nova"}
	r := newLearnRig(t, other)
	r.sw.set(
		local(100, "02:00:00:00:00:0a", "203.0.113.10"),
		local(200, "02:00:00:00:00:0b", ""),
		local(100, "fa:16:3e:00:00:01", ""), // already a port of this pod
		local(999, "02:00:00:00:00:0c", ""), // a VNI the brain does not span here
	)
	r.sync(t)
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"create 02:00:00:00:00:0a", "create 02:00:00:00:00:0b"}) {
		t.Fatalf("writes = %q", w)
	}
	p, ok := r.brain.port("net-a", "02:00:00:00:00:0a")
	if !ok || p.PodID != "pod1" || p.DeviceOwner != LearnedOwner || !slices.Equal(p.IPs, []string{"203.0.113.10"}) {
		t.Fatalf("learned port = %+v, %v", p, ok)
	}
	// Level-triggered: nothing changed, nothing written.
	r.sync(t)
	if w := r.brain.takeWrites(); len(w) != 0 {
		t.Fatalf("second pass wrote %q", w)
	}
	// The switch forgets both learned MACs and the VM's: only the learned
	// ports go.
	r.sw.set(local(200, "02:00:00:00:00:0b", ""))
	r.sync(t)
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"delete 02:00:00:00:00:0a"}) {
		t.Fatalf("writes = %q", w)
	}
	if _, ok := r.brain.port("net-a", "fa:16:3e:00:00:01"); !ok {
		t.Fatal("a port with another device_owner was deleted")
	}
}

func TestLearnerIPLearnedLaterAndRefused(t *testing.T) {
	r := newLearnRig(t)
	r.brain.badIPs["192.0.2.99"] = true
	r.sw.set(local(100, "02:00:00:00:00:0a", ""), local(100, "02:00:00:00:00:0b", "192.0.2.99"))
	r.sync(t)
	if p, _ := r.brain.port("net-a", "02:00:00:00:00:0b"); len(p.IPs) != 0 || p.ID == "" {
		t.Fatalf("port with a refused IP = %+v; want the MAC alone", p)
	}
	r.brain.takeWrites()
	r.sw.set(local(100, "02:00:00:00:00:0a", "203.0.113.10"), local(100, "02:00:00:00:00:0b", "192.0.2.99"))
	r.sync(t)
	if p, _ := r.brain.port("net-a", "02:00:00:00:00:0a"); !slices.Equal(p.IPs, []string{"203.0.113.10"}) {
		t.Fatalf("IP not refreshed: %+v", p)
	}
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"ips 02:00:00:00:00:0a"}) {
		t.Fatalf("writes = %q", w)
	}
}

func TestLearnerMovesPortFromAnotherPod(t *testing.T) {
	r := newLearnRig(t,
		api.Port{ID: "vm2", NetworkID: "net-a", PodID: "pod2", MAC: "fa:16:3e:00:00:02", DeviceOwner: "compute:nova", MobilitySeq: 3},
		api.Port{ID: "vm3", NetworkID: "net-a", PodID: "pod2", MAC: "fa:16:3e:00:00:03", DeviceOwner: "compute:nova", Duplicate: true},
		// The same MAC in another network is another port.
		api.Port{ID: "vm4", NetworkID: "net-b", PodID: "pod2", MAC: "fa:16:3e:00:00:02"},
	)
	r.sw.set(local(100, "fa:16:3e:00:00:02", ""), local(100, "fa:16:3e:00:00:03", ""))
	r.sync(t)
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"move fa:16:3e:00:00:02 pod1 4"}) {
		t.Fatalf("writes = %q", w)
	}
	if p, _ := r.brain.port("net-b", "fa:16:3e:00:00:02"); p.PodID != "pod2" {
		t.Fatalf("port of another network moved: %+v", p)
	}
	// Moved ports are not the learner's: when the switch forgets the MAC
	// the port stays.
	r.sw.set()
	r.sync(t)
	if w := r.brain.takeWrites(); len(w) != 0 {
		t.Fatalf("writes = %q", w)
	}
}

// stalePortBrain answers every move with 409, as the brain does for a
// placement whose sequence is not newer (another gateway won meanwhile).
type stalePortBrain struct{ *portsBrain }

func (b stalePortBrain) UpdatePort(context.Context, string, api.PortUpdate) (api.Port, error) {
	return api.Port{}, &api.Error{Status: http.StatusConflict, ErrorDetail: api.ErrorDetail{Code: "conflict", Field: "mobility_seq"}}
}

func TestLearnerStaleMoveIsLeft(t *testing.T) {
	fb := newPortsBrain(api.Port{ID: "vm2", NetworkID: "net-a", PodID: "pod2", MAC: "fa:16:3e:00:00:02", MobilitySeq: 7})
	sw := newMACSwitch()
	sw.set(local(100, "fa:16:3e:00:00:02", ""))
	l := NewLearner(stalePortBrain{fb}, sw, "pod1", func() (api.PodState, bool) { return learnState(), true }, nil, time.Hour, slog.New(slog.DiscardHandler))
	if err := l.Sync(context.Background()); err != nil {
		t.Fatalf("a 409 is logged and left, got %v", err)
	}
	if w := fb.takeWrites(); len(w) != 0 {
		t.Fatalf("writes = %q (no create beside the refused move)", w)
	}
	if p, _ := fb.port("net-a", "fa:16:3e:00:00:02"); p.PodID != "pod2" {
		t.Fatalf("port = %+v", p)
	}
}

func TestLearnerScope(t *testing.T) {
	r := newLearnRig(t,
		api.Port{ID: "l1", NetworkID: "net-a", PodID: "pod1", MAC: "02:00:00:00:00:01", DeviceOwner: LearnedOwner},
		api.Port{ID: "l2", NetworkID: "net-b", PodID: "pod1", MAC: "02:00:00:00:00:02", DeviceOwner: LearnedOwner},
		api.Port{ID: "l3", NetworkID: "net-gone", PodID: "pod1", MAC: "02:00:00:00:00:03", DeviceOwner: LearnedOwner},
		api.Port{ID: "l4", NetworkID: "net-a", PodID: "pod2", MAC: "02:00:00:00:00:04", DeviceOwner: LearnedOwner},
	)
	// This gateway forwards net-a only: net-b's learned ports belong to
	// the pod's other gateway; net-gone is spanned here no more.
	r.fwd = map[uint32]bool{100: true}
	r.sync(t)
	w := r.brain.takeWrites()
	slices.Sort(w)
	if !slices.Equal(w, []string{"delete 02:00:00:00:00:01", "delete 02:00:00:00:00:03"}) {
		t.Fatalf("writes = %q", w)
	}
	// No desired state yet: nothing is judged.
	r.have = false
	r.sync(t)
	if w := r.brain.takeWrites(); len(w) != 0 {
		t.Fatalf("writes without a desired state = %q", w)
	}
}

func TestLearnerRunBrainDownThenUp(t *testing.T) {
	r := newLearnRig(t)
	r.brain.setDown(true)
	if err := r.l.Sync(context.Background()); err == nil {
		t.Fatal("Sync with the brain down: want an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// At most one pass can have read the switch before the change: two
	// refused passes after it mean one tried with the MAC and failed.
	before := r.brain.refusals()
	r.sw.set(local(100, "02:00:00:00:00:0a", ""))
	waitUntil(t, 5*time.Second, func() bool { return r.brain.refusals() >= before+2 })
	if _, ok := r.brain.port("net-a", "02:00:00:00:00:0a"); ok {
		t.Fatal("created while the brain is down")
	}
	r.brain.setDown(false)
	// No new signal: the retry after the failure converges.
	waitUntil(t, 5*time.Second, func() bool { _, ok := r.brain.port("net-a", "02:00:00:00:00:0a"); return ok })
	// A change signal drives the next pass.
	r.sw.set()
	waitUntil(t, 5*time.Second, func() bool { _, ok := r.brain.port("net-a", "02:00:00:00:00:0a"); return !ok })
	// Trigger (a desired-state change) too.
	r.sw.mu.Lock()
	r.sw.macs = []vtep.LocalMAC{local(200, "02:00:00:00:00:0b", "")}
	r.sw.mu.Unlock()
	r.l.Trigger()
	waitUntil(t, 5*time.Second, func() bool { _, ok := r.brain.port("net-b", "02:00:00:00:00:0b"); return ok })
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLearnerForgetAfter(t *testing.T) {
	r := newLearnRig(t)
	r.l.forgetAfter = 5 * time.Second
	now := time.Unix(1000, 0)
	r.l.now = func() time.Time { return now }
	r.sw.set(local(100, "02:00:00:00:00:0a", ""), local(100, "02:00:00:00:00:0b", ""))
	r.sync(t)
	r.brain.takeWrites()
	first, _ := r.brain.port("net-a", "02:00:00:00:00:0a")

	// The switch clears its table (a restart): nothing is deleted yet,
	// and a pass is due when the hold ends.
	r.sw.set()
	r.sync(t)
	if w := r.brain.takeWrites(); len(w) != 0 {
		t.Fatalf("writes within the hold = %q", w)
	}
	if want := now.Add(5 * time.Second); !r.l.due.Equal(want) {
		t.Fatalf("due = %v, want %v", r.l.due, want)
	}
	// It learns one MAC again within the hold: that port is kept as it
	// was; the other goes once the hold has passed.
	now = now.Add(3 * time.Second)
	r.sw.set(local(100, "02:00:00:00:00:0a", ""))
	r.sync(t)
	now = now.Add(2 * time.Second)
	r.sync(t)
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"delete 02:00:00:00:00:0b"}) {
		t.Fatalf("writes = %q", w)
	}
	if p, _ := r.brain.port("net-a", "02:00:00:00:00:0a"); p.ID != first.ID {
		t.Fatalf("port re-made: %s, was %s", p.ID, first.ID)
	}
	// A MAC gone, back, gone again starts a new hold.
	r.sw.set()
	now = now.Add(time.Second)
	r.sync(t)
	now = now.Add(4 * time.Second)
	r.sync(t)
	if w := r.brain.takeWrites(); len(w) != 0 {
		t.Fatalf("writes = %q", w)
	}
	now = now.Add(time.Second)
	r.sync(t)
	if w := r.brain.takeWrites(); !slices.Equal(w, []string{"delete 02:00:00:00:00:0a"}) {
		t.Fatalf("writes = %q", w)
	}
	if len(r.l.absent) != 1 || !r.l.due.IsZero() {
		t.Fatalf("absent = %v, due = %v", r.l.absent, r.l.due)
	}
	r.sync(t)
	if len(r.l.absent) != 0 {
		t.Fatalf("absent not pruned: %v", r.l.absent)
	}
}

func TestLearnerRunDeletesAfterHold(t *testing.T) {
	r := newLearnRig(t)
	r.l.forgetAfter = 300 * time.Millisecond
	r.sw.set(local(100, "02:00:00:00:00:0a", ""))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, 5*time.Second, func() bool { _, ok := r.brain.port("net-a", "02:00:00:00:00:0a"); return ok })
	gone := time.Now()
	r.sw.set()
	// No further signal: the pass due at the end of the hold deletes it
	// (the resync period is an hour).
	waitUntil(t, 5*time.Second, func() bool { _, ok := r.brain.port("net-a", "02:00:00:00:00:0a"); return !ok })
	if d := time.Since(gone); d < 300*time.Millisecond {
		t.Fatalf("deleted after %s, within the hold", d)
	}
}
