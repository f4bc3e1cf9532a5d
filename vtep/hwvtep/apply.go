package hwvtep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// transactFunc sends one transaction (or pretends to, for Check).
type transactFunc func(context.Context, []lo.Operation) ([]lo.OperationResult, error)

// batchCounts is what one MAC batch adds to a Result once committed.
type batchCounts struct{ adds, removes, nbrAdds, nbrDels int }

func (c batchCounts) addTo(r *vtep.Result) {
	r.Added.MACs += c.adds
	r.Removed.MACs += c.removes
	r.Added.Neighbors += c.nbrAdds
	r.Removed.Neighbors += c.nbrDels
}

// pendingTxn is a MAC batch in flight.
type pendingTxn struct {
	ops    []lo.Operation
	counts batchCounts
	done   chan struct{}
	err    error
}

// apply runs the plan: the structural transaction, the batched MAC
// writes, the batched MAC deletes, the removal of unwanted switches, and a
// barrier so that the cache holds what was written. It reads p and never
// changes it.
func (b *Backend) apply(ctx context.Context, p *plan, transact transactFunc, barrier bool) (vtep.Result, error) {
	a := newApplier(p, transact, b.opts)
	if a.applyStructure(ctx) && a.applyMACs(ctx) {
		a.applyRemovals(ctx)
		if a.wrote && barrier {
			if err := b.cli.Barrier(ctx); err != nil {
				a.errs = append(a.errs, fmt.Errorf("wait for cache: %w", err))
			}
		}
		if err := ctx.Err(); err != nil {
			a.errs = append(a.errs, fmt.Errorf("set: %w", err))
		}
	}
	return a.res, errors.Join(a.errs...)
}

// applier is the state of one apply: what has been done so far, the
// switch and locator UUIDs as the transactions reveal them, and the MAC
// batch being filled with its window of batches in flight.
type applier struct {
	p         *plan
	transact  transactFunc
	batchSize int
	depth     int // pipeline depth

	res   vtep.Result
	errs  []error
	wrote bool

	lsUUID map[uint32]string    // p.lsUUID plus the switches inserted
	locs   map[string]*locState // p.locs, tracked through the batches

	batch  []lo.Operation
	named  map[string]int // locator key -> op index of its insert in batch
	counts batchCounts
	alone  bool // the batch must not overlap with others
	rows   int

	window    []*pendingTxn
	windowErr error
}

func newApplier(p *plan, transact transactFunc, opts Options) *applier {
	a := &applier{
		p: p, transact: transact, batchSize: opts.BatchSize, depth: opts.PipelineDepth,
		errs:   append([]error(nil), p.errs...),
		lsUUID: maps.Clone(p.lsUUID),
		locs:   make(map[string]*locState, len(p.locs)),
	}
	for k, l := range p.locs {
		c := *l
		a.locs[k] = &c
	}
	return a
}

// applyStructure sends the structure transaction (Global, switch, ports,
// Logical_Switches, bindings, flood sets) and learns the UUIDs of what it
// inserted. False means nothing further may be sent.
func (a *applier) applyStructure(ctx context.Context) bool {
	if len(a.p.structOps) == 0 {
		return true
	}
	a.wrote = true
	results, err := a.transact(ctx, a.p.structOps)
	if err != nil {
		a.errs = append(a.errs, fmt.Errorf("structure transaction: %w", err))
		return false
	}
	for vni, idx := range a.p.lsInsertIdx {
		a.lsUUID[vni] = results[idx].UUID.GoUUID
	}
	for key, idx := range a.p.locInsertIdx {
		a.locs[key].uuid = results[idx].UUID.GoUUID
	}
	a.res.Added.Networks += a.p.structResult.Added.Networks
	a.res.Added.Flood += a.p.structResult.Added.Flood
	a.res.Removed.Flood += a.p.structResult.Removed.Flood
	return true
}

// applyMACs sends the MAC inserts and updates in batches, then the MAC
// deletes (after every write, so that no locator a write needs is
// collected before it), filling up the last write batch. False means a
// batch failed and nothing further may be sent.
func (a *applier) applyMACs(ctx context.Context) bool {
	for _, w := range a.p.macWrites {
		if ctx.Err() != nil {
			break
		}
		if err := a.addWrite(w); err != nil {
			a.errs = append(a.errs, err)
			continue
		}
		if !a.rowAdded(ctx, "mac batch") {
			return false
		}
	}
	for _, d := range a.p.macDeletes {
		if err := a.addDelete(d); err != nil {
			a.errs = append(a.errs, err)
			continue
		}
		if !a.rowAdded(ctx, "mac delete batch") {
			return false
		}
	}
	err := a.flush(ctx)
	a.settle(0)
	if err = cmp.Or(err, a.windowErr); err != nil {
		a.errs = append(a.errs, fmt.Errorf("mac batch: %w", err))
		return false
	}
	return true
}

