package agent

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelEvents is the seam to the kernel's netlink notifications. Each
// subscription delivers on its channel until done is closed or the socket
// fails (an ENOBUFS overflow), then closes the channel.
type kernelEvents interface {
	// SubscribeLinks delivers link changes, after every existing link.
	SubscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error
	SubscribeNeighs(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error
}

// netlinkEvents subscribes in the agent's network namespace. rcvbuf, when
// set, is the neighbor socket's receive buffer: a bulk change writes
// thousands of entries at once, and the kernel's default (~200 KB) holds
// only a few thousand notifications. It is forced past rmem_max when the
// agent may (CAP_NET_ADMIN), else capped by it.
type netlinkEvents struct{ rcvbuf int }

func (netlinkEvents) SubscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ListExisting: true, ErrorCallback: onErr})
}

func (e netlinkEvents) SubscribeNeighs(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
	opts := netlink.NeighSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: e.rcvbuf, ReceiveBufferForceSize: e.rcvbuf > 0}
	err := netlink.NeighSubscribeWithOptions(ch, done, opts)
	if err != nil && opts.ReceiveBufferForceSize {
		opts.ReceiveBufferForceSize = false
		err = netlink.NeighSubscribeWithOptions(ch, done, opts)
	}
	return err
}

// Bounds of the wait before subscribing again after a subscription failed
// or closed.
const (
	minResubscribe = 100 * time.Millisecond
	maxResubscribe = 30 * time.Second
)

// WatchKernel turns kernel changes to links and neighbor (FDB) entries into
// reconcile triggers, so drift is repaired at once rather than at the next
// resync: a device deleted or an entry removed behind the agent's back, or
// a local-segment interface appearing. Only changes that concern the
// agent's devices (name prefix) or a wanted local interface count; bursts
// are coalesced over debounce. A subscription that closes (the kernel
// dropped events: ENOBUFS) or cannot be made is made again with backoff,
// and the events it may have missed are covered by a trigger; meanwhile the
// periodic resync does the work. It returns when ctx ends.
func WatchKernel(ctx context.Context, o KernelWatchOptions) {
	lost := o.Lost
	if lost == nil {
		lost = func() {}
	}
	w := &kernelWatch{events: netlinkEvents{rcvbuf: o.ReceiveBuffer}, prefix: o.Prefix, relevant: o.Relevant, trigger: o.Trigger,
		debounce: o.Debounce, log: o.Log, names: map[int]string{}, wait: time.After, lost: lost}
	w.run(ctx)
}

// KernelWatchOptions configure WatchKernel.
type KernelWatchOptions struct {
	// Prefix names the agent's devices; Relevant adds other interfaces
	// (wanted local segments).
	Prefix   string
	Relevant func(ifname string) bool
	// Trigger asks for a full reconcile; bursts are coalesced over Debounce.
	Trigger  func()
	Debounce time.Duration
	// ReceiveBuffer sizes the neighbor socket's buffer (0: kernel default).
	ReceiveBuffer int
	// Lost is called each time a subscription closed and events were lost.
	Lost func()
	Log  *slog.Logger
}

type kernelWatch struct {
	events   kernelEvents
	prefix   string
	relevant func(ifname string) bool
	trigger  func()
	debounce time.Duration
	log      *slog.Logger
	// names maps ifindex to name, from the links listed at subscription
	// and every change since.
	names map[int]string
	// wait makes the resubscribe timer (time.After).
	wait func(time.Duration) <-chan time.Time
	// lost counts subscriptions that closed under the agent.
	lost func()
}

func (w *kernelWatch) run(ctx context.Context) {
	backoff := minResubscribe
	subscribed := false
	for ctx.Err() == nil {
		links := make(chan netlink.LinkUpdate, 256)
		neighs := make(chan netlink.NeighUpdate, 1024)
		done := make(chan struct{})
		err := w.subscribe(links, neighs, done)
		if err != nil {
			w.log.Warn("cannot watch the kernel; relying on the periodic resync until it can", "err", err, "retry", backoff)
		} else {
			if subscribed {
				// Changes while unsubscribed are lost: look at everything.
				w.log.Warn("kernel watch subscribed again after losing events; full reconcile")
				w.trigger()
			}
			subscribed = true
			start := time.Now()
			w.watch(ctx, links, neighs)
			if time.Since(start) > maxResubscribe {
				backoff = minResubscribe
			}
		}
		close(done)
		// Unblock the subscriptions' goroutines until they close.
		go func() {
			for range links {
			}
		}()
		go func() {
			for range neighs {
			}
		}()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			w.lost()
			w.log.Warn("kernel watch subscription closed (events lost); subscribing again", "retry", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wait(backoff):
		}
		backoff = min(2*backoff, maxResubscribe)
	}
}

func (w *kernelWatch) subscribe(links chan netlink.LinkUpdate, neighs chan netlink.NeighUpdate, done chan struct{}) error {
	// The library reports the socket error (ENOBUFS: the kernel dropped
	// notifications) and then closes the channel; run subscribes again.
	onErr := func(err error) { w.log.Warn("kernel watch socket failed", "err", err) }
	if err := w.events.SubscribeLinks(links, done, onErr); err != nil {
		close(links) // no subscription took them
		close(neighs)
		return err
	}
	if err := w.events.SubscribeNeighs(neighs, done, onErr); err != nil {
		close(neighs) // links is the subscription's: it closes with done
		return err
	}
	return nil
}

// watch turns events into triggers until ctx ends or a subscription's
// channel closes.
func (w *kernelWatch) watch(ctx context.Context, links <-chan netlink.LinkUpdate, neighs <-chan netlink.NeighUpdate) {
	ours := func(name string) bool {
		return strings.HasPrefix(name, w.prefix) || (w.relevant != nil && w.relevant(name))
	}
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-links:
			if !ok {
				return
			}
			name := u.Attrs().Name
			w.names[int(u.Index)] = name
			if ours(name) && fire == nil {
				fire = time.After(w.debounce)
			}
		case u, ok := <-neighs:
			if !ok {
				return
			}
			// Entries the agent writes carry extern_learn: their arrival is
			// its own doing, not drift. Removals always count.
			if u.Type == unix.RTM_NEWNEIGH && u.Flags&netlink.NTF_EXT_LEARNED != 0 {
				continue
			}
			if ours(w.names[u.LinkIndex]) && fire == nil {
				fire = time.After(w.debounce)
			}
		case <-fire:
			fire = nil
			w.trigger()
		}
	}
}
