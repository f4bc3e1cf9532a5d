// Package gossip finds the other gateways of a spanned L2 network: each
// agent is a hashicorp/memberlist node whose meta carries its pod, VTEP,
// backend, DVR MAC, health and designated-forwarder weight. It keeps a
// local table of members (including dead and left ones, for a while),
// signals changes on a coalescing channel, and picks a pod's designated
// forwarder for a network by weighted rendezvous hashing (DF).
package gossip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/l2span/l2span/internal/logevery"
)

// State of a member as this agent sees it.
type State uint8

const (
	// StateAlive: answering probes.
	StateAlive State = iota
	// StateSuspect: this agent's own probe of the member failed and
	// memberlist is waiting for the suspicion to time out or be refuted.
	// memberlist v0.7.0 tells no delegate about suspicion, so only the
	// prober sees it; it still counts as live for DF so that all agents
	// agree.
	StateSuspect
	// StateLeaving: the member announced Leave; it still forwards but no
	// longer counts for DF, so peers drain it before it goes.
	StateLeaving
	// StateDead: failed (no leave).
	StateDead
	// StateLeft: left gracefully.
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateLeaving:
		return "leaving"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Member is one node of the gossip cluster, self included.
type Member struct {
	Name string
	// Addr is the member's gossip address.
	Addr  netip.AddrPort
	State State
	// Since is when this agent saw State begin.
	Since time.Time
	// Meta is the member's decoded meta; zero when MetaErr is set.
	Meta Meta
	// MetaErr is why the member's meta could not be decoded: the member
	// is kept but never forwards.
	MetaErr error
}

// Live reports whether m is alive or only suspected.
func (m Member) Live() bool { return m.State == StateAlive || m.State == StateSuspect }

// Forwarder reports whether m may be designated forwarder: live, not
// leaving, good meta, healthy.
func (m Member) Forwarder() bool { return m.Live() && m.MetaErr == nil && m.Meta.Healthy }

// Stats counts membership events since New (self included); for metrics.
type Stats struct {
	Joins    uint64 // a member appeared or came back
	Updates  uint64 // a member's meta changed
	Suspects uint64 // this agent's probe of a member failed
	Leaves   uint64 // a member left gracefully
	Deaths   uint64 // a member was declared dead
	BadMeta  uint64 // a member's meta could not be decoded
	// RefusedUnencrypted counts plain-text streams (joins, push/pull) refused
	// because gossip is encrypted here.
	RefusedUnencrypted uint64
	// RefusedBadKey counts packets and streams no installed key decrypts
	// (a wrong key; on UDP also a stranger's plain-text packet).
	RefusedBadKey uint64
}

// deadRetention is how long dead and left members stay in Members.
const deadRetention = 10 * time.Minute

// DefaultLeaveTimeout is used by Leave when given no timeout.
const DefaultLeaveTimeout = 2 * time.Second

// metaUpdateTimeout bounds SetMeta's wait for its broadcast.
const metaUpdateTimeout = 2 * time.Second

// ErrNoEncryption is returned by key operations when the Gossip was
// created without secret keys.
var ErrNoEncryption = errors.New("gossip encryption is off (no secret keys at start)")

// ErrShutdown is returned by operations after Leave or Shutdown.
var ErrShutdown = errors.New("gossip has left or is shut down")

// Gossip is one agent's membership in the gateway cluster.
type Gossip struct {
	cfg       Config
	log       *slog.Logger
	ml        *memberlist.Memberlist
	keyring   *memberlist.Keyring
	changed   chan struct{}
	localAddr netip.AddrPort

	// opMu serializes SetMeta, Leave and Shutdown (memberlist panics on
	// Leave after Shutdown).
	opMu     sync.Mutex
	leaving  bool
	shutdown bool

	// mu guards what memberlist's callbacks touch. They run under
	// memberlist's node lock, so nothing holding mu calls memberlist.
	mu        sync.Mutex
	meta      Meta
	metaBytes []byte
	members   map[string]*Member
	stats     Stats
	// probes tracks this node's own probes (liveness.go).
	probes probes

	// refusedLog limits the warnings about refused peers, per address.
	refusedLog *logevery.Limiter
}

// New validates cfg and meta and starts listening; it joins nobody until
// Join.
func New(cfg Config, meta Meta) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gossip: config: %w", err)
	}
	c := cfg.withDefaults()
	enc, err := meta.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if c.NodeName == "" {
		c.NodeName = meta.GatewayID
	}
	g := &Gossip{
		cfg:       c,
		log:       c.Logger,
		changed:   make(chan struct{}, 1),
		meta:      meta.normalized(),
		metaBytes: enc,
		members:   make(map[string]*Member),

		refusedLog: logevery.New(refusedLogEvery),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.GossipInterval = c.GossipInterval
	mc.RetransmitMult = c.RetransmitMult
	mc.TCPTimeout = defaultTCPTimeout
	d := &delegate{g}
	mc.Delegate = d
	mc.Events = d
	mc.Ping = pingDelegate{g}
	mc.Alive = d
	mc.Conflict = d
	mc.Logger = log.New(logWriter{g}, "", 0)
	if len(c.SecretKeys) > 0 {
		kr, err := memberlist.NewKeyring(c.SecretKeys[1:], c.SecretKeys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: config: secret_keys: %w", err)
		}
		mc.Keyring = kr
		g.keyring = kr
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist on %s:%d: %w", c.BindAddr, c.BindPort, err)
	}
	g.ml = ml
	g.mu.Lock()
	if self, ok := g.members[c.NodeName]; ok {
		g.localAddr = self.Addr
	}
	g.mu.Unlock()
	return g, nil
}

