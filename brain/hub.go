package brain

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/l2span/l2span/brain/state"
)

// Hub keeps every pod's desired state in memory (a state.Model) and a short
// log of each pod's deltas for its watchers. It learns of new revisions from
// this brain's commits (Notify) and, for commits of other replicas on the
// same database, by polling the revision counter; either way it reads only
// what the change log names (a port, a network's header, the pods) and
// applies it to the model, so a change costs O(change) and a snapshot is a
// copy out of memory. The model is loaded from the database at the first
// use and again whenever the change log was compacted past it.
type Hub struct {
	svc  *Service
	poll time.Duration
	log  *slog.Logger
	// maxWeight bounds each pod's log (see podLog.weight).
	maxWeight int

	kick   chan struct{}
	syncMu sync.Mutex // one sync at a time

	mu      sync.RWMutex
	model   *state.Model
	loadRev int64 // the revision the model was last loaded at
	logs    map[string]*podLog
	advance chan struct{} // closed when the model moves
	watches int
	reloads int
}

// podLog is one pod's recent deltas, oldest first. A watcher at revision r
// can resume from it when r >= from.
type podLog struct {
	from   int64
	events []*LogEvent
	// weight approximates the log's memory: one per event plus one per
	// network and port it carries.
	weight int
}

// LogEvent is one delta of one pod, encoded once for all its watchers.
type LogEvent struct {
	Event  state.Event
	weight int
	once   sync.Once
	line   []byte
	err    error
}

// Line encodes the event with encode the first time and returns that
// encoding to every caller after.
func (e *LogEvent) Line(encode func(state.Event) ([]byte, error)) ([]byte, error) {
	e.once.Do(func() { e.line, e.err = encode(e.Event) })
	return e.line, e.err
}

// DefaultLogWeight bounds a pod's delta log: about that many ports and
// networks (a few MB) of deltas are kept for watchers that lag behind;
// a watcher further behind is cut off and relists.
const DefaultLogWeight = 1 << 17

// NewHub returns a hub over svc; poll is how often it checks the database
// for changes made by other replicas.
func NewHub(svc *Service, poll time.Duration, log *slog.Logger) *Hub {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	return &Hub{svc: svc, poll: poll, log: log, maxWeight: DefaultLogWeight, kick: make(chan struct{}, 1),
		logs: map[string]*podLog{}, advance: make(chan struct{})}
}

// SetLogWeight bounds each pod's delta log (DefaultLogWeight when n <= 0).
func (h *Hub) SetLogWeight(n int) {
	if n <= 0 {
		n = DefaultLogWeight
	}
	h.mu.Lock()
	h.maxWeight = n
	h.mu.Unlock()
}

// Notify records that revision rev was committed: the hub reads it in.
func (h *Hub) Notify(rev int64) {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Current returns the revision the hub's state reflects and a channel
// closed when it moves.
func (h *Hub) Current() (int64, <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.model == nil {
		return 0, h.advance
	}
	return h.model.Revision(), h.advance
}

// Watchers returns how many watches are open.
func (h *Hub) Watchers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.watches
}

// Reloads counts how often the model was loaded from the database.
func (h *Hub) Reloads() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.reloads
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

// Run reads new revisions in (at once on Notify, and every poll interval
// for other replicas' commits) until ctx ends, and compacts the change log,
// keeping the last keep revisions.
func (h *Hub) Run(ctx context.Context, keep int64) {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	lastCompact := time.Now()
	// A failed read is retried on its own: the notification that woke the
	// hub is not sent again, and the poll may be long.
	// The retry stays short: once the database is back a notification may
	// never come again for a change already committed.
	const minRetry, maxRetry = 100 * time.Millisecond, 2 * time.Second
	retry := minRetry
	var again <-chan time.Time
	for {
		again = nil
		if err := h.CatchUp(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("read changes", "err", err, "retry", retry)
			again = time.After(retry)
			retry = min(2*retry, max(min(h.poll, maxRetry), minRetry))
		} else {
			retry = minRetry
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
		case <-h.kick:
		case <-again:
		}
	}
}

