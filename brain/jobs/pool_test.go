package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/jobs"
	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/neutrontest"
	"github.com/l2span/l2span/test/pgtest"
)

// storeKinds runs fn once per store: SQLite in a temp dir and PostgreSQL on
// the test binary's private server.
func storeKinds(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite://"+filepath.Join(t.TempDir(), "brain.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.SharedDatabase(t))
	})
}

func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func enqueue(t testing.TB, st *store.Store, typ, res, pod string) model.Job {
	t.Helper()
	var j model.Job
	_, err := st.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		j, err = tx.EnqueueJob(context.Background(), typ, res, pod, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func getJob(t testing.TB, st *store.Store, id string) model.Job {
	t.Helper()
	var j model.Job
	err := st.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		j, err = tx.GetJob(context.Background(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJob waits until the job is in state (and cond holds, if given).
func waitJob(t testing.TB, st *store.Store, id, state string) model.Job {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j := getJob(t, st, id)
		if j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: state %s after 15 s, want %s (attempts %d, err %q)", id, j.State, state, j.Attempts, j.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runPool(t testing.TB, p *jobs.Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestDedup(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		st := openStore(t, url)
		a := enqueue(t, st, "sync", "net1", "pod1")
		b := enqueue(t, st, "sync", "net1", "pod1")
		c := enqueue(t, st, "sync", "net1", "pod2")
		if a.ID != b.ID || a.ID == c.ID {
			t.Fatalf("want one job per (type, resource, pod): %s %s %s", a.ID, b.ID, c.ID)
		}
		if a.State != model.JobNew || a.NextRunAt == nil {
			t.Fatalf("new job: %+v", a)
		}
		// A running job enqueued again is marked to run once more.
		var claimed []model.Job
		_, err := st.Write(context.Background(), func(tx *store.Tx) error {
			var err error
			claimed, err = tx.ClaimJobs(context.Background(), "w1", time.Now(), time.Minute, 10)
			return err
		})
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		if j := enqueue(t, st, "sync", "net1", "pod1"); j.ID != a.ID || j.State != model.JobRunning || !j.Rerun {
			t.Fatalf("enqueue while running: %+v", j)
		}
		var ok bool
		st.Write(context.Background(), func(tx *store.Tx) error {
			ok, err = tx.CompleteJob(context.Background(), a.ID, "w1", time.Now())
			return err
		})
		if !ok || err != nil {
			t.Fatalf("complete: %v %v", ok, err)
		}
		if j := getJob(t, st, a.ID); j.State != model.JobNew || j.Rerun || j.NextRunAt == nil {
			t.Fatalf("rerun after completion: %+v", j)
		}
		var l model.List[model.Job]
		st.Read(context.Background(), func(tx *store.Tx) error {
			l, err = tx.ListJobs(context.Background(), model.JobFilter{Type: "sync"}, model.Page{})
			return err
		})
		if err != nil || len(l.Items) != 2 {
			t.Fatalf("list: %d jobs, %v", len(l.Items), err)
		}
	})
}

// TestLeaseTakeOver: a worker that claimed a job and died (no renewal, no
// outcome) loses it when the lease expires; another takes it over, and the
// dead worker's late outcome is dropped.
func TestLeaseTakeOver(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		st := openStore(t, url)
		st2 := openStore(t, url) // a second brain replica on the same database
		j := enqueue(t, st, "sync", "net1", "pod1")
		claim := func(s *store.Store, owner string) []model.Job {
			var out []model.Job
			if _, err := s.Write(ctx, func(tx *store.Tx) error {
				var err error
				out, err = tx.ClaimJobs(ctx, owner, time.Now(), 300*time.Millisecond, 10)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return out
		}
		if got := claim(st, "dead"); len(got) != 1 || got[0].ID != j.ID || got[0].Attempts != 1 {
			t.Fatalf("first claim: %+v", got)
		}
		if got := claim(st2, "alive"); len(got) != 0 {
			t.Fatalf("claimed a job under a valid lease: %+v", got)
		}
		time.Sleep(350 * time.Millisecond)
		got := claim(st2, "alive")
		if len(got) != 1 || got[0].Attempts != 2 || got[0].LeaseOwner != "alive" {
			t.Fatalf("take-over: %+v", got)
		}
		var ok bool
		st.Write(ctx, func(tx *store.Tx) error {
			var err error
			ok, err = tx.CompleteJob(ctx, j.ID, "dead", time.Now())
			return err
		})
		if ok {
			t.Fatal("the dead worker's outcome was recorded after take-over")
		}
		st.Write(ctx, func(tx *store.Tx) error {
			var err error
			ok, err = tx.RenewLease(ctx, j.ID, "dead", time.Now(), time.Minute)
			return err
		})
		if ok {
			t.Fatal("the dead worker renewed a lease it lost")
		}
		if j := getJob(t, st, j.ID); j.State != model.JobRunning || j.LeaseOwner != "alive" {
			t.Fatalf("after take-over: %+v", j)
		}
	})
}

// TestPoolTakesOverAbandonedJob: a pool picks up a job whose owner's lease
// ran out, and runs it to success.
func TestPoolTakesOverAbandonedJob(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		st := openStore(t, url)
		j := enqueue(t, st, "sync", "net1", "pod1")
		st.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ClaimJobs(ctx, "crashed-brain", time.Now(), 200*time.Millisecond, 1)
			return err
		})
		var runs atomic.Int32
		p := jobs.New(openStore(t, url), map[string]jobs.Handler{"sync": jobs.HandlerFunc(func(context.Context, model.Job) error {
			runs.Add(1)
			return nil
		})}, jobs.Options{Poll: 20 * time.Millisecond, Logger: quiet})
		start := time.Now()
		runPool(t, p)
		done := waitJob(t, st, j.ID, model.JobSuccess)
		if runs.Load() != 1 || done.Attempts != 2 {
			t.Fatalf("runs %d attempts %d", runs.Load(), done.Attempts)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("take-over took %s", took)
		}
	})
}

