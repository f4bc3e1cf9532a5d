package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// fakeKernel hands each subscription to the test, which sends events on
// it and can close it as the kernel's overflow (ENOBUFS) does.
type fakeKernel struct {
	subs chan *fakeSubscription
	// pending pairs a link subscription with the neighbor one that follows.
	mu      sync.Mutex
	pending *fakeSubscription
}

type fakeSubscription struct {
	links     chan<- netlink.LinkUpdate
	neighs    chan<- netlink.NeighUpdate
	closeOnce sync.Once
}

func newFakeKernel() *fakeKernel { return &fakeKernel{subs: make(chan *fakeSubscription, 10)} }

func (k *fakeKernel) SubscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, _ func(error)) error {
	s := &fakeSubscription{links: ch}
	k.mu.Lock()
	k.pending = s
	k.mu.Unlock()
	go func() { <-done; s.overflow() }()
	return nil
}

func (k *fakeKernel) SubscribeNeighs(ch chan<- netlink.NeighUpdate, done <-chan struct{}, _ func(error)) error {
	k.mu.Lock()
	s := k.pending
	k.mu.Unlock()
	s.neighs = ch
	go func() { <-done; s.overflow() }()
	k.subs <- s
	return nil
}

// overflow closes the subscription's channels, as the netlink library does
// when its socket fails.
func (s *fakeSubscription) overflow() {
	s.closeOnce.Do(func() { close(s.links); close(s.neighs) })
}

func (k *fakeKernel) next(t *testing.T, what string) *fakeSubscription {
	t.Helper()
	select {
	case s := <-k.subs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no subscription within 5s", what)
		return nil
	}
}

func awaitTrigger(t *testing.T, triggers <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-triggers:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no trigger within 5s", what)
	}
}

func TestKernelWatchSubscribesAgainWhenTheSubscriptionCloses(t *testing.T) {
	k := newFakeKernel()
	triggers := make(chan struct{}, 10)
	var mu sync.Mutex
	var waits []time.Duration
	var lost atomic.Int32
	w := &kernelWatch{events: k, prefix: "l2s", trigger: func() { triggers <- struct{}{} }, debounce: time.Millisecond,
		log: testLogger(t), names: map[int]string{}, lost: func() { lost.Add(1) }, wait: func(d time.Duration) <-chan time.Time {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			return time.After(time.Millisecond)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first := k.next(t, "first subscription")
	// The links listed at subscription name the ifindexes of later
	// neighbor events.
	first.links <- netlink.LinkUpdate{IfInfomsg: nl.IfInfomsg{IfInfomsg: unix.IfInfomsg{Index: 7}},
		Link: &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "l2s-vx100", Index: 7}}}
	awaitTrigger(t, triggers, "a link of the agent's")

	first.overflow()
	second := k.next(t, "subscription after the overflow")
	awaitTrigger(t, triggers, "full reconcile for the events lost")
	second.neighs <- netlink.NeighUpdate{Type: unix.RTM_DELNEIGH, Neigh: netlink.Neigh{LinkIndex: 7}}
	awaitTrigger(t, triggers, "an FDB entry removed on the new subscription")

	second.overflow()
	k.next(t, "subscription after the second overflow")
	if n := lost.Load(); n != 2 {
		t.Fatalf("%d lost subscriptions counted, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] != minResubscribe || waits[1] != 2*minResubscribe {
		t.Fatalf("waits before subscribing again %v: want %s, then doubled", waits, minResubscribe)
	}
}
