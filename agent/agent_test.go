package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/vtep"
)

// fakeMembership is a Membership whose members the test sets; SetMeta
// changes self's meta and is recorded with the dataplane attempts made by
// then.
type fakeMembership struct {
	mu      sync.Mutex
	self    string
	members map[string]gossip.Member
	changed chan struct{}
	metas   []metaCall
	// attempts, if set, counts the dataplane attempts at each SetMeta.
	attempts func() int
}

type metaCall struct {
	at       time.Time
	healthy  bool
	attempts int
}

func newFakeMembership(self string, members ...gossip.Member) *fakeMembership {
	f := &fakeMembership{self: self, members: map[string]gossip.Member{}, changed: make(chan struct{}, 1)}
	for _, m := range members {
		f.members[m.Name] = m
	}
	return f
}

func (f *fakeMembership) Name() string { return f.self }

func (f *fakeMembership) Members() []gossip.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gossip.Member
	for _, m := range f.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b gossip.Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (f *fakeMembership) Changed() <-chan struct{} { return f.changed }

func (f *fakeMembership) SetMeta(m gossip.Meta) error {
	call := metaCall{at: time.Now(), healthy: m.Healthy}
	if f.attempts != nil {
		call.attempts = f.attempts()
	}
	f.mu.Lock()
	self := f.members[f.self]
	self.Meta = m
	f.members[f.self] = self
	f.metas = append(f.metas, call)
	f.mu.Unlock()
	f.notify()
	return nil
}

func (f *fakeMembership) Join(context.Context) error { return nil }
func (f *fakeMembership) Leave(time.Duration) error  { return nil }
func (f *fakeMembership) Stats() (s gossip.Stats)    { return s }
func (f *fakeMembership) set(m gossip.Member) {
	f.mu.Lock()
	f.members[m.Name] = m
	f.mu.Unlock()
	f.notify()
}
func (f *fakeMembership) metaCalls() []metaCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.metas)
}
func (f *fakeMembership) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// stateBrain serves a snapshot, then the updates the test sends.
type stateBrain struct {
	snapshot api.PodState
	updates  chan api.WatchEvent
}

func (b *stateBrain) RegisterGateway(_ context.Context, g api.Gateway) (api.Gateway, error) {
	return g, nil
}