// TestReplicasNeverRunOneJobTwice: several pools, each on its own store
// handle (a replica), share one database; every job runs exactly once and
// never concurrently.
func TestReplicasNeverRunOneJobTwice(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		st := openStore(t, url)
		const n = 60
		ids := make([]string, n)
		for i := range ids {
			ids[i] = enqueue(t, st, "sync", fmt.Sprintf("net%d", i), "pod1").ID
		}
		var mu sync.Mutex
		active := map[string]bool{}
		runs := map[string]int{}
		var overlap atomic.Bool
		h := jobs.HandlerFunc(func(ctx context.Context, j model.Job) error {
			mu.Lock()
			if active[j.ID] {
				overlap.Store(true)
			}
			active[j.ID] = true
			runs[j.ID]++
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			delete(active, j.ID)
			mu.Unlock()
			return nil
		})
		for r := 0; r < 3; r++ {
			p := jobs.New(openStore(t, url), map[string]jobs.Handler{"sync": h},
				jobs.Options{Owner: fmt.Sprintf("replica%d", r), Workers: 4, Poll: 10 * time.Millisecond, Logger: quiet})
			runPool(t, p)
		}
		for _, id := range ids {
			waitJob(t, st, id, model.JobSuccess)
		}
		mu.Lock()
		defer mu.Unlock()
		if overlap.Load() {
			t.Fatal("a job ran twice at once")
		}
		for _, id := range ids {
			if runs[id] != 1 {
				t.Fatalf("job %s ran %d times", id, runs[id])
			}
		}
	})
}

