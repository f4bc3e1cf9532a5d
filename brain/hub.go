package brain

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/l2span/l2span/brain/state"
)

// Hub tells watchers that the revision moved and computes each pod's delta
// once for all watchers at the same revision. It learns of new revisions from
// this brain's own commits (Notify) and, for changes made by other brain
// replicas on the same database, by polling the revision counter.
type Hub struct {
	svc  *Service
	poll time.Duration
	log  *slog.Logger

	mu      sync.Mutex
	rev     int64
	advance chan struct{} // closed when rev moves
	deltas  map[deltaKey]*delta
	watches int
}

type deltaKey struct {
	pod   string
	since int64
	upTo  int64
}

type delta struct {
	ready chan struct{}
	ev    state.Event
	line  []byte
	err   error
	made  time.Time
}

// NewHub returns a hub over svc; poll is how often it checks the database
// for changes made by other replicas.
func NewHub(svc *Service, poll time.Duration, log *slog.Logger) *Hub {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	return &Hub{svc: svc, poll: poll, log: log, advance: make(chan struct{}), deltas: map[deltaKey]*delta{}}
}

// Notify records that revision rev was committed.
func (h *Hub) Notify(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev {
		return
	}
	h.rev = rev
	close(h.advance)
	h.advance = make(chan struct{})
	// Deltas are keyed by their upper bound; older ones are done with soon.
	for k, d := range h.deltas {
		if time.Since(d.made) > 30*time.Second {
			delete(h.deltas, k)
		}
	}
}

// Current returns the latest revision known and a channel closed when it moves.
func (h *Hub) Current() (int64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev, h.advance
}

// Watchers returns how many watches are open.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watches
}

func (h *Hub) WatchStarted() {
	h.mu.Lock()
	h.watches++
	h.mu.Unlock()
}

func (h *Hub) WatchEnded() {
	h.mu.Lock()
	h.watches--
	h.mu.Unlock()
}

// Run polls the revision counter until ctx ends and compacts the change log,
// keeping the last keep revisions.
func (h *Hub) Run(ctx context.Context, keep int64) {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	lastCompact := time.Now()
	for {
		if rev, err := h.svc.Revision(ctx); err == nil {
			h.Notify(rev)
		} else if ctx.Err() == nil {
			h.log.Warn("poll revision", "err", err)
		}
		if keep > 0 && time.Since(lastCompact) > time.Minute {
			lastCompact = time.Now()
			if err := h.svc.Compact(ctx, keep); err != nil && ctx.Err() == nil {
				h.log.Warn("compact change log", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Delta returns the pod's changes after since, computed once for every
// watcher asking at the same point, with the event encoded once by encode
// (the first asker's) for all of them.
func (h *Hub) Delta(ctx context.Context, pod string, since, upTo int64, encode func(state.Event) ([]byte, error)) (state.Event, []byte, error) {
	key := deltaKey{pod, since, upTo}
	h.mu.Lock()
	d, ok := h.deltas[key]
	if !ok {
		d = &delta{ready: make(chan struct{}), made: time.Now()}
		h.deltas[key] = d
	}
	h.mu.Unlock()
	if !ok {
		// Other watchers wait on this computation: it must not die with the
		// first asker's connection.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		d.ev, d.err = h.svc.PodDelta(cctx, pod, since)
		cancel()
		if d.err == nil {
			d.line, d.err = encode(d.ev)
		}
		if d.err != nil {
			h.mu.Lock()
			delete(h.deltas, key)
			h.mu.Unlock()
		}
		close(d.ready)
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return state.Event{}, nil, ctx.Err()
	}
	return d.ev, d.line, d.err
}
