package state

import (
	"slices"

	"github.com/l2span/l2span/brain/model"
)

// EventType says what an Event carries.
type EventType int

// Event types.
const (
	// Snapshot carries the full state; the watcher replaces what it has.
	Snapshot EventType = iota + 1
	// Update carries only the networks that changed and those removed.
	Update
)

// Event is what a pod's watcher gets for a span of revisions.
type Event struct {
	Type     EventType
	Revision int64
	// State is set on snapshots.
	State *PodState
	// Networks are the changed networks' full states (updates), by id.
	Networks []NetworkState
	// Removed are changed networks no longer in the pod's state, sorted.
	Removed []string
}

// Empty reports whether an update tells a watcher nothing.
func (e Event) Empty() bool {
	return e.Type == Update && len(e.Networks) == 0 && len(e.Removed) == 0
}

// SnapshotOf is the snapshot event of st.
func SnapshotOf(st PodState) Event {
	return Event{Type: Snapshot, Revision: st.Revision, State: &st}
}

// Changes is the change log between two revisions as the store read it.
type Changes struct {
	// Since is the revision the watcher has; Revision the latest.
	Since, Revision int64
	// NetworkIDs changed after Since (model.AllNetworks among them for a
	// change to every pod's state).
	NetworkIDs []string
	// Expired is true when the log no longer reaches back to Since.
	Expired bool
}

// NeedsSnapshot reports whether a watcher at Since must get a full state: the
// log no longer reaches it, it is ahead of the log (another database), or a
// change touched every pod.
func (c Changes) NeedsSnapshot() bool {
	return c.Expired || c.Since > c.Revision || slices.Contains(c.NetworkIDs, model.AllNetworks)
}

// Delta is pod's update event for changes, given the rows of the changed
// networks that still exist (a changed network that is gone, or no longer
// spanned into pod, is reported removed). Call it only when
// !changes.NeedsSnapshot().
func Delta(pod string, changes Changes, changed []NetworkRows) Event {
	ev := Event{Type: Update, Revision: changes.Revision}
	if len(changes.NetworkIDs) == 0 {
		return ev
	}
	states := Networks(pod, changed)
	if len(states) > 0 {
		ev.Networks = states
	}
	for _, id := range changes.NetworkIDs {
		if !slices.ContainsFunc(states, func(n NetworkState) bool { return n.NetworkID == id }) {
			ev.Removed = append(ev.Removed, id)
		}
	}
	slices.Sort(ev.Removed)
	return ev
}
