package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// churner drives ports through the brain's API the way a busy cloud does:
// single and bulk creates, moves between pods, IP changes and deletes, at
// random, each with a short deadline so a killed brain costs a failed
// call, not a stuck loop. MACs and IPs are never reused, so no two ports
// ever claim one address (what the gateways must hold then stays exact).
type churner struct {
	c    *api.Client
	nets []api.Network
	pods []string
	rng  *rand.Rand

	mu    sync.Mutex
	ports []churnPort
	n     int       // MACs handed out
	ip4   []int     // IPv4 addresses handed out, per network
	ok    opCounter // calls that succeeded, by kind
	bad   opCounter // calls that failed (brain down, refused), by kind
	last  []string  // a few of the last failures, for the log

	stop chan struct{}
	wg   sync.WaitGroup
}

type churnPort struct {
	id    string
	net   int
	pod   string
	moves int
}

type opCounter map[string]int

func (o opCounter) String() string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, o[k])
	}
	return strings.TrimSpace(b.String())
}

func (o opCounter) total() int {
	n := 0
	for _, v := range o {
		n += v
	}
	return n
}

func newChurner(c *api.Client, nets []api.Network, pods []string, seed uint64) *churner {
	return &churner{c: c, nets: nets, pods: pods, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ip4: make([]int, len(nets)), ok: opCounter{}, bad: opCounter{}}
}

// start runs rate operations per second until pause.
func (ch *churner) start(rate int) {
	ch.stop = make(chan struct{})
	ch.wg.Add(1)
	go func() {
		defer ch.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ch.stop:
				return
			case <-tick.C:
				ch.step()
			}
		}
	}()
}

func (ch *churner) pause() {
	close(ch.stop)
	ch.wg.Wait()
}

// newPort is a port of a random network in a random pod with a fresh MAC,
// a fresh IPv6 and, while the network's /24 lasts, a fresh IPv4.
func (ch *churner) newPort() (api.PortCreate, int) {
	k := ch.rng.IntN(len(ch.nets))
	ch.n++
	return api.PortCreate{NetworkID: ch.nets[k].ID, PodID: ch.pods[ch.rng.IntN(len(ch.pods))],
		MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", 0x40+k, ch.n>>8&0xff, ch.n&0xff), IPs: ch.freshIPs(k)}, k
}

func (ch *churner) freshIPs(k int) []string {
	ch.n++
	ips := []string{fmt.Sprintf("2001:db8:%x::%x", k+1, 0x1000+ch.n)}
	if ch.ip4[k] < 250 {
		ch.ip4[k]++
		ips = append(ips, fmt.Sprintf("203.0.113.%d", 3+ch.ip4[k]))
	}
	return ips
}

// step does one operation. Ports are kept between 20 and 300.
func (ch *churner) step() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r := ch.rng.IntN(100)
	switch {
	case len(ch.ports) < 20 || (r < 25 && len(ch.ports) < 300):
		pc, k := ch.newPort()
		p, err := ch.c.CreatePort(ctx, pc)
		if ch.count("create", err) {
			ch.ports = append(ch.ports, churnPort{id: p.ID, net: k, pod: p.PodID})
		}
	case r < 35 && len(ch.ports) < 300:
		var batch []api.PortCreate
		var nets []int
		for range 5 + ch.rng.IntN(30) {
			pc, k := ch.newPort()
			batch, nets = append(batch, pc), append(nets, k)
		}
		ps, err := ch.c.CreatePorts(ctx, batch)
		if ch.count("bulk-create", err) {
			for i, p := range ps {
				ch.ports = append(ch.ports, churnPort{id: p.ID, net: nets[i], pod: p.PodID})
			}
		}
	case r < 55:
		i := ch.rng.IntN(len(ch.ports))
		p := &ch.ports[i]
		if p.moves >= 2 { // far from duplicate-MAC detection (5 moves)
			ch.deleteAt(ctx, i)
			return
		}
		pod := ch.pods[(slices.Index(ch.pods, p.pod)+1+ch.rng.IntN(len(ch.pods)-1))%len(ch.pods)]
		_, err := ch.c.UpdatePort(ctx, p.id, api.PortUpdate{PodID: &pod})
		if ch.count("move", err) {
			p.pod = pod
			p.moves++
		}
	case r < 75:
		p := ch.ports[ch.rng.IntN(len(ch.ports))]
		ips := ch.freshIPs(p.net)
		_, err := ch.c.UpdatePort(ctx, p.id, api.PortUpdate{IPs: &ips})
		ch.count("ip-change", err)
	default:
		ch.deleteAt(ctx, ch.rng.IntN(len(ch.ports)))
	}
}

func (ch *churner) deleteAt(ctx context.Context, i int) {
	err := ch.c.DeletePort(ctx, ch.ports[i].id)
	var ae *api.Error
	if ch.count("delete", err) || (errors.As(err, &ae) && ae.Status == http.StatusNotFound) {
		ch.ports = slices.Delete(ch.ports, i, i+1)
	}
}

// count records one call; true when it succeeded.
func (ch *churner) count(kind string, err error) bool {
	if err == nil {
		ch.ok[kind]++
		return true
	}
	ch.bad[kind]++
	if len(ch.last) < 5 {
		ch.last = append(ch.last, fmt.Sprintf("%s: %v", kind, err))
	}
	return false
}

func (ch *churner) summary() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return fmt.Sprintf("%d calls ok (%s), %d failed (%s) %q; %d ports held",
		ch.ok.total(), ch.ok, ch.bad.total(), ch.bad, ch.last, len(ch.ports))
}
