package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Every node gets its own loopback address (all of 127/8 is local on
// Linux) and a kernel-chosen port, so tests never collide.
var lastIP atomic.Uint32

func nextIP() string {
	n := lastIP.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 10+n/250, 1+n%250)
}

// tWriter logs through t until the test's last cleanup, so memberlist
// goroutines that outlive Shutdown cannot log into a finished test.
type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("L2SPAN_GOSSIP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// fastConfig has shrunken timers.
func fastConfig(t *testing.T, name string, seeds ...string) Config {
	return Config{
		NodeName:       name,
		BindAddr:       nextIP(),
		BindPort:       AnyPort,
		Seeds:          seeds,
		ProbeInterval:  50 * time.Millisecond,
		ProbeTimeout:   25 * time.Millisecond,
		SuspicionMult:  2,
		GossipInterval: 20 * time.Millisecond,
		Logger:         testLogger(t),
	}
}

func start(t *testing.T, cfg Config, meta Meta) *Gossip {
	t.Helper()
	if meta.GatewayID == "" {
		meta = testMeta("pod1", cfg.NodeName)
	}
	g, err := New(cfg, meta)
	if err != nil {
		t.Fatalf("new %s: %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Join(ctx); err != nil {
		t.Fatalf("join %s: %v", cfg.NodeName, err)
	}
	return g
}

// cluster starts n nodes, each seeded with the first, and waits until all
// see all.
func cluster(t *testing.T, n int, mut func(i int, c *Config)) []*Gossip {
	t.Helper()
	var gs []*Gossip
	for i := range n {
		c := fastConfig(t, fmt.Sprintf("gw-%d", i))
		if i > 0 {
			c.Seeds = []string{gs[0].LocalAddr().String()}
		}
		if mut != nil {
			mut(i, &c)
		}
		gs = append(gs, start(t, c, Meta{}))
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("%d nodes see %d alive", n, n), func() bool {
		for _, g := range gs {
			if countState(g, StateAlive) != n {
				return false
			}
		}
		return true
	})
	return gs
}

// waitFor polls cond until it holds or timeout passes and returns how long
// it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func countState(g *Gossip, st State) int {
	n := 0
	for _, m := range g.Members() {
		if m.State == st {
			n++
		}
	}
	return n
}

func member(g *Gossip, name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func stateOf(g *Gossip, name string) State {
	m, ok := member(g, name)
	if !ok {
		return 255
	}
	return m.State
}

func TestJoinViaSeeds(t *testing.T) {
	first := start(t, fastConfig(t, "gw-a"), Meta{})
	// A chain: c only knows b, b only knows a.
	b := start(t, fastConfig(t, "gw-b", first.LocalAddr().String()), Meta{})
	c := start(t, fastConfig(t, "gw-c", "127.0.0.1:1", b.LocalAddr().String()), Meta{})
	waitFor(t, 3*time.Second, "all see 3 alive", func() bool {
		return countState(first, StateAlive) == 3 && countState(b, StateAlive) == 3 && countState(c, StateAlive) == 3
	})
	select {
	case <-first.Changed():
	default:
		t.Error("Changed not signalled on first node")
	}
	ms := c.Members()
	for i, name := range []string{"gw-a", "gw-b", "gw-c"} {
		m := ms[i]
		if m.Name != name || m.MetaErr != nil || m.Meta.GatewayID != name || m.Meta.Pod != "pod1" || !m.Forwarder() {
			t.Errorf("members[%d] = %+v", i, m)
		}
	}
	if m, _ := member(c, "gw-a"); m.Addr != first.LocalAddr() {
		t.Errorf("gw-a addr %s, want %s", m.Addr, first.LocalAddr())
	}
	if s := first.Stats(); s.Joins != 3 {
		t.Errorf("first node stats %+v, want 3 joins", s)
	}
}

func TestJoinNoAnswer(t *testing.T) {
	c := fastConfig(t, "gw-lonely", "127.0.0.1:1")
	g, err := New(c, testMeta("pod1", "gw-lonely"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := g.Join(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join err = %v", err)
	}
}

func TestSetMetaPropagates(t *testing.T) {
	gs := cluster(t, 3, nil)
	m := gs[2].Meta()
	m.Healthy = false
	m.Weight = 250
	m.DVRMAC = net.HardwareAddr{0xfa, 0x16, 0x3f, 1, 2, 3}
	m.VTEP = netip.MustParseAddr("198.51.100.7")
	// Drain the coalesced signal so a new one is observable.
	select {
	case <-gs[0].Changed():
	default:
	}
	if err := gs[2].SetMeta(m); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 3*time.Second, "gw-0 sees gw-2's new meta", func() bool {
		got, _ := member(gs[0], "gw-2")
		return got.Meta.Weight == 250 && !got.Meta.Healthy && bytes.Equal(got.Meta.DVRMAC, m.DVRMAC) && got.Meta.VTEP == m.VTEP
	})
	t.Logf("meta update seen after %s", took)
	select {
	case <-gs[0].Changed():
	default:
		t.Error("Changed not signalled on update")
	}
	if got, _ := member(gs[0], "gw-2"); got.Forwarder() || got.State != StateAlive {
		t.Errorf("unhealthy member: %+v", got)
	}
	if gs[0].Stats().Updates == 0 {
		t.Error("no update counted")
	}
}

func TestOversizedMetaRefused(t *testing.T) {
	big := testMeta(strings.Repeat("p", 600), "gw-big")
	if _, err := New(fastConfig(t, "gw-big"), big); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("New with big meta: %v", err)
	}
	g := start(t, fastConfig(t, "gw-a"), Meta{})
	if err := g.SetMeta(big); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("SetMeta with big meta: %v", err)
	}
	if g.Meta().Pod != "pod1" {
		t.Errorf("meta changed by a refused SetMeta: %+v", g.Meta())
	}
}

// TestKillSeenDead runs the default (tuned) timers: Shutdown without Leave.
func TestKillSeenDead(t *testing.T) {
	var gs []*Gossip
	for i := range 3 {
		c := fastConfig(t, fmt.Sprintf("gw-%d", i))
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval = 0, 0, 0, 0
		if i > 0 {
			c.Seeds = []string{gs[0].LocalAddr().String()}
		}
		gs = append(gs, start(t, c, Meta{}))
	}
	waitFor(t, 5*time.Second, "3 alive", func() bool {
		return countState(gs[0], StateAlive) == 3 && countState(gs[1], StateAlive) == 3
	})
	if err := gs[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 5*time.Second, "gw-2 dead on both survivors", func() bool {
		return stateOf(gs[0], "gw-2") == StateDead && stateOf(gs[1], "gw-2") == StateDead
	})
	t.Logf("kill -> dead on both survivors in %s (tuned defaults)", took)
	s0, s1 := gs[0].Stats(), gs[1].Stats()
	if s0.Deaths != 1 || s1.Deaths != 1 {
		t.Errorf("deaths %d %d", s0.Deaths, s1.Deaths)
	}
	if s0.Suspects+s1.Suspects == 0 {
		t.Error("no survivor saw gw-2 suspect first")
	}
	if m, _ := member(gs[0], "gw-2"); m.Forwarder() {
		t.Error("dead member is a forwarder")
	}
}

func TestLeaveShowsLeft(t *testing.T) {
	gs := cluster(t, 3, nil)
	if err := gs[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := gs[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "gw-2 left on both", func() bool {
		return stateOf(gs[0], "gw-2") == StateLeft && stateOf(gs[1], "gw-2") == StateLeft
	})
	if s := gs[0].Stats(); s.Leaves != 1 || s.Deaths != 0 {
		t.Errorf("stats %+v", s)
	}
	if err := gs[2].SetMeta(testMeta("pod1", "gw-2")); !errors.Is(err, ErrShutdown) {
		t.Errorf("SetMeta after leave: %v", err)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	keyA := bytes.Repeat([]byte{0xa}, 32)
	keyB := bytes.Repeat([]byte{0xb}, 32)
	gs := cluster(t, 2, func(_ int, c *Config) { c.SecretKeys = [][]byte{keyA} })
	seed := gs[0].LocalAddr().String()
	for name, keys := range map[string][][]byte{"wrong-key": {keyB}, "no-key": nil} {
		c := fastConfig(t, name, seed)
		c.SecretKeys = keys
		g, err := New(c, testMeta("pod1", name))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err = g.Join(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s joined", name)
		}
		_ = g.Shutdown()
	}
	for _, g := range gs {
		if ms := g.Members(); len(ms) != 2 {
			t.Errorf("%s sees %d members", g.Name(), len(ms))
		}
	}
	// The seed counted both strangers' attempts, each by its reason.
	waitFor(t, 2*time.Second, "the seed counts the refused joins", func() bool {
		s := gs[0].Stats()
		return s.RefusedUnencrypted > 0 && s.RefusedBadKey > 0
	})
}

func TestRefusalClassifiesMemberlistLines(t *testing.T) {
	for msg, want := range map[string][2]string{
		"failed to receive: encryption is configured but remote state is not encrypted from=192.0.2.9:40001": {RefusedUnencrypted, "192.0.2.9:40001"},
		"failed to receive: no installed keys could decrypt the message from=192.0.2.9:40002":                {RefusedBadKey, "192.0.2.9:40002"},
		"Decrypt packet failed: no installed keys could decrypt the message from=192.0.2.9:7946":             {RefusedBadKey, "192.0.2.9:7946"},
		"failed to receive: EOF from=192.0.2.9:40003":                                                        {"", ""},
		"Suspect gw-1 has failed, no acks received":                                                          {"", ""},
	} {
		if r, from := refusal(msg); r != want[0] || from != want[1] {
			t.Errorf("refusal(%q) = %q, %q; want %q, %q", msg, r, from, want[0], want[1])
		}
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey := bytes.Repeat([]byte{1}, 32)
	newKey := bytes.Repeat([]byte{2}, 32)
	gs := cluster(t, 3, func(_ int, c *Config) { c.SecretKeys = [][]byte{oldKey} })
	phases := []struct {
		name string
		op   func(*Gossip) error
	}{
		{"install", func(g *Gossip) error { return g.InstallKey(newKey) }},
		{"use", func(g *Gossip) error { return g.UseKey(newKey) }},
		{"remove", func(g *Gossip) error { return g.RemoveKey(oldKey) }},
	}
	for i, p := range phases {
		for _, g := range gs {
			if err := p.op(g); err != nil {
				t.Fatalf("%s on %s: %v", p.name, g.Name(), err)
			}
		}
		// Gossip still flows: a meta change reaches everyone.
		src := gs[i%len(gs)]
		m := src.Meta()
		m.Weight = uint16(101 + i)
		if err := src.SetMeta(m); err != nil {
			t.Fatalf("after %s: %v", p.name, err)
		}
		waitFor(t, 3*time.Second, "meta change seen by all after "+p.name, func() bool {
			for _, g := range gs {
				got, _ := member(g, src.Name())
				if got.Meta.Weight != m.Weight || countState(g, StateAlive) != 3 {
					return false
				}
			}
			return true
		})
	}
	for _, g := range gs {
		if s := g.Stats(); s.Deaths != 0 {
			t.Errorf("%s counted deaths during rotation: %+v", g.Name(), s)
		}
		if k := g.Keys(); len(k) != 1 || !bytes.Equal(k[0], newKey) {
			t.Errorf("%s keys %x", g.Name(), k)
		}
	}
	// Only the new key works now.
	c := fastConfig(t, "gw-new", gs[1].LocalAddr().String())
	c.SecretKeys = [][]byte{newKey}
	start(t, c, Meta{})
	waitFor(t, 3*time.Second, "gw-new alive everywhere", func() bool {
		return stateOf(gs[0], "gw-new") == StateAlive && stateOf(gs[2], "gw-new") == StateAlive
	})
	c = fastConfig(t, "gw-old", gs[1].LocalAddr().String())
	c.SecretKeys = [][]byte{oldKey}
	g, err := New(c, testMeta("pod1", "gw-old"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := g.Join(ctx); err == nil {
		t.Error("node with the removed key joined")
	}

	plain := start(t, fastConfig(t, "gw-plain"), Meta{})
	if err := plain.InstallKey(newKey); !errors.Is(err, ErrNoEncryption) {
		t.Errorf("InstallKey without encryption: %v", err)
	}
}

// badMetaDelegate is a raw memberlist peer advertising garbage meta.
type badMetaDelegate struct{}

func (badMetaDelegate) NodeMeta(int) []byte             { return []byte{9, 9, 9} }
func (badMetaDelegate) NotifyMsg([]byte)                {}
func (badMetaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (badMetaDelegate) LocalState(bool) []byte          { return nil }
func (badMetaDelegate) MergeRemoteState([]byte, bool)   {}

func TestBadMetaKept(t *testing.T) {
	g := start(t, fastConfig(t, "gw-a"), Meta{})
	mc := memberlist.DefaultLocalConfig()
	mc.Name = "gw-garbage"
	mc.BindAddr = nextIP()
	mc.BindPort = 0
	mc.Delegate = badMetaDelegate{}
	mc.Logger = slog.NewLogLogger(testLogger(t).Handler(), slog.LevelDebug)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if _, err := ml.Join([]string{g.LocalAddr().String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "gw-garbage seen", func() bool {
		_, ok := member(g, "gw-garbage")
		return ok
	})
	m, _ := member(g, "gw-garbage")
	if m.MetaErr == nil || m.State != StateAlive || m.Forwarder() {
		t.Errorf("garbage member %+v", m)
	}
	if s := g.Stats(); s.BadMeta != 1 {
		t.Errorf("stats %+v", s)
	}
	if df, ok := DF(1, "", g.Members()); ok {
		t.Errorf("DF picked %s", df.Name)
	}
}

// TestChangedNeverBlocks: nobody reads Changed while the cluster churns;
// memberlist must not stall, and one signal is left pending.
func TestChangedNeverBlocks(t *testing.T) {
	gs := cluster(t, 3, nil)
	for i := range 5 {
		m := gs[1].Meta()
		m.Weight = uint16(100 + i)
		if err := gs[1].SetMeta(m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, "last update seen", func() bool {
		m, _ := member(gs[0], "gw-1")
		return m.Meta.Weight == 104
	})
	if n := len(gs[0].Changed()); n != 1 {
		t.Errorf("%d signals pending, want 1", n)
	}
}

// TestMeasureDetection compares kill-to-dead times of the tuned defaults
// and memberlist's LAN timers. It takes ~1 min:
//
//	L2SPAN_GOSSIP_MEASURE=5 go test -run TestMeasureDetection -v ./agent/gossip/
func TestMeasureDetection(t *testing.T) {
	runs := 0
	fmt.Sscan(os.Getenv("L2SPAN_GOSSIP_MEASURE"), &runs)
	if runs <= 0 {
		t.Skip("set L2SPAN_GOSSIP_MEASURE=<runs> to measure")
	}
	for _, tc := range []struct {
		name string
		mut  func(*Config)
	}{
		{"tuned defaults (200ms/100ms/x2, gossip 100ms)", func(c *Config) {
			c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval = 0, 0, 0, 0
		}},
		{"memberlist LAN (1s/500ms/x4, gossip 200ms)", func(c *Config) {
			lan := memberlist.DefaultLANConfig()
			c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = lan.ProbeInterval, lan.ProbeTimeout, lan.SuspicionMult
			c.GossipInterval, c.RetransmitMult = lan.GossipInterval, lan.RetransmitMult
		}},
	} {
		var first, all []time.Duration
		for run := range runs {
			t.Run(fmt.Sprintf("%s/%d", tc.name, run), func(t *testing.T) {
				gs := cluster(t, 3, func(_ int, c *Config) { tc.mut(c) })
				// Let the probe schedule settle at a random phase.
				time.Sleep(time.Duration(300+run*137) * time.Millisecond)
				killed := time.Now()
				_ = gs[2].Shutdown()
				var f time.Duration
				waitFor(t, 30*time.Second, "gw-2 dead on both survivors", func() bool {
					d0, d1 := stateOf(gs[0], "gw-2") == StateDead, stateOf(gs[1], "gw-2") == StateDead
					if f == 0 && (d0 || d1) {
						f = time.Since(killed)
					}
					return d0 && d1
				})
				a := time.Since(killed)
				first, all = append(first, f), append(all, a)
			})
		}
		t.Logf("%s: first survivor %v; both survivors %v", tc.name, stats(first), stats(all))
	}
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	lo, hi, sum := ds[0], ds[0], time.Duration(0)
	for _, d := range ds {
		lo, hi, sum = min(lo, d), max(hi, d), sum+d
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("mean %s min %s max %s (n=%d)", r(sum/time.Duration(len(ds))), r(lo), r(hi), len(ds))
}
