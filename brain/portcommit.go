package brain

import (
	"context"
	"errors"
	"sync"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// ErrNotStarted is what CreatePort returns before Start or after Close: no
// group-commit loop is there to take the port.
var ErrNotStarted = errors.New("brain service is not running (Start was not called, or Close was)")

// maxPortBatch bounds one group commit.
const maxPortBatch = 256

// portCommitter is the group commit of single-port creates: requests that
// arrive while a commit is in flight share the next transaction (one fsync).
type portCommitter struct {
	queue chan portRequest

	mu      sync.Mutex
	running bool
	stop    context.CancelFunc
	done    chan struct{} // closed when the loop has answered all it took
}

type portRequest struct {
	ctx  context.Context
	port model.Port
	done chan portResult
}

type portResult struct {
	port model.Port
	err  error
}

func newPortCommitter() *portCommitter {
	done := make(chan struct{})
	close(done)
	return &portCommitter{done: done}
}

// Start runs the service's background work, the group-commit loop of
// CreatePort, until ctx ends or Close is called. Starting a running
// service does nothing.
func (s *Service) Start(ctx context.Context) {
	c := s.ports
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return
	}
	ctx, c.stop = context.WithCancel(ctx)
	// A queue per run: a request left behind by an earlier run (its caller
	// was told ErrNotStarted) must never be committed by a later one.
	queue, done := make(chan portRequest, 4*maxPortBatch), make(chan struct{})
	c.queue, c.done, c.running = queue, done, true
	go func() {
		defer close(done)
		s.commitPorts(ctx, queue)
	}()
}

// Close stops what Start started and waits for it: a batch being committed
// finishes, ports still queued are answered with ErrNotStarted.
func (s *Service) Close() {
	c := s.ports
	c.mu.Lock()
	if c.running {
		c.stop()
		c.running = false
	}
	done := c.done
	c.mu.Unlock()
	<-done
}

// CreatePort binds a port in a pod, spreading the network there if needed.
// Concurrent calls are committed together; each succeeds or fails alone.
func (s *Service) CreatePort(ctx context.Context, req PortCreate) (model.Port, error) {
	p, err := s.checkPort(req)
	if err != nil {
		return p, err
	}
	c := s.ports
	c.mu.Lock()
	running, queue, loopDone := c.running, c.queue, c.done
	c.mu.Unlock()
	if !running {
		return model.Port{}, ErrNotStarted
	}
	r := portRequest{ctx: ctx, port: p, done: make(chan portResult, 1)}
	select {
	case queue <- r:
	case <-ctx.Done():
		return model.Port{}, ctx.Err()
	case <-loopDone:
		return model.Port{}, ErrNotStarted
	}
	// Once queued the port may be committed even if the caller goes away;
	// wait for the outcome so the answer is the truth.
	select {
	case res := <-r.done:
		return res.port, res.err
	case <-loopDone:
		// The loop answers everything it took before it ends.
		select {
		case res := <-r.done:
			return res.port, res.err
		default:
			return model.Port{}, ErrNotStarted
		}
	}
}

// commitPorts is the group-commit loop: it takes whatever single-port
// creates are waiting, writes each under its own savepoint in one
// transaction, and answers each with its own result. When ctx ends it
// answers what is still queued and returns.
func (s *Service) commitPorts(ctx context.Context, queue chan portRequest) {
	// A batch taken is committed even while stopping: its callers wait.
	wctx := context.WithoutCancel(ctx)
	for {
		var first portRequest
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-queue:
					r.done <- portResult{err: ErrNotStarted}
				default:
					return
				}
			}
		case first = <-queue:
		}
		batch := []portRequest{first}
	drain:
		for len(batch) < maxPortBatch {
			select {
			case r := <-queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(wctx, batch)
	}
}

func (s *Service) commitBatch(ctx context.Context, batch []portRequest) {
	results := make([]portResult, len(batch))
	err := s.write(ctx, func(tx *store.Tx) error {
		for i, r := range batch {
			results[i] = portResult{}
			if err := r.ctx.Err(); err != nil {
				results[i].err = err
				continue
			}
			p := r.port
			// A fresh cache per port: a failed port's rolled-back segment
			// must not look present to the next one.
			results[i].err = tx.Savepoint(ctx, func() error {
				return s.insertPort(ctx, tx, &p, map[string]*portNetwork{})
			})
			results[i].port = p
		}
		return nil
	})
	for i, r := range batch {
		if err != nil {
			results[i] = portResult{err: err}
		}
		r.done <- results[i]
	}
}