// Name is this node's memberlist name.
func (g *Gossip) Name() string { return g.cfg.NodeName }

// LocalAddr is the address peers reach this node at (with the port bound
// when BindPort was AnyPort).
func (g *Gossip) LocalAddr() netip.AddrPort { return g.localAddr }

// Join contacts the configured seeds, retrying with backoff until one
// answers or ctx ends. Without seeds this is the first node: nil at once.
func (g *Gossip) Join(ctx context.Context) error {
	seeds := g.cfg.Seeds
	if len(seeds) == 0 {
		return nil
	}
	wait := 100 * time.Millisecond
	for {
		n, err := g.ml.Join(seeds)
		if n > 0 {
			if err != nil {
				g.log.Debug("gossip: some seeds did not answer", "joined", n, "err", err)
			}
			g.log.Info("gossip: joined", "seeds_answered", n)
			return nil
		}
		g.log.Info("gossip: join failed, retrying", "seeds", seeds, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gossip: join %v: %w (last attempt: %w)", seeds, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// Members returns a snapshot of the cluster as this agent sees it, self
// included, sorted by name. Dead and left members stay for a while.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruneLocked(time.Now())
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		c := *m
		c.Meta.DVRMAC = slices.Clone(m.Meta.DVRMAC)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Changed is signalled (level-triggered, coalesced, capacity 1) after any
// change to Members: join, update, suspect, leave, death. Read Members
// after receiving.
func (g *Gossip) Changed() <-chan struct{} { return g.changed }

// Stats returns the event counters.
func (g *Gossip) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// Meta returns this node's current meta (defaults applied).
func (g *Gossip) Meta() Meta {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.meta
	m.leaving = false
	return m
}

// SetMeta changes this node's meta and broadcasts it. The change is in
// effect locally (and spreads by push/pull) even if the broadcast wait
// times out, which is the only error after validation.
func (g *Gossip) SetMeta(m Meta) error {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if g.leaving || g.shutdown {
		return ErrShutdown
	}
	return g.setMetaLocked(m, metaUpdateTimeout)
}

func (g *Gossip) setMetaLocked(m Meta, timeout time.Duration) error {
	enc, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	g.mu.Lock()
	g.meta = m.normalized()
	g.metaBytes = enc
	g.mu.Unlock()
	if err := g.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: broadcast meta: %w", err)
	}
	return nil
}

// Leave announces that this node is leaving: first a meta update that
// drains it from DF on every peer, then memberlist's leave, so peers show
// it as left rather than dead. It waits at most timeout (DefaultLeaveTimeout
// if <= 0) for the broadcasts. Call Shutdown after it.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if g.shutdown {
		return ErrShutdown
	}
	if timeout <= 0 {
		timeout = DefaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	g.leaving = true
	m := g.Meta()
	m.leaving = true
	errMeta := g.setMetaLocked(m, timeout/2)
	errLeave := g.ml.Leave(max(time.Until(deadline), 10*time.Millisecond))
	if errLeave != nil {
		errLeave = fmt.Errorf("gossip: leave: %w", errLeave)
	}
	return errors.Join(errMeta, errLeave)
}

// Shutdown stops gossip at once; without Leave the peers see this node
// die. Safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if g.shutdown {
		return nil
	}
	g.shutdown = true
	if err := g.ml.Shutdown(); err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// Key rotation across a running cluster, run on every node, each phase
// finished everywhere before the next: InstallKey(new); UseKey(new);
// RemoveKey(old). A node receives with every installed key and sends with
// the primary one.

// InstallKey adds key to the keyring (not primary).
func (g *Gossip) InstallKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.AddKey(key); err != nil {
		return fmt.Errorf("gossip: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the primary (sending) key.
func (g *Gossip) UseKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	return nil
}

// RemoveKey drops a key that is not the primary one.
func (g *Gossip) RemoveKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("gossip: remove key: %w", err)
	}
	return nil
}

// Keys returns the installed keys, primary first (nil without encryption).
func (g *Gossip) Keys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	return g.keyring.GetKeys()
}

