package httpapi

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/state"
)

// podState serves GET /v1/pods/{id}/state: the full desired state, or with
// watch=true a stream of one JSON event per line. A watch starts with a
// snapshot unless since names a revision the hub's log of the pod still
// reaches, in which case it starts with what changed after since. With
// delta=1 changes come as deltas (EventDelta); without it, as the changed
// networks whole (EventUpdate), the stream older agents understand.
func (s *Server) podState(w http.ResponseWriter, r *http.Request) {
	pod := r.PathValue("id")
	q := r.URL.Query()
	if q.Get("watch") != "true" {
		if _, err := s.svc.GetPod(r.Context(), pod); err != nil {
			s.writeError(w, r, err)
			return
		}
		st, err := s.hub.Snapshot(r.Context(), pod)
		s.respond(w, r, http.StatusOK, toAPIPodState(st), err)
		return
	}
	since, err := watchSince(r)
	delta := false
	if err == nil {
		switch q.Get("delta") {
		case "", "0", "false":
		case "1", "true":
			delta = true
		default:
			err = invalid("delta", "must be 1 or 0")
		}
	}
	if err == nil {
		_, err = s.svc.GetPod(r.Context(), pod)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.watch(w, r, pod, since, delta)
}

// watchSince reads the since query parameter: 0 (or absent) asks for a
// snapshot first.
func watchSince(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalid("since", "must be a revision number >= 0")
	}
	return n, nil
}

// eventWriter writes newline-terminated events and flushes each one.
type eventWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
}

// send writes one line; false means the client is gone.
func (e eventWriter) send(line []byte) bool {
	if _, err := e.w.Write(line); err != nil {
		return false
	}
	e.flusher.Flush()
	return true
}

func (e eventWriter) sendEvent(ev api.WatchEvent) bool {
	line, _ := json.Marshal(ev)
	return e.send(append(line, '\n'))
}

// watch streams pod's changes after since (after a snapshot when since is 0
// or the pod's log no longer reaches it) until the client goes away, with a
// heartbeat when nothing changes. A watcher that falls so far behind that
// the log no longer holds what it has not read is cut off: it reconnects
// with its revision and gets a snapshot.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, pod string, since int64, delta bool) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, api.ErrorBody{Error: api.ErrorDetail{Code: codeInternal, Message: "streaming unsupported"}})
		return
	}
	s.hub.WatchStarted()
	defer s.hub.WatchEnded()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	out := eventWriter{w: w, flusher: flusher}
	if since > 0 {
		// A replica behind the database must not take the client's
		// revision for one from another database.
		if err := s.hub.CatchUp(ctx); err != nil {
			s.opts.Logger.Warn("watch: read changes", "pod", pod, "err", err)
			return
		}
		// A watcher resuming at the current revision would otherwise hear
		// nothing until the next change or heartbeat: tell it the watch is up.
		if !out.sendEvent(api.WatchEvent{Type: api.EventHeartbeat, Revision: since}) {
			return
		}
	}
	started := false
	if since == 0 {
		if since, ok = s.sendSnapshot(ctx, out, pod); !ok {
			return
		}
		started = true
	}
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		evs, upTo, advanced, ok := s.hub.Resume(pod, since)
		if !ok {
			if started {
				s.opts.Logger.Info("watcher fell behind the delta log; cut off (it relists)", "pod", pod, "revision", since)
				return
			}
			if since, ok = s.sendSnapshot(ctx, out, pod); !ok {
				return
			}
			started = true
			continue
		}
		started = true
		if len(evs) > 0 {
			if since, ok = s.sendEvents(ctx, out, pod, evs, upTo, delta); !ok {
				return
			}
		} else {
			since = upTo
		}
		select {
		case <-ctx.Done():
			return
		case <-advanced:
		case <-heartbeat.C:
			if !out.sendEvent(api.WatchEvent{Type: api.EventHeartbeat, Revision: since}) {
				return
			}
		}
	}
}

// sendSnapshot sends pod's full state and returns its revision.
func (s *Server) sendSnapshot(ctx context.Context, out eventWriter, pod string) (int64, bool) {
	st, err := s.hub.Snapshot(ctx, pod)
	if err != nil {
		s.opts.Logger.Warn("watch snapshot", "pod", pod, "err", err)
		return 0, false
	}
	line, err := encodeEvent(state.SnapshotOf(st))
	if err != nil || !out.send(line) {
		return 0, false
	}
	return st.Revision, true
}

// sendEvents sends evs (deltas, each encoded once for every watcher) or, on
// the full-network stream, the networks they touched whole, and returns
// the revision the stream has reached.
func (s *Server) sendEvents(ctx context.Context, out eventWriter, pod string, evs []*brain.LogEvent, upTo int64, delta bool) (int64, bool) {
	if delta {
		for _, ev := range evs {
			line, err := ev.Line(encodeEvent)
			if err != nil {
				s.opts.Logger.Error("encode watch event", "pod", pod, "err", err)
				return 0, false
			}
			if !out.send(line) {
				return 0, false
			}
		}
		return upTo, true
	}
	ids := map[string]bool{}
	for _, ev := range evs {
		if ev.Event.Pod != nil {
			// Pod-wide changes reach full-network watchers as a snapshot.
			return s.sendSnapshot(ctx, out, pod)
		}
		for _, n := range ev.Event.Networks {
			ids[n.NetworkID] = true
		}
		for _, id := range ev.Event.Removed {
			ids[id] = true
		}
		for _, c := range ev.Event.Changes {
			ids[c.NetworkID] = true
		}
	}
	// The networks are read as they are now, which may be past upTo: the
	// stream then resends them with the next events, never misses any.
	nets, removed, _ := s.hub.Networks(pod, slices.Sorted(maps.Keys(ids)))
	line, err := encodeEvent(state.Event{Type: state.Update, Revision: upTo, Networks: nets, Removed: removed})
	if err != nil || !out.send(line) {
		return 0, false
	}
	return upTo, true
}