// CatchUp brings the model up to the latest committed revision.
func (h *Hub) CatchUp(ctx context.Context) error {
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	h.mu.RLock()
	m := h.model
	h.mu.RUnlock()
	if m == nil {
		return h.load(ctx)
	}
	b, expired, err := h.svc.ReadBatch(ctx, m.Revision())
	if err != nil {
		return fmt.Errorf("read changes after %d: %w", m.Revision(), err)
	}
	if expired {
		h.log.Info("change log compacted past the hub's revision; reloading", "revision", m.Revision())
		return h.load(ctx)
	}
	if b.Revision < m.Revision() {
		// Another database (restored backup): start again from it.
		h.log.Warn("database revision went back; reloading", "had", m.Revision(), "now", b.Revision)
		return h.load(ctx)
	}
	if b.Revision == m.Revision() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for pod, d := range m.Apply(b) {
		h.append(pod, state.DeltaOf(b.Revision, *d))
	}
	h.moved()
	return nil
}

// load reads the whole model; watchers behind it are cut off and relist.
func (h *Hub) load(ctx context.Context) error {
	m, err := h.svc.LoadModel(ctx)
	if err != nil {
		return fmt.Errorf("load pod states: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.model, h.loadRev = m, m.Revision()
	h.logs = map[string]*podLog{}
	h.reloads++
	h.moved()
	return nil
}

func (h *Hub) moved() {
	close(h.advance)
	h.advance = make(chan struct{})
}

// podLog returns pod's log; h.mu must be held for writing.
func (h *Hub) podLog(pod string) *podLog {
	l := h.logs[pod]
	if l == nil {
		// No event of pod since the load: a watcher from then on resumes.
		l = &podLog{from: h.loadRev}
		h.logs[pod] = l
	}
	return l
}

func (h *Hub) append(pod string, ev state.Event) {
	l := h.podLog(pod)
	w := 1 + len(ev.Networks) + len(ev.Removed)
	for _, n := range ev.Networks {
		w += len(n.RemotePorts)
	}
	for _, c := range ev.Changes {
		w += 1 + len(c.Upserted) + len(c.RemovedMACs)
	}
	l.events = append(l.events, &LogEvent{Event: ev, weight: w})
	l.weight += w
	drop := 0
	for l.weight > h.maxWeight && drop < len(l.events) {
		l.weight -= l.events[drop].weight
		l.from = l.events[drop].Event.Revision
		drop++
	}
	if drop > 0 {
		clear(l.events[:drop])
		l.events = l.events[drop:]
	}
}

// Resume returns pod's events after since, the revision the watcher is at
// after them, and a channel closed when there may be more; ok is false when
// the log no longer reaches since (the watcher must take a snapshot).
func (h *Hub) Resume(pod string, since int64) (evs []*LogEvent, upTo int64, advanced <-chan struct{}, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.model == nil || since > h.model.Revision() {
		return nil, since, h.advance, false
	}
	l := h.logs[pod]
	from := h.loadRev
	if l != nil {
		from = l.from
	}
	if since < from {
		return nil, since, h.advance, false
	}
	if l != nil {
		i := sort.Search(len(l.events), func(i int) bool { return l.events[i].Event.Revision > since })
		evs = l.events[i:len(l.events):len(l.events)]
	}
	return evs, h.model.Revision(), h.advance, true
}

// Snapshot returns pod's full state at the latest committed revision (the
// hub catches up first, so a client reads its own writes).
func (h *Hub) Snapshot(ctx context.Context, pod string) (state.PodState, error) {
	if err := h.CatchUp(ctx); err != nil {
		return state.PodState{PodID: pod}, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.model.PodState(pod), nil
}

// Networks returns the full states of ids as pod sees them now, and those
// of ids no longer in its state, at the revision returned (for watchers of
// the full-network stream).
func (h *Hub) Networks(pod string, ids []string) (nets []state.NetworkState, removed []string, rev int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, id := range ids {
		if n, ok := h.model.NetworkState(pod, id); ok {
			nets = append(nets, n)
		} else {
			removed = append(removed, id)
		}
	}
	return nets, removed, h.model.Revision()
}
