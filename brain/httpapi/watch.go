package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/state"
)

// podState serves GET /v1/pods/{id}/state: the full desired state, or with
// watch=true a stream of one JSON event per line. A watch starts with a
// snapshot unless since names a revision the change log still reaches, in
// which case it starts with what changed after since.
func (s *Server) podState(w http.ResponseWriter, r *http.Request) {
	pod := r.PathValue("id")
	if r.URL.Query().Get("watch") != "true" {
		st, err := s.svc.PodState(r.Context(), pod)
		s.respond(w, r, http.StatusOK, toAPIPodState(st), err)
		return
	}
	since, err := watchSince(r)
	if err == nil {
		_, err = s.svc.GetPod(r.Context(), pod)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.watch(w, r, pod, since)
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

// watch streams pod's changes after since (after a snapshot when since is 0)
// until the client goes away, with a heartbeat when nothing changes.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, pod string, since int64) {
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
	if since == 0 {
		st, err := s.svc.PodState(ctx, pod)
		if err != nil || !out.sendEvent(toAPIWatchEvent(state.SnapshotOf(st))) {
			return
		}
		since = st.Revision
	} else if !out.sendEvent(api.WatchEvent{Type: api.EventHeartbeat, Revision: since}) {
		// A watcher resuming at the current revision would otherwise hear
		// nothing until the next change or heartbeat: tell it the watch is up.
		return
	}
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		cur, advanced := s.hub.Current()
		if cur > since {
			var ok bool
			if since, ok = s.sendDelta(ctx, out, pod, since, cur); !ok {
				return
			}
			if since >= cur {
				continue
			}
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

// sendDelta sends what changed for pod between since and cur, if anything
// did, and returns the revision the stream has reached; false ends the
// stream.
func (s *Server) sendDelta(ctx context.Context, out eventWriter, pod string, since, cur int64) (int64, bool) {
	ev, line, err := s.hub.Delta(ctx, pod, since, cur, encodeEvent)
	if err != nil {
		s.opts.Logger.Warn("watch delta", "pod", pod, "since", since, "err", err)
		return since, false
	}
	if !ev.Empty() {
		if !out.send(line) {
			return since, false
		}
	}
	return max(since, ev.Revision), true
}
