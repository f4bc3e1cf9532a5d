package agent

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchKernel turns kernel changes to links and neighbor (FDB) entries into
// reconcile triggers, so drift is repaired at once rather than at the next
// resync: a device deleted or an entry removed behind the agent's back, or
// a local-segment interface appearing. Only changes that concern the
// agent's devices (name prefix) or a wanted local interface count; bursts
// are coalesced over debounce. It returns when ctx ends; if the kernel
// subscription fails it logs and leaves the periodic resync to do the work.
func WatchKernel(ctx context.Context, prefix string, relevant func(ifname string) bool, trigger func(), debounce time.Duration, log *slog.Logger) {
	links := make(chan netlink.LinkUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 1024)
	done := make(chan struct{})
	defer close(done)
	onErr := func(err error) { log.Debug("kernel watch", "err", err) }
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		log.Warn("cannot watch kernel links; relying on the periodic resync", "err", err)
		return
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr}); err != nil {
		log.Warn("cannot watch kernel neighbors; relying on the periodic resync", "err", err)
	}
	names := map[int]string{}
	ours := func(name string) bool {
		return strings.HasPrefix(name, prefix) || (relevant != nil && relevant(name))
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
			names[int(u.Index)] = name
			if ours(name) && fire == nil {
				fire = time.After(debounce)
			}
		case u, ok := <-neighs:
			if !ok {
				neighs = nil
				continue
			}
			// Entries the agent writes carry extern_learn: their arrival is
			// its own doing, not drift. Removals always count.
			if u.Type == unix.RTM_NEWNEIGH && u.Flags&netlink.NTF_EXT_LEARNED != 0 {
				continue
			}
			if ours(names[u.LinkIndex]) && fire == nil {
				fire = time.After(debounce)
			}
		case <-fire:
			fire = nil
			trigger()
		}
	}
}