// TestRetryBackoffAndGiveUp: a failing job is retried with growing delays,
// keeps its last error, gives up after MaxAttempts, and runs again after an
// explicit retry.
func TestRetryBackoffAndGiveUp(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		ctx := context.Background()
		st := openStore(t, url)
		var mu sync.Mutex
		var at []time.Time
		fail := atomic.Bool{}
		fail.Store(true)
		h := jobs.HandlerFunc(func(ctx context.Context, j model.Job) error {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			if fail.Load() {
				return errors.New("neutron said 503")
			}
			return nil
		})
		p := jobs.New(st, map[string]jobs.Handler{"sync": h}, jobs.Options{Poll: 5 * time.Millisecond,
			BackoffBase: 40 * time.Millisecond, BackoffMax: time.Second, MaxAttempts: 4, Logger: quiet})
		runPool(t, p)
		j := enqueue(t, st, "sync", "net1", "pod1")
		p.Wake()
		deadline := time.Now().Add(10 * time.Second)
		for {
			j = getJob(t, st, j.ID)
			if j.State == model.JobFailed && j.NextRunAt == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("did not give up: %+v", j)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if j.Attempts != 4 || j.LastError != "neutron said 503" {
			t.Fatalf("gave up with %+v", j)
		}
		mu.Lock()
		gaps := []time.Duration{at[1].Sub(at[0]), at[2].Sub(at[1]), at[3].Sub(at[2])}
		mu.Unlock()
		// 40, 80, 160 ms with ±20% jitter: never earlier than that. The
		// ceiling is loose: a loaded CI machine delays timers, not the rule.
		for i, want := range []time.Duration{40, 80, 160} {
			want *= time.Millisecond
			if gaps[i] < want*8/10 || gaps[i] > want+2*time.Second {
				t.Fatalf("retry %d after %s, want about %s (gaps %v)", i+1, gaps[i], want, gaps)
			}
		}
		fail.Store(false)
		var rj model.Job
		st.Write(ctx, func(tx *store.Tx) error {
			var err error
			rj, err = tx.RetryJob(ctx, j.ID, time.Now())
			return err
		})
		if rj.State != model.JobNew || rj.Attempts != 0 {
			t.Fatalf("after retry: %+v", rj)
		}
		p.Wake()
		if j := waitJob(t, st, j.ID, model.JobSuccess); j.Attempts != 1 || j.LastError != "" {
			t.Fatalf("after retry: %+v", j)
		}
	})
}

// TestPermanentAndPanic: a permanent error fails at once with no retry; a
// panicking handler fails its job and the pool lives on.
func TestPermanentAndPanic(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		st := openStore(t, url)
		p := jobs.New(st, map[string]jobs.Handler{
			"perm":  jobs.HandlerFunc(func(context.Context, model.Job) error { return jobs.Permanent(errors.New("bad request")) }),
			"panic": jobs.HandlerFunc(func(context.Context, model.Job) error { panic("boom") }),
		}, jobs.Options{Poll: 5 * time.Millisecond, BackoffBase: time.Hour, Logger: quiet})
		runPool(t, p)
		a := enqueue(t, st, "perm", "x", "pod1")
		b := enqueue(t, st, "panic", "x", "pod1")
		c := enqueue(t, st, "unknown", "x", "pod1")
		if j := waitJob(t, st, a.ID, model.JobFailed); j.NextRunAt != nil || j.LastError != "bad request" {
			t.Fatalf("permanent: %+v", j)
		}
		if j := waitJob(t, st, b.ID, model.JobFailed); j.NextRunAt == nil || j.LastError != "handler panic: boom" {
			t.Fatalf("panic: %+v", j)
		}
		if j := waitJob(t, st, c.ID, model.JobFailed); j.NextRunAt != nil {
			t.Fatalf("no handler: %+v", j)
		}
	})
}

// TestShutdownReleasesJob: a pool stopped mid-job releases it, due at once.
func TestShutdownReleasesJob(t *testing.T) {
	storeKinds(t, func(t *testing.T, url string) {
		st := openStore(t, url)
		started := make(chan struct{})
		p := jobs.New(st, map[string]jobs.Handler{"sync": jobs.HandlerFunc(func(ctx context.Context, j model.Job) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})}, jobs.Options{Poll: 5 * time.Millisecond, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()
		j := enqueue(t, st, "sync", "net1", "pod1")
		p.Wake()
		<-started
		cancel()
		<-done
		j = getJob(t, st, j.ID)
		if j.State != model.JobFailed || j.NextRunAt == nil || time.Until(*j.NextRunAt) > 0 || j.LeaseOwner != "" {
			t.Fatalf("after shutdown: %+v", j)
		}
	})
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childWorker())
	}
	os.Exit(neutrontest.Around(func() int { return pgtest.RunMain(m) }))
}
