package bpf

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Fencing lease. The programs on every local port drop all frames while the
// lease is armed and past its expiry (CLOCK_MONOTONIC, as bpf_ktime_get_ns).
// The map is pinned, so the kernel keeps enforcing it when the agent that
// renews it is dead: a gateway whose agent died stops bridging before a
// standby takes over, instead of forwarding beside it.

// RenewLease sets the lease to expire ttl from now; armed says whether an
// expired lease drops frames (false: never fenced).
func (m *Manager) RenewLease(ttl time.Duration, armed bool) error {
	now, err := monotonic()
	if err != nil {
		return err
	}
	return m.putLease(l2spanLease{ExpiresNs: uint64(now + ttl.Nanoseconds()), Armed: b2u(armed)})
}

// Fence expires the lease at once, armed: the gateway stops bridging until
// the next RenewLease.
func (m *Manager) Fence() error { return m.putLease(l2spanLease{ExpiresNs: 0, Armed: 1}) }

// Fenced reports whether the lease is armed and expired now.
func (m *Manager) Fenced() (bool, error) {
	var l l2spanLease
	if err := m.objs.L2sLease.Lookup(uint32(0), &l); err != nil {
		return false, fmt.Errorf("read fencing lease: %w", err)
	}
	now, err := monotonic()
	if err != nil {
		return false, err
	}
	return l.Armed != 0 && uint64(now) > l.ExpiresNs, nil
}

func (m *Manager) putLease(l l2spanLease) error {
	if err := m.objs.L2sLease.Update(uint32(0), &l, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write fencing lease: %w", err)
	}
	return nil
}

func monotonic() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return ts.Nano(), nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
