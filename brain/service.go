// Package brain is the single source of truth for what exists: pods, top
// networks and their per-pod segments, subnets, ports and gateways. It
// enforces the cross-pod L2 rules, allocates segmentation ids through the
// type drivers and computes each pod's desired state.
package brain

import (
	"context"
	"time"

	"github.com/l2span/l2span/brain/store"
)

// Config holds the type drivers' ranges and the duplicate-MAC detection
// rule: DupMoves moves within DupWindow freeze a MAC (FRR's default is 5
// moves in 180 s).
type Config struct {
	VLANRanges []VLANRange
	VNIRanges  []VNIRange
	DupMoves   int
	DupWindow  time.Duration
	// BottomJobs enqueues a network_sync job (in the same transaction) for
	// each (network, pod) whose ports change, so the bottom clouds follow.
	BottomJobs bool
}

// Service applies the rules over a store.
type Service struct {
	store *store.Store
	cfg   Config
	// committed is told the revision of every write that changed state.
	committed func(rev int64)
	now       func() time.Time
	// reservedMAC draws the MAC of a port the brain reserves (random in
	// Neutron's fa:16:3e prefix).
	reservedMAC func() string

	// Single-port creates are group-committed (see Start).
	ports *portCommitter
}

// NewService returns a Service over st. committed, if not nil, is called
// after each commit that produced a new revision.
func NewService(st *store.Store, cfg Config, committed func(int64)) *Service {
	if committed == nil {
		committed = func(int64) {}
	}
	if cfg.DupMoves <= 0 {
		cfg.DupMoves = 5
	}
	if cfg.DupWindow <= 0 {
		cfg.DupWindow = 180 * time.Second
	}
	return &Service{store: st, cfg: cfg, committed: committed, now: func() time.Time { return time.Now().UTC() },
		reservedMAC: randomNeutronMAC, ports: newPortCommitter()}
}

func (s *Service) write(ctx context.Context, fn func(*store.Tx) error) error {
	rev, err := s.store.Write(ctx, fn)
	if err != nil {
		return err
	}
	if rev > 0 {
		s.committed(rev)
	}
	return nil
}

func (s *Service) read(ctx context.Context, fn func(*store.Tx) error) error {
	return s.store.Read(ctx, fn)
}
