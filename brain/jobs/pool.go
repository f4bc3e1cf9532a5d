// Package jobs runs the brain's durable jobs: work on bottom clouds kept in
// the brain's store, claimed under a lease in a write transaction (so two
// brain replicas never run one job at once), retried with exponential
// backoff and taken over by another worker when its worker dies.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// Handler runs one job type. Run must be idempotent: a job may run twice,
// or again after a crash half-way, and must then reach the same state.
type Handler interface {
	Run(ctx context.Context, j model.Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, j model.Job) error

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, j model.Job) error { return f(ctx, j) }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks an error that a retry cannot fix: the job fails at once
// and waits for an explicit retry.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Options configure a Pool. Zero values take the defaults.
type Options struct {
	// Owner names this worker in leases; default host-pid-random.
	Owner string
	// Workers is how many jobs run at once (default 4).
	Workers int
	// Lease is how long a claim holds without renewal (default 30 s); it is
	// renewed every Lease/3 while the job runs. A dead worker's jobs are
	// taken over after at most Lease.
	Lease time.Duration
	// Poll is how often to look for due jobs when not woken (default 1 s).
	Poll time.Duration
	// BackoffBase and BackoffMax bound the retry delay, base*2^(attempt-1)
	// with ±20% jitter (defaults 1 s and 5 min).
	BackoffBase, BackoffMax time.Duration
	// MaxAttempts is when a failing job gives up and waits for a manual
	// retry (default 20; negative: never).
	MaxAttempts int
	// Timeout bounds one run (default 5 min).
	Timeout time.Duration
	Logger  *slog.Logger
}

func (o *Options) defaults() {
	if o.Owner == "" {
		h, _ := os.Hostname()
		o.Owner = fmt.Sprintf("%s-%d-%s", h, os.Getpid(), uuid.NewString()[:8])
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Pool claims due jobs from the store and runs them with their handlers.
type Pool struct {
	st       *store.Store
	handlers map[string]Handler
	opts     Options
	wake     chan struct{}
	done     chan struct{} // a worker finished
}

// New returns a pool over st running handlers by job type.
func New(st *store.Store, handlers map[string]Handler, opts Options) *Pool {
	opts.defaults()
	return &Pool{st: st, handlers: handlers, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{}, opts.Workers)}
}

// Wake makes the pool look for due jobs now (e.g. after a commit that
// enqueued one). It never blocks.
func (p *Pool) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs jobs until ctx ends, then waits for the running jobs
// (their contexts are cancelled; an interrupted job is released, due again
// at once, so another replica takes it without waiting for the lease).
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		for drained := false; !drained; {
			select {
			case <-p.done:
				running--
			default:
				drained = true
			}
		}
		claimed := 0
		if free := p.opts.Workers - running; free > 0 && ctx.Err() == nil {
			jobs, err := p.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				p.opts.Logger.Warn("claim jobs", "err", err)
			}
			for _, j := range jobs {
				running++
				wg.Add(1)
				go func() {
					defer wg.Done()
					p.runJob(ctx, j)
					p.done <- struct{}{}
				}()
			}
			claimed = len(jobs)
			if claimed == free {
				continue // there may be more due
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(p.opts.Poll)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.wake:
		case <-p.done:
			running--
		case <-timer.C:
		}
	}
}

func (p *Pool) claim(ctx context.Context, n int) (jobs []model.Job, err error) {
	_, err = p.st.Write(ctx, func(tx *store.Tx) error {
		jobs, err = tx.ClaimJobs(ctx, p.opts.Owner, time.Now(), p.opts.Lease, n)
		return err
	})
	return jobs, err
}

// backoff is the delay before retry number attempts (1-based).
func (p *Pool) backoff(attempts int) time.Duration {
	d := p.opts.BackoffBase
	for i := 1; i < attempts && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.opts.BackoffMax)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

func (p *Pool) runJob(parent context.Context, j model.Job) {
	log := p.opts.Logger.With("job", j.ID, "type", j.Type, "resource", j.Resource, "pod", j.PodID, "attempt", j.Attempts)
	ctx, cancel := context.WithTimeout(parent, p.opts.Timeout)
	defer cancel()

	// Keep the lease while the job runs; a lost lease cancels the run.
	lost := make(chan struct{})
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(p.opts.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var ok bool
			_, err := p.st.Write(ctx, func(tx *store.Tx) error {
				var err error
				ok, err = tx.RenewLease(ctx, j.ID, p.opts.Owner, time.Now(), p.opts.Lease)
				return err
			})
			if err != nil {
				log.Warn("renew job lease", "err", err)
				continue
			}
			if !ok {
				close(lost)
				cancel()
				return
			}
		}
	}()

	start := time.Now()
	var err error
	h := p.handlers[j.Type]
	if h == nil {
		err = Permanent(fmt.Errorf("no handler for job type %q", j.Type))
	} else {
		err = safeRun(ctx, h, j)
	}
	cancel()
	<-hbDone
	select {
	case <-lost:
		log.Warn("job lease lost; result dropped", "err", err)
		return
	default:
	}

	// Record the outcome even when shutting down.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(parent), 10*time.Second)
	defer fcancel()
	now := time.Now()
	var ok bool
	_, werr := p.st.Write(fctx, func(tx *store.Tx) error {
		var err2 error
		if err == nil {
			ok, err2 = tx.CompleteJob(fctx, j.ID, p.opts.Owner, now)
			return err2
		}
		var retryAt time.Time
		switch {
		case parent.Err() != nil:
			retryAt = now // interrupted by shutdown: due again at once
		case IsPermanent(err):
		case p.opts.MaxAttempts < 0 || j.Attempts < p.opts.MaxAttempts:
			retryAt = now.Add(p.backoff(j.Attempts))
		}
		ok, err2 = tx.FailJob(fctx, j.ID, p.opts.Owner, now, err.Error(), retryAt)
		return err2
	})
	switch {
	case werr != nil:
		log.Error("record job outcome", "err", werr, "run_err", err)
	case !ok:
		log.Warn("job lease lost before its outcome was recorded", "err", err)
	case err != nil:
		log.Warn("job failed", "err", err, "took", time.Since(start))
	default:
		log.Debug("job done", "took", time.Since(start))
	}
}

// safeRun turns a handler panic into an error so one bad job cannot kill
// the brain.
func safeRun(ctx context.Context, h Handler, j model.Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h.Run(ctx, j)
}
