package gossip

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// probes tracks this node's own failure-detector probes: a gateway whose
// probes of two different members failed since it last got an ack is
// more likely cut off itself than watching two peers die at once. Its
// peers are declaring it dead meanwhile (a probe, then the suspicion
// timeout), so it learns of its isolation before they finish.
type probes struct {
	mu      sync.Mutex
	lastAck time.Time
	failed  map[string]struct{}
}

func (p *probes) ack() {
	p.mu.Lock()
	p.lastAck = time.Now()
	clear(p.failed)
	p.mu.Unlock()
}

func (p *probes) fail(name string) {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = map[string]struct{}{}
	}
	p.failed[name] = struct{}{}
	p.mu.Unlock()
}

// Isolated reports whether this node's probes of at least two different
// members failed since its last successful probe.
func (g *Gossip) Isolated() bool {
	g.probes.mu.Lock()
	defer g.probes.mu.Unlock()
	return len(g.probes.failed) >= 2
}

// pingDelegate learns of successful probes (memberlist.PingDelegate).
type pingDelegate struct{ g *Gossip }

func (pingDelegate) AckPayload() []byte { return nil }

func (d pingDelegate) NotifyPingComplete(*memberlist.Node, time.Duration, []byte) {
	d.g.probes.ack()
}

var _ memberlist.PingDelegate = pingDelegate{}
