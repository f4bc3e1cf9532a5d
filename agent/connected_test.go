package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// quietBrain answers a watch resumed at the current revision the way the
// brain does: a heartbeat, then nothing while nothing changes.
type quietBrain struct{}

func (quietBrain) RegisterGateway(_ context.Context, g api.Gateway) (api.Gateway, error) {
	return g, nil
}

func (b quietBrain) Watch(ctx context.Context, _ string, since int64, _ time.Duration, fn func(api.WatchEvent) error) error {
	if err := fn(api.WatchEvent{Type: api.EventHeartbeat, Revision: since}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// An agent restarted with its cached state resumes at the brain's current
// revision and hears only heartbeats: it is connected all the same.
func TestSyncerConnectedOnHeartbeatAfterRestart(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "pod-state.json")
	if err := writeCache(cache, api.PodState{PodID: "pod1", Revision: 8}); err != nil {
		t.Fatal(err)
	}
	s := NewSyncer(quietBrain{}, api.Gateway{ID: "gw1", PodID: "pod1"}, cache, slog.New(slog.NewTextHandler(os.Stderr, nil)), func() {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "connected after a heartbeat at the cached revision", func() bool { return s.Status().Connected })
	if st := s.Status(); st.Revision != 8 || st.Events != 0 {
		t.Fatalf("status %+v: a heartbeat is not a state event", st)
	}
}

// Without any state a heartbeat proves nothing the agent can use.
func TestSyncerNotConnectedOnHeartbeatWithoutState(t *testing.T) {
	s := NewSyncer(quietBrain{}, api.Gateway{ID: "gw1", PodID: "pod1"}, "", slog.New(slog.NewTextHandler(os.Stderr, nil)), func() {})
	if err := s.apply(api.WatchEvent{Type: api.EventHeartbeat}); err != nil {
		t.Fatal(err)
	}
	if s.Status().Connected {
		t.Fatal("connected without ever having a state")
	}
}
