package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/l2span/l2span/brain"
)

// Resync asks every interval for a run of each network's sync job in each
// pod it spans (brain.Service.ResyncBottoms), so what changed in a pod's
// Neutron behind the brain's back is repaired and read back: a shadow port
// deleted by hand, a VM bound or moved to another compute host. It returns
// when ctx ends; interval <= 0 returns at once.
func Resync(ctx context.Context, svc *brain.Service, interval time.Duration, wake func(), log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := svc.ResyncBottoms(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("bottom resync", "err", err)
		case n > 0:
			log.Debug("bottom resync", "jobs", n)
			wake()
		}
	}
}
