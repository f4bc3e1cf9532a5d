package linux

import (
	"context"

	"github.com/l2span/l2span/vtep"
)

// Check reports what Set(cfg) would change, without changing anything: the
// drift between cfg and the kernel. It runs Set's own logic over a kernel
// that reads through and only counts writes; a device it would create reads
// as empty, so the counts for a missing network are its full contents.
func (b *Backend) Check(ctx context.Context, cfg vtep.Config) (vtep.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set(ctx, &dryKernel{kernel: b.k, created: map[string]bool{}}, cfg)
}

// dryKernel reads through to the kernel and records writes as done.
type dryKernel struct {
	kernel
	created map[string]bool
}

func (d *dryKernel) AddBridge(name string, _ int) error {
	d.created[name] = true
	return nil
}

func (d *dryKernel) AddVXLAN(name string, _ vxlanAttrs, _ int) error {
	d.created[name] = true
	return nil
}

func (d *dryKernel) DelLink(name string) error {
	d.created[name] = true // recreated after, as far as reads go: empty
	return nil
}

func (d *dryKernel) SetUp(string) error                          { return nil }
func (d *dryKernel) SetMTU(string, int) error                    { return nil }
func (d *dryKernel) SetMaster(string, string) error              { return nil }
func (d *dryKernel) SetPortFlags(string, bool, bool) error       { return nil }
func (d *dryKernel) AddFDB(_ string, es []fdbEntry) []error      { return make([]error, len(es)) }
func (d *dryKernel) DelFDB(_ string, es []fdbEntry) []error      { return make([]error, len(es)) }
func (d *dryKernel) AddNeighs(_ string, es []neighEntry) []error { return make([]error, len(es)) }
func (d *dryKernel) DelNeighs(_ string, es []neighEntry) []error { return make([]error, len(es)) }

func (d *dryKernel) PortFlags(name string) (bool, bool, error) {
	if d.created[name] {
		return false, true, nil
	}
	return d.kernel.PortFlags(name)
}

func (d *dryKernel) FDB(dev string) ([]fdbEntry, error) {
	if d.created[dev] {
		return nil, nil
	}
	return d.kernel.FDB(dev)
}

func (d *dryKernel) Neighs(dev string) ([]neighEntry, error) {
	if d.created[dev] {
		return nil, nil
	}
	return d.kernel.Neighs(dev)
}
