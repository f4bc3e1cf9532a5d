package agent

import (
	"context"
	"time"
)

// ChangeNotifier is a dataplane that tells when what it programs may have
// changed under it (vtep/hwvtep: a table it writes changed in the switch's
// database). The agent reconciles then, so a row deleted behind its back
// is back at once instead of at the next resync. The kernel's equivalent
// is WatchKernel.
type ChangeNotifier interface {
	DataplaneChanged() <-chan struct{}
}

// dataplaneDebounce gathers a burst of changes (a transaction of many
// rows, several transactions of one write) into one reconcile.
const dataplaneDebounce = 100 * time.Millisecond

func (a *Agent) watchDataplane(ctx context.Context, n ChangeNotifier) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.DataplaneChanged():
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(dataplaneDebounce):
		}
		a.rec.Trigger()
	}
}