// addWrite adds the insert or update of one Ucast_Macs_Remote row to the
// batch. A write whose switch could not be made is skipped: its error is
// already reported.
func (a *applier) addWrite(w macWrite) error {
	lsUUID := cmp.Or(w.ls, a.lsUUID[w.vni])
	if lsUUID == "" {
		return nil
	}
	loc, err := a.locRef(w.locator)
	if err != nil {
		return fmt.Errorf("vni %d mac %s: %w", w.vni, w.mac, err)
	}
	row := &ovsdb.UcastMacsRemote{UUID: w.uuid, MAC: w.mac, LogicalSwitch: lsUUID, Locator: loc, Ipaddr: w.ip}
	update := w.uuid != ""
	if update {
		if old := a.locs[w.oldLocator]; old != nil {
			old.refs--
		}
		a.batch, err = ovsdb.UpdateUcastMacsRemoteOps(a.batch, row)
		a.alone = true
	} else {
		a.batch, err = ovsdb.InsertUcastMacsRemoteOps(a.batch, row)
	}
	if err != nil {
		return fmt.Errorf("vni %d: %w", w.vni, err)
	}
	a.counts.adds++
	if update {
		a.counts.removes++
	}
	if w.ip != "" && w.ip != w.oldIP {
		a.counts.nbrAdds++
	}
	if w.oldIP != "" && w.ip != w.oldIP {
		a.counts.nbrDels++
	}
	a.rows++
	return nil
}

// addDelete adds the delete of one Ucast_Macs_Remote row to the batch.
func (a *applier) addDelete(d macDelete) error {
	var err error
	a.batch, err = ovsdb.DeleteUcastMacsRemoteOps(a.batch, d.uuid)
	if err != nil {
		return err
	}
	if l := a.locs[d.locator]; l != nil {
		l.refs--
	}
	a.alone = true
	a.counts.removes++
	if d.ip != "" {
		a.counts.nbrDels++
	}
	a.rows++
	return nil
}

// rowAdded flushes a full batch. False means the batch failed: the window
// has drained (nothing may still be writing when Set returns) and the
// error is recorded.
func (a *applier) rowAdded(ctx context.Context, what string) bool {
	if a.rows < a.batchSize {
		return true
	}
	if err := a.flush(ctx); err != nil {
		a.settle(0)
		a.errs = append(a.errs, fmt.Errorf("%s: %w", what, err))
		return false
	}
	return true
}

// locRef returns the reference of the locator key for a MAC row of the
// batch, adding its insert to the batch when it does not exist (which
// makes the batch go alone: later batches need its UUID).
func (a *applier) locRef(key string) (string, error) {
	l := a.locs[key]
	if l == nil {
		l = &locState{}
		a.locs[key] = l
	}
	l.refs++
	if l.uuid != "" {
		return l.uuid, nil
	}
	if idx, ok := a.named[key]; ok {
		return a.batch[idx].UUIDName, nil
	}
	if a.named == nil {
		a.named = map[string]int{}
	}
	name := ovsdb.NamedUUID("loc", len(a.batch))
	var err error
	a.batch, err = ovsdb.InsertPhysicalLocatorOps(a.batch, &ovsdb.PhysicalLocator{UUID: name, DstIP: key, EncapsulationType: vxlan})
	if err != nil {
		return "", err
	}
	a.named[key] = len(a.batch) - 1
	a.alone = true
	return name, nil
}

// flush sends the batch. A batch that only inserts MACs pointing at
// locators already in the database is independent of every other such
// batch, so up to depth of them are in flight at once: the server commits
// one while this side encodes the next and the cache takes the last one's
// update. A batch that inserts a locator, moves or deletes a MAC (it may
// let the server collect a locator) goes alone, after the window has
// drained.
func (a *applier) flush(ctx context.Context) error {
	if len(a.batch) == 0 {
		return a.windowErr
	}
	a.wrote = true
	if !a.alone && a.depth > 1 {
		a.settle(a.depth - 1)
		if a.windowErr != nil {
			return a.windowErr
		}
		t := &pendingTxn{ops: a.batch, counts: a.counts, done: make(chan struct{})}
		go func() {
			defer close(t.done)
			_, t.err = a.transact(ctx, t.ops)
		}()
		a.window = append(a.window, t)
		a.batch, a.named, a.rows, a.counts = nil, nil, 0, batchCounts{}
		return nil
	}
	a.settle(0)
	if a.windowErr != nil {
		return a.windowErr
	}
	results, err := a.transact(ctx, a.batch)
	if err != nil {
		return err
	}
	for key, idx := range a.named {
		a.locs[key].uuid = results[idx].UUID.GoUUID
	}
	for _, l := range a.locs {
		if l.uuid != "" && l.refs <= 0 && !l.pinned {
			l.uuid = "" // garbage-collected by the server at commit
		}
	}
	a.counts.addTo(&a.res)
	a.batch, a.named, a.rows, a.counts, a.alone = a.batch[:0], nil, 0, batchCounts{}, false
	return nil
}

// settle waits until at most keep batches are in flight, counting those
// that committed and keeping the first error.
func (a *applier) settle(keep int) {
	for len(a.window) > keep {
		t := a.window[0]
		a.window = a.window[1:]
		<-t.done
		if t.err != nil {
			a.windowErr = cmp.Or(a.windowErr, t.err)
			continue
		}
		t.counts.addTo(&a.res)
	}
}

// applyRemovals deletes each unwanted switch, with everything that refers
// to it, in one transaction per switch (a delete must not leave
// references).
func (a *applier) applyRemovals(ctx context.Context) {
	for _, r := range a.p.removals {
		if ctx.Err() != nil {
			break
		}
		a.wrote = true
		if _, err := a.transact(ctx, r.ops); err != nil {
			a.errs = append(a.errs, fmt.Errorf("remove logical switch %s: %w", r.name, err))
			continue
		}
		a.res.Removed.Networks++
		a.res.Removed.MACs += r.macs
		a.res.Removed.Flood += r.flood
		a.res.Removed.Neighbors += r.neighbors
	}
}
