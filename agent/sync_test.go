package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// fakeBrain serves scripted watch sessions: each Watch call takes the next
// script, records the since it was asked for, and plays its events.
type fakeBrain struct {
	mu       sync.Mutex
	sessions [][]api.WatchEvent
	sinces   []int64
	register int
}

func (f *fakeBrain) RegisterGateway(_ context.Context, g api.Gateway) (api.Gateway, error) {
	f.mu.Lock()
	f.register++
	f.mu.Unlock()
	return g, nil
}

func (f *fakeBrain) Watch(ctx context.Context, _ string, since int64, _ time.Duration, fn func(api.WatchEvent) error) error {
	f.mu.Lock()
	f.sinces = append(f.sinces, since)
	var evs []api.WatchEvent
	if len(f.sessions) > 0 {
		evs, f.sessions = f.sessions[0], f.sessions[1:]
	}
	f.mu.Unlock()
	if evs == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return errors.New("connection reset")
}

func (f *fakeBrain) calls() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.sinces...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyncerAppliesAndResumes(t *testing.T) {
	a := api.NetworkState{NetworkID: "a", VNI: 1}
	b := api.NetworkState{NetworkID: "b", VNI: 2}
	b2 := api.NetworkState{NetworkID: "b", VNI: 2, RemotePods: []string{"pod9"}}
	fb := &fakeBrain{sessions: [][]api.WatchEvent{
		{
			{Type: api.EventSnapshot, Revision: 5, State: &api.PodState{PodID: "pod1", Revision: 5, Networks: []api.NetworkState{a}, Gateways: []api.PodGateway{}}},
			{Type: api.EventUpdate, Revision: 6, Networks: []api.NetworkState{b}},
		},
		// After the break the syncer resumes from 6; the brain sends what changed.
		{
			{Type: api.EventUpdate, Revision: 8, Networks: []api.NetworkState{b2}, Removed: []string{"a"}},
		},
	}}
	dir := t.TempDir()
	var triggers atomic.Int32
	changed := func() { triggers.Add(1) }
	cache := filepath.Join(dir, "pod-state.json")
	s := NewSyncer(fb, api.Gateway{ID: "gw1", PodID: "pod1"}, cache, slog.New(slog.NewTextHandler(os.Stderr, nil)), changed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "revision 8 applied", func() bool { st, _ := s.State(); return st.Revision == 8 })
	st, _ := s.State()
	if len(st.Networks) != 1 || st.Networks[0].NetworkID != "b" || len(st.Networks[0].RemotePods) != 1 {
		t.Fatalf("state after updates: %+v", st)
	}
	if n := triggers.Load(); n != 3 {
		t.Fatalf("reconciler triggered %d times for 3 events", n)
	}
	if got := fb.calls(); len(got) < 2 || got[0] != 0 || got[1] != 6 {
		t.Fatalf("watch sinces: %v (want 0, then resume from 6)", got)
	}
	// The cache holds the latest state for a restart with the brain away.
	waitFor(t, "cache written", func() bool { c, err := readCache(cache); return err == nil && c.Revision == 8 })
	cancel()

	fb2 := &fakeBrain{} // a brain that never answers
	s2 := NewSyncer(fb2, api.Gateway{ID: "gw1", PodID: "pod1"}, cache, slog.New(slog.NewTextHandler(os.Stderr, nil)), func() {})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go s2.Run(ctx2)
	waitFor(t, "cached state loaded", func() bool { _, ok := s2.State(); return ok })
	if st, _ := s2.State(); st.Revision != 8 || len(st.Networks) != 1 {
		t.Fatalf("cached state: %+v", st)
	}
	waitFor(t, "resume from the cached revision", func() bool { c := fb2.calls(); return len(c) > 0 && c[0] == 8 })
}

// A cached state without the gateway list (written under a brain older
// than gossip binding) is used while the brain is away, but the watch asks
// for a snapshot instead of resuming from its revision: an upgraded brain
// would otherwise never send the list.
func TestSyncerRelistsStateWithoutGateways(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "pod-state.json")
	if err := writeCache(cache, api.PodState{PodID: "pod1", Revision: 8, Networks: []api.NetworkState{{NetworkID: "a", VNI: 1}}}); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBrain{}
	s := NewSyncer(fb, api.Gateway{ID: "gw1", PodID: "pod1"}, cache, slog.New(slog.NewTextHandler(os.Stderr, nil)), func() {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "first watch", func() bool { return len(fb.calls()) > 0 })
	if st, ok := s.State(); !ok || st.Revision != 8 {
		t.Fatalf("cached state not kept while the brain is away: %+v %v", st, ok)
	}
	if c := fb.calls(); c[0] != 0 {
		t.Fatalf("watch resumed from %d with a state that has no gateway list; want a snapshot (0)", c[0])
	}
}

func TestSyncerHasNothingUntilFirstEvent(t *testing.T) {
	fb := &fakeBrain{}
	s := NewSyncer(fb, api.Gateway{ID: "gw1", PodID: "pod1"}, "", slog.New(slog.NewTextHandler(os.Stderr, nil)), func() {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	// Once the syncer is watching, it has done all it does before the
	// brain speaks.
	waitFor(t, "watch started", func() bool { return len(fb.calls()) > 0 })
	if _, ok := s.State(); ok {
		t.Fatal("a syncer that never heard from the brain claims a state: the reconciler would flush the dataplane")
	}
}
