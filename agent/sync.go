package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// Brain is the part of the brain's client the syncer uses.
type Brain interface {
	RegisterGateway(ctx context.Context, g api.Gateway) (api.Gateway, error)
	Watch(ctx context.Context, pod string, since int64, idle time.Duration, fn func(api.WatchEvent) error) error
}

var _ Brain = (*api.Client)(nil)

// Syncer keeps this pod's desired state from the brain: it lists, then
// watches from the revision it has, reconnecting with backoff. While the
// brain is unreachable it keeps the last state it had; with a cache file it
// keeps it across restarts too.
type Syncer struct {
	brain     Brain
	pod       string
	gateway   api.Gateway
	cachePath string
	log       *slog.Logger
	changed   func()
	// status, if set, is reported with every registration.
	status func() *api.GatewayStatus

	mu        sync.Mutex
	state     api.PodState
	have      bool
	connected bool
	lastEvent time.Time
	events    uint64
	flush     chan struct{}
}

// NewSyncer returns a syncer for gw's pod. changed is called (it must not
// block) after every change to the state. cachePath may be empty.
func NewSyncer(brain Brain, gw api.Gateway, cachePath string, log *slog.Logger, changed func()) *Syncer {
	return &Syncer{brain: brain, pod: gw.PodID, gateway: gw, cachePath: cachePath, log: log, changed: changed, flush: make(chan struct{}, 1)}
}

// State returns the current desired state and whether there is one yet.
func (s *Syncer) State() (api.PodState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.have
}

// SyncStatus says whether the watch is up, when the last event came and how
// many events were applied.
type SyncStatus struct {
	Connected bool
	LastEvent time.Time
	Revision  int64
	Events    uint64
}

// Status returns the syncer's status.
func (s *Syncer) Status() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SyncStatus{Connected: s.connected, LastEvent: s.lastEvent, Revision: s.state.Revision, Events: s.events}
}

// Run syncs until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	if s.cachePath != "" {
		if st, err := readCache(s.cachePath); err == nil && st.PodID == s.pod {
			s.mu.Lock()
			s.state, s.have = st, true
			s.mu.Unlock()
			s.log.Info("loaded cached desired state", "revision", st.Revision, "networks", len(st.Networks))
			s.changed()
		} else if err != nil && !os.IsNotExist(err) {
			s.log.Warn("ignoring unreadable state cache", "path", s.cachePath, "err", err)
		}
		go s.cacheWriter(ctx)
	}
	go s.registerLoop(ctx)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		s.mu.Lock()
		since := s.state.Revision
		// A state without the gateway list comes from a brain (or a cache
		// written under a brain) older than gossip binding: resuming from
		// its revision would never bring the list after the brain is
		// upgraded, and nothing would be planned. Ask for a snapshot.
		if !s.have || s.state.Gateways == nil {
			since = 0
		}
		s.mu.Unlock()
		started := time.Now()
		err := s.brain.Watch(ctx, s.pod, since, 0, s.apply)
		s.mu.Lock()
		wasConnected := s.connected
		s.connected = false
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if wasConnected {
			s.log.Warn("brain watch ended; keeping the last state", "err", err)
		} else {
			s.log.Debug("brain unreachable", "err", err)
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Syncer) apply(ev api.WatchEvent) error {
	s.mu.Lock()
	switch ev.Type {
	case api.EventSnapshot:
		if ev.State == nil {
			s.mu.Unlock()
			return fmt.Errorf("snapshot event without state")
		}
		s.state = *ev.State
	case api.EventUpdate:
		s.state = applyUpdate(s.state, ev)
	case api.EventDelta:
		s.state = applyDelta(s.state, ev)
	case api.EventHeartbeat:
		// The brain hears us: a watch resumed at the current revision gets
		// only heartbeats until something changes.
		if s.have && !s.connected {
			s.log.Info("brain watch up", "revision", s.state.Revision)
			s.connected = true
		}
		s.mu.Unlock()
		return nil
	default:
		s.mu.Unlock()
		return nil
	}
	if !s.connected {
		s.log.Info("brain watch up", "revision", ev.Revision)
	}
	s.have, s.connected = true, true
	s.lastEvent = time.Now()
	s.events++
	s.mu.Unlock()
	select {
	case s.flush <- struct{}{}:
	default:
	}
	s.changed()
	return nil
}

// registerLoop registers this gateway in the brain and refreshes it.
func (s *Syncer) registerLoop(ctx context.Context) {
	delay := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		g := s.gateway
		g.Revision = s.Status().Revision
		if s.status != nil {
			g.Status = s.status()
		}
		if _, err := s.brain.RegisterGateway(ctx, g); err != nil {
			if ctx.Err() == nil {
				s.log.Debug("register gateway", "err", err)
			}
			delay = 2 * time.Second
			continue
		}
		delay = 10 * time.Second
	}
}

// cacheWriter persists the state after changes, at most once a second.
func (s *Syncer) cacheWriter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.flush:
		}
		st, _ := s.State()
		if err := writeCache(s.cachePath, st); err != nil {
			s.log.Warn("write state cache", "path", s.cachePath, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func readCache(path string) (api.PodState, error) {
	var st api.PodState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", path, err)
	}
	return st, nil
}

// writeCache replaces path atomically so a crash never leaves half a file.
func writeCache(path string, st api.PodState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