func (b *stateBrain) Watch(ctx context.Context, _ string, _ int64, _ time.Duration, fn func(api.WatchEvent) error) error {
	st := b.snapshot
	if err := fn(api.WatchEvent{Type: api.EventSnapshot, Revision: st.Revision, State: &st}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-b.updates:
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}

func podState(rev int64, nets ...api.NetworkState) api.PodState {
	return api.PodState{PodID: "pod1", Revision: rev, Networks: nets, Gateways: testGateways}
}

// testGateways are the gateways the tests' members claim to be, as the
// brain registered them.
var testGateways = []api.PodGateway{
	{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.11"}, {ID: "gw1a", PodID: "pod1", VTEP: "198.51.100.11"},
	{ID: "gw1b", PodID: "pod1", VTEP: "198.51.100.21"}, {ID: "gw2", PodID: "pod2", VTEP: "198.51.100.12"},
	{ID: "gw2b", PodID: "pod2", VTEP: "198.51.100.22"}, {ID: "gw3", PodID: "pod3", VTEP: "198.51.100.13"},
}

// startAgent runs an agent of gw1 in pod1 until the test ends.
func startAgent(t *testing.T, cfg Config, members Membership, dp vtep.Dataplane, brain Brain) *Agent {
	t.Helper()
	cfg.Pod, cfg.GatewayID, cfg.VTEP, cfg.Brain = "pod1", "gw1", netip.MustParseAddr("198.51.100.11"), brain
	cfg.Logger = testLogger(t)
	a, err := New(cfg, members, dp, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// vniForwardedBy finds a VNI whose designated forwarder in pod1 is df.
func vniForwardedBy(t *testing.T, df string, members []gossip.Member) uint32 {
	t.Helper()
	for vni := uint32(100); vni < 10000; vni++ {
		if m, ok := gossip.DF(vni, "pod1", members); ok && m.Name == df {
			return vni
		}
	}
	t.Fatalf("no VNI forwarded by %s", df)
	return 0
}

func hasVNI(cfg vtep.Config, vni uint32) bool { return slices.Contains(vnis(cfg), vni) }

func TestAgentWithdrawsAfterThreeFailuresAndCoolsDown(t *testing.T) {
	self, peer := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw1b", "pod1", "198.51.100.21", gossip.StateAlive)
	vni := vniForwardedBy(t, "gw1", []gossip.Member{self, peer})
	ms := newFakeMembership("gw1", self, peer)
	dp := &fakeDataplane{}
	dp.setFail(func(c vtep.Config) error {
		if len(c.Networks) > 0 {
			return errCannotProgram
		}
		return nil
	})
	ms.attempts = func() int { return len(dp.history()) }
	brain := &stateBrain{snapshot: podState(1, api.NetworkState{NetworkID: "n1", VNI: vni})}
	const cooldown = 500 * time.Millisecond
	startAgent(t, Config{Hold: 20 * time.Millisecond, Resync: cooldown}, ms, dp, brain)

	waitFor(t, "withdrawn", func() bool { return len(ms.metaCalls()) >= 1 })
	sick := ms.metaCalls()[0]
	if sick.healthy || sick.attempts != withdrawAfter {
		t.Fatalf("first health change %+v: want unhealthy after exactly %d failed Sets", sick, withdrawAfter)
	}
	// Withdrawn, the peer forwards the network: this gateway's Sets now
	// succeed without it, which proves nothing. It comes back only after
	// the cooldown, to try again.
	waitFor(t, "back after the cooldown", func() bool { return len(ms.metaCalls()) >= 2 })
	back := ms.metaCalls()[1]
	if !back.healthy || back.at.Sub(sick.at) < cooldown {
		t.Fatalf("came back %+v, %s after withdrawing: want healthy, not before the %s cooldown", back, back.at.Sub(sick.at), cooldown)
	}
	var emptyOK bool
	for _, c := range dp.history() {
		emptyOK = emptyOK || (c.err == nil && c.at.Before(back.at) && !hasVNI(c.cfg, vni))
	}
	if !emptyOK {
		t.Fatal("no successful Set without the network while withdrawn")
	}
}

func TestAgentComesBackAtOnceWhenTheFullPlanApplies(t *testing.T) {
	// Alone in its pod, a withdrawn gateway still forwards everything: the
	// first success holds all its networks and ends the withdrawal.
	self := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive)
	ms := newFakeMembership("gw1", self)
	dp := &fakeDataplane{}
	var mu sync.Mutex
	broken := true
	dp.setFail(func(vtep.Config) error {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return errCannotProgram
		}
		return nil
	})
	ms.attempts = func() int {
		mu.Lock()
		broken = false // the dataplane recovers as the gateway withdraws
		mu.Unlock()
		return 0
	}
	brain := &stateBrain{snapshot: podState(1, api.NetworkState{NetworkID: "n1", VNI: 100})}
	startAgent(t, Config{Hold: 20 * time.Millisecond, Resync: time.Hour}, ms, dp, brain)
	waitFor(t, "withdrawn and back", func() bool { return len(ms.metaCalls()) >= 2 })
	if c := ms.metaCalls(); c[0].healthy || !c[1].healthy {
		t.Fatalf("health changes %+v: want withdrawn, then back without the hour-long cooldown", c)
	}
}

func TestAgentHandoverHoldsBeforeTakingOverFromALiveGateway(t *testing.T) {
	self, peer := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw1b", "pod1", "198.51.100.21", gossip.StateAlive)
	vni := vniForwardedBy(t, "gw1b", []gossip.Member{self, peer})
	ms := newFakeMembership("gw1", self, peer)
	dp := &fakeDataplane{}
	brain := &stateBrain{snapshot: podState(1, api.NetworkState{NetworkID: "n1", VNI: vni})}
	const hold = 300 * time.Millisecond
	startAgent(t, Config{Hold: hold, Resync: time.Hour}, ms, dp, brain)
	waitFor(t, "first reconcile", func() bool { return len(dp.history()) >= 1 })
	if h := dp.history(); hasVNI(h[0].cfg, vni) {
		t.Fatalf("gw1 forwards VNI %d whose forwarder is gw1b: %v", vni, vnis(h[0].cfg))
	}
	// gw1b withdraws but stays alive: gw1 becomes the forwarder and holds
	// back, so that gw1b has released before it takes over.
	sickPeer := peer
	sickPeer.Meta.Healthy = false
	changedAt := time.Now()
	ms.set(sickPeer)
	waitFor(t, "taken over", func() bool {
		h := dp.history()
		return hasVNI(h[len(h)-1].cfg, vni)
	})
	for _, c := range dp.history() {
		if hasVNI(c.cfg, vni) && c.at.Sub(changedAt) < hold {
			t.Fatalf("took VNI %d over %s after the change, within the %s hold", vni, c.at.Sub(changedAt), hold)
		}
	}
}

func TestAgentHandoverTakesOverFromADeadGatewayAtOnce(t *testing.T) {
	self, peer := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw1b", "pod1", "198.51.100.21", gossip.StateAlive)
	vni := vniForwardedBy(t, "gw1b", []gossip.Member{self, peer})
	ms := newFakeMembership("gw1", self, peer)
	dp := &fakeDataplane{}
	brain := &stateBrain{snapshot: podState(1, api.NetworkState{NetworkID: "n1", VNI: vni})}
	const hold = 2 * time.Second
	startAgent(t, Config{Hold: hold, Resync: time.Hour}, ms, dp, brain)
	waitFor(t, "first reconcile", func() bool { return len(dp.history()) >= 1 })
	dead := peer
	dead.State = gossip.StateDead
	changedAt := time.Now()
	ms.set(dead)
	waitFor(t, "taken over", func() bool {
		h := dp.history()
		return hasVNI(h[len(h)-1].cfg, vni)
	})
	h := dp.history()
	if took := h[len(h)-1].at.Sub(changedAt); took >= hold {
		t.Fatalf("took over from a dead gateway after %s: want at once, not after the %s hold", took, hold)
	}
}

// getDataplane reads GET /dataplane from a's handler.
func getDataplane(t *testing.T, a *Agent) api.AgentDataplane {
	t.Helper()
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/dataplane", nil))
	var v api.AgentDataplane
	if err := json.NewDecoder(rec.Body).Decode(&v); err != nil {
		t.Fatalf("decode /dataplane: %v", err)
	}
	return v
}

func TestAgentDataplaneAfterAFailedSetIsTheLastApplied(t *testing.T) {
	self := member("gw1", "pod1", "198.51.100.11", gossip.StateAlive)
	remote := member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)
	ms := newFakeMembership("gw1", self, remote)
	dp := &fakeDataplane{}
	dp.setFail(func(c vtep.Config) error {
		if hasVNI(c, 200) {
			return errCannotProgram
		}
		return nil
	})
	n100 := api.NetworkState{NetworkID: "n100", VNI: 100, RemotePods: []string{"pod2"}}
	brain := &stateBrain{snapshot: podState(1, n100), updates: make(chan api.WatchEvent)}
	a := startAgent(t, Config{Hold: 20 * time.Millisecond, Resync: time.Hour, Weight: 7}, ms, dp, brain)
	waitFor(t, "ready", a.Ready)

	brain.updates <- api.WatchEvent{Type: api.EventUpdate, Revision: 2,
		Networks: []api.NetworkState{{NetworkID: "n200", VNI: 200, RemotePods: []string{"pod2"}}}}
	waitFor(t, "a failed Set", func() bool { return getDataplane(t, a).LastError != "" })
	v := getDataplane(t, a)
	if len(v.Networks) != 1 || v.Networks[0].VNI != 100 || v.Networks[0].Flood != 1 || !strings.Contains(v.LastError, errCannotProgram.Error()) {
		t.Fatalf("/dataplane after a failed Set: %+v; want the applied VNI 100 only, and the error", v)
	}
	st := a.status()
	if st.Forwarding != 1 || !slices.Equal(st.ForwardedVNIs, []uint32{100}) || st.Weight != 7 {
		t.Fatalf("status after a failed Set: %+v; want forwarding VNI 100 only, weight 7", st)
	}

	dp.setFail(nil)
	waitFor(t, "applied in full", func() bool { v := getDataplane(t, a); return v.LastError == "" && len(v.Networks) == 2 })
	if st := a.status(); !slices.Equal(st.ForwardedVNIs, []uint32{100, 200}) || st.Forwarding != 2 {
		t.Fatalf("status once applied: %+v", st)
	}
}

func TestConfigDefaultsApplyBeforeTheMetaIsValidated(t *testing.T) {
	cfg := Config{Pod: "pod1", GatewayID: "gw1", VTEP: netip.MustParseAddr("198.51.100.11")}
	m := cfg.GossipMeta()
	if err := m.Validate(); err != nil || m.Backend != gossip.BackendLinux || m.Weight != gossip.DefaultWeight || !m.Healthy {
		t.Fatalf("meta of a config without backend or weight: %+v, %v", m, err)
	}
	a, err := New(cfg, newFakeMembership("gw1"), &fakeDataplane{}, nil)
	if err != nil {
		t.Fatalf("New without a backend: %v", err)
	}
	if st := a.status(); st.Weight != int(gossip.DefaultWeight) {
		t.Fatalf("reported weight %d, want the default %d", st.Weight, gossip.DefaultWeight)
	}
}
