package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/vtep"
)

// fakeDataplane is a vtep.Dataplane that records every Set and fails those
// its fail function refuses. With gate set, each Set first waits for a
// value on it.
type fakeDataplane struct {
	mu    sync.Mutex
	calls []setCall
	fail  func(vtep.Config) error
	gate  chan struct{}
	// entered is signalled (if not nil) when a Set starts.
	entered chan struct{}
}

type setCall struct {
	at  time.Time
	cfg vtep.Config
	err error
}

var errCannotProgram = errors.New("cannot program")

func (d *fakeDataplane) Set(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	if d.entered != nil {
		d.entered <- struct{}{}
	}
	if d.gate != nil {
		select {
		case <-d.gate:
		case <-ctx.Done():
			return vtep.Result{}, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if d.fail != nil {
		err = d.fail(cfg)
	}
	d.calls = append(d.calls, setCall{at: time.Now(), cfg: cfg, err: err})
	return vtep.Result{}, err
}

func (d *fakeDataplane) Close() error { return nil }

func (d *fakeDataplane) setFail(f func(vtep.Config) error) {
	d.mu.Lock()
	d.fail = f
	d.mu.Unlock()
}

func (d *fakeDataplane) history() []setCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// vnis lists the VNIs of cfg's networks.
func vnis(cfg vtep.Config) []uint32 {
	var out []uint32
	for _, n := range cfg.Networks {
		out = append(out, n.VNI)
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runReconciler runs r until the test ends.
func runReconciler(t *testing.T, r *Reconciler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestReconcilerBackoffDoublesToCapAndResets(t *testing.T) {
	dp := &fakeDataplane{}
	failures := 5
	dp.setFail(func(vtep.Config) error {
		if failures > 0 {
			failures--
			return errCannotProgram
		}
		return nil
	})
	plan := Plan{Config: vtep.Config{Networks: []vtep.Network{{VNI: 100}}}}
	var mu sync.Mutex
	var waits []time.Duration
	var outcomes []error
	r := NewReconciler(ReconcilerOptions{Dataplane: dp, Plan: func() (Plan, bool) { return plan, true },
		Applied: func(_ Plan, err error) { mu.Lock(); outcomes = append(outcomes, err); mu.Unlock() },
		Resync:  time.Hour, MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, Logger: testLogger(t)})
	r.after = func(d time.Duration) <-chan time.Time {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return time.After(time.Millisecond)
	}
	runReconciler(t, r)
	r.Trigger()
	waitFor(t, "five failures then a success", func() bool { return len(dp.history()) == 6 })
	// Backoff resets after the success: the next failure waits the minimum.
	failOnce := true
	dp.setFail(func(vtep.Config) error {
		if failOnce {
			failOnce = false
			return errCannotProgram
		}
		return nil
	})
	r.Trigger()
	waitFor(t, "the retry after the next failure", func() bool { return len(dp.history()) == 8 })
	mu.Lock()
	defer mu.Unlock()
	ms := time.Millisecond
	if want := []time.Duration{20 * ms, 40 * ms, 80 * ms, 80 * ms, 80 * ms, 20 * ms}; !slices.Equal(waits, want) {
		t.Fatalf("backoffs %v, want %v", waits, want)
	}
	if outcomes[5] != nil || !errors.Is(outcomes[0], errCannotProgram) {
		t.Fatalf("Applied told %v", outcomes)
	}
}

func TestReconcilerCoalescesTriggers(t *testing.T) {
	dp := &fakeDataplane{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	var mu sync.Mutex
	version := uint32(1)
	setVersion := func(v uint32) { mu.Lock(); version = v; mu.Unlock() }
	plan := func() (Plan, bool) {
		mu.Lock()
		defer mu.Unlock()
		return Plan{Config: vtep.Config{Networks: []vtep.Network{{VNI: version}}}}, true
	}
	r := NewReconciler(ReconcilerOptions{Dataplane: dp, Plan: plan, Resync: time.Hour, Logger: testLogger(t)})
	runReconciler(t, r)
	r.Trigger()
	<-dp.entered
	// Ten changes while a Set runs make one more reconcile, of the last.
	for v := uint32(2); v <= 11; v++ {
		setVersion(v)
		r.Trigger()
	}
	close(dp.gate)
	waitFor(t, "the reconcile after the burst", func() bool { return len(dp.history()) == 2 })
	setVersion(12)
	r.Trigger()
	waitFor(t, "the reconcile after the next change", func() bool { return len(dp.history()) >= 3 })
	h := dp.history()
	got := [][]uint32{vnis(h[0].cfg), vnis(h[1].cfg), vnis(h[2].cfg)}
	if len(h) != 3 || !slices.Equal(got[1], []uint32{11}) || !slices.Equal(got[2], []uint32{12}) {
		t.Fatalf("%d Sets of %v: want 3, the burst coalesced into one of VNI 11, then 12", len(h), got)
	}
}
