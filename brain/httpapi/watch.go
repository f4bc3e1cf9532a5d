package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/state"
)

// podState serves GET /v1/pods/{id}/state: the full desired state, or with
// watch=true a stream of one JSON event per line. A watch starts with a
// snapshot unless since names a revision the change log still reaches, in
// which case it starts with what changed after since.
func (s *Server) podState(r *http.Request) (any, int, error) {
	pod := r.PathValue("id")
	q := r.URL.Query()
	if q.Get("watch") != "true" {
		st, err := s.svc.PodState(r.Context(), pod)
		return toAPIPodState(st), http.StatusOK, err
	}
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, &brain.Error{Status: http.StatusBadRequest, Code: brain.CodeInvalid, Field: "since", Message: "must be a revision number >= 0"}
		}
		since = n
	}
	if _, err := s.svc.GetPod(r.Context(), pod); err != nil {
		return nil, 0, err
	}
	return nil, 0, errStream{pod: pod, since: since}
}

// errStream hands the response writer over to the stream; it is an error
// only so that the thin-handler signature stays (value, status, error).
type errStream struct {
	pod   string
	since int64
}

func (errStream) Error() string { return "stream" }

func (s *Server) stream(w http.ResponseWriter, r *http.Request, pod string, since int64) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, api.ErrorBody{Error: api.ErrorDetail{Code: brain.CodeInternal, Message: "streaming unsupported"}})
		return
	}
	s.hub.WatchStarted()
	defer s.hub.WatchEnded()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	send := func(line []byte) bool {
		if _, err := w.Write(line); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if since == 0 {
		st, err := s.svc.PodState(ctx, pod)
		if err != nil {
			return
		}
		line, err := encodeEvent(state.SnapshotOf(st))
		if err != nil || !send(line) {
			return
		}
		since = st.Revision
	}
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		cur, advanced := s.hub.Current()
		if cur > since {
			ev, line, err := s.hub.Delta(ctx, pod, since, cur, encodeEvent)
			if err != nil {
				s.opts.Logger.Warn("watch delta", "pod", pod, "since", since, "err", err)
				return
			}
			if !ev.Empty() {
				if !send(line) {
					return
				}
			}
			if ev.Revision > since {
				since = ev.Revision
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
			line, _ := json.Marshal(api.WatchEvent{Type: api.EventHeartbeat, Revision: since})
			if !send(append(line, '\n')) {
				return
			}
		}
	}
}