// notify signals Changed without ever blocking.
func (g *Gossip) notify() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

func (g *Gossip) pruneLocked(now time.Time) {
	for name, m := range g.members {
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) > deadRetention {
			delete(g.members, name)
		}
	}
}

// setLocked records state for n (meta decoded from n.Meta) and returns
// the member.
func (g *Gossip) setLocked(n *memberlist.Node, st State) *Member {
	m, ok := g.members[n.Name]
	if !ok {
		m = &Member{Name: n.Name}
		g.members[n.Name] = m
	}
	if ip, ok := netip.AddrFromSlice(n.Addr); ok {
		m.Addr = netip.AddrPortFrom(ip.Unmap(), n.Port)
	}
	var meta Meta
	err := meta.UnmarshalBinary(n.Meta)
	if err != nil {
		if m.MetaErr == nil || m.MetaErr.Error() != err.Error() {
			g.stats.BadMeta++
			g.log.Warn("gossip: bad meta from peer, ignoring it for forwarding", "node", n.Name, "addr", m.Addr, "err", err)
		}
		meta = Meta{}
	}
	m.Meta, m.MetaErr = meta, err
	switch {
	case st == StateAlive && meta.leaving:
		st = StateLeaving
	case st == StateDead && meta.leaving:
		st = StateLeft
	}
	if !ok || m.State != st {
		m.State = st
		m.Since = time.Now()
	}
	return m
}

func (g *Gossip) markSuspect(name string) {
	g.mu.Lock()
	m, ok := g.members[name]
	if ok && m.State == StateAlive {
		m.State = StateSuspect
		m.Since = time.Now()
		g.stats.Suspects++
	}
	g.mu.Unlock()
	g.probes.fail(name)
	if ok {
		g.log.Debug("gossip: member suspect", "node", name)
		g.notify()
	}
}

// delegate keeps memberlist's callbacks off Gossip's exported API.
type delegate struct{ g *Gossip }

// NodeMeta implements memberlist.Delegate.
func (d *delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaBytes) > limit { // cannot happen: checked at encode
		return nil
	}
	return d.g.metaBytes
}

// NotifyMsg implements memberlist.Delegate (no user messages).
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate (no user broadcasts).
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate (no user state).
func (d *delegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate (no user state).
func (d *delegate) MergeRemoteState([]byte, bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	g := d.g
	g.mu.Lock()
	m := g.setLocked(n, StateAlive)
	g.stats.Joins++
	g.mu.Unlock()
	g.log.Info("gossip: member joined", "node", n.Name, "addr", m.Addr, "pod", m.Meta.Pod, "state", m.State)
	g.notify()
}

// NotifyUpdate implements memberlist.EventDelegate.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	g := d.g
	g.mu.Lock()
	m := g.setLocked(n, StateAlive)
	g.stats.Updates++
	g.mu.Unlock()
	g.log.Debug("gossip: member updated", "node", n.Name, "state", m.State)
	g.notify()
}

// NotifyLeave implements memberlist.EventDelegate. memberlist v0.7.0 does
// not say whether the node left or died (Node.State is never set); a node
// that left announced it first in its meta (see Leave).
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	g := d.g
	g.mu.Lock()
	m := g.setLocked(n, StateDead)
	if m.State == StateLeft {
		g.stats.Leaves++
	} else {
		g.stats.Deaths++
	}
	g.mu.Unlock()
	g.log.Info("gossip: member gone", "node", n.Name, "state", m.State)
	g.notify()
}

// NotifyAlive implements memberlist.AliveDelegate: an alive message about
// a member this agent suspects means it refuted the suspicion.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	g := d.g
	g.mu.Lock()
	m, ok := g.members[n.Name]
	cleared := ok && m.State == StateSuspect
	if cleared {
		m.State = StateAlive
		m.Since = time.Now()
	}
	g.mu.Unlock()
	if cleared {
		g.notify()
	}
	return nil
}

// NotifyConflict implements memberlist.ConflictDelegate.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g.log.Warn("gossip: two nodes claim one name", "node", existing.Name,
		"known_addr", existing.Address(), "other_addr", other.Address())
}

// logWriter routes memberlist's log lines to slog at debug level and
// watches for this node's failed probes (the only sign of suspicion
// memberlist gives).
type logWriter struct{ g *Gossip }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level, msg := "", line
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if l, m, ok := strings.Cut(rest, "] "); ok {
			level, msg = l, m
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	w.g.noteRefused(msg)
	if name, ok := strings.CutPrefix(msg, "Suspect "); ok {
		if name, ok := strings.CutSuffix(name, " has failed, no acks received"); ok {
			w.g.markSuspect(name)
		}
	}
	w.g.log.Debug(msg, "source", "memberlist", "memberlist_level", level)
	return len(p), nil
}
