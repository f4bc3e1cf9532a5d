package brain

import (
	"context"
	"errors"
	"time"

	"github.com/l2span/l2span/brain/store"
)

// ListenRevisions feeds hub with the revisions every brain replica commits
// on a shared PostgreSQL (LISTEN/NOTIFY), so a watcher on this replica hears
// of a change made through another one as fast as of a local one. The
// connection is made again with backoff when it breaks (PostgreSQL restart
// or failover); after each (re)connect the hub reads the change log, so a
// notification missed meanwhile is not lost. The hub's poll stays as the
// fallback. It returns at once on SQLite (one brain, its own commits notify
// the hub directly) and otherwise when ctx ends.
func ListenRevisions(ctx context.Context, svc *Service, hub *Hub) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		// On each (re)connect the hub reads the change log itself (and
		// retries that read until it works): reading the revision here
		// could fail on a pooled connection the restart broke, and a
		// notification missed meanwhile would then be lost until the poll.
		err := svc.store.ListenRevisions(ctx, func() { hub.Notify(0) }, hub.Notify)
		if errors.Is(err, store.ErrNoListen) || ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff
		}
		hub.log.Warn("revision notifications lost; polling until listening again", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
