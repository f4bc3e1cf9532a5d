package hwvtep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/vtep"
	lo "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Unit tests of the planner on a cache snapshot, without a server.

func emptyState() *ovsdb.State {
	return &ovsdb.State{} // nil maps read as empty
}

func TestParseLocalInterface(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port string
		vlan int
		bad  bool
	}{
		{"p0", "p0", 0, false},
		{"p0:10", "p0", 10, false},
		{"eth1:4095", "eth1", 4095, false},
		{"p0:4096", "", 0, true},
		{"p0:x", "", 0, true},
		{":5", "", 0, true},
	} {
		port, vlan, err := ParseLocalInterface(tc.in)
		if (err != nil) != tc.bad || port != tc.port || vlan != tc.vlan {
			t.Errorf("%q: %q %d %v", tc.in, port, vlan, err)
		}
	}
}

func TestPlanFreshDatabase(t *testing.T) {
	p := makePlan(emptyState(), Options{PhysicalSwitch: "sw0", TunnelIP: self}, baseConfig().Normalize())
	if len(p.errs) != 0 {
		t.Fatal(p.errs)
	}
	var got []string
	for _, op := range p.structOps {
		got = append(got, op.Op+" "+op.Table)
	}
	want := []string{
		"insert Logical_Switch", "insert Logical_Switch",
		"insert Global", "insert Physical_Switch", "mutate Global",
		"insert Physical_Port", "mutate Physical_Switch",
		"insert Physical_Locator", "insert Physical_Locator", "insert Physical_Locator_Set", "insert Mcast_Macs_Remote",
		"insert Physical_Locator", "insert Physical_Locator_Set", "insert Mcast_Macs_Remote",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("structure ops:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(p.macWrites) != 3 || len(p.macDeletes) != 0 || len(p.removals) != 0 {
		t.Errorf("writes %d deletes %d removals %d", len(p.macWrites), len(p.macDeletes), len(p.removals))
	}
	if p.macWrites[0].ip != "10.0.0.1" || p.macWrites[1].ip != "" {
		t.Errorf("ipaddr choice: %+v", p.macWrites[:2])
	}
	// Every op must encode (named and real UUIDs, sets, maps).
	if _, err := json.Marshal(p.structOps); err != nil {
		t.Fatal(err)
	}
}

func TestPlanRejectsBadInput(t *testing.T) {
	cfg := vtep.Config{Networks: []vtep.Network{
		{VNI: 1 << 24},
		{VNI: 1, LocalInterface: "p0:9999"},
		{VNI: 2, LocalInterface: "p0:5"},
		{VNI: 3, LocalInterface: "p0:5"},
		{VNI: 4, Flood: []netip.Addr{{}}},
	}}
	p := makePlan(emptyState(), Options{PhysicalSwitch: "sw0"}, cfg.Normalize())
	msgs := ""
	for _, e := range p.errs {
		msgs += e.Error() + "\n"
	}
	for _, want := range []string{"vni 16777216: larger than 24 bits", "VLAN must be 0-4095", "vni 3: p0:5 already bound", "vni 4: invalid flood VTEP"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("missing error %q in:\n%s", want, msgs)
		}
	}
}

// TestApplyWindowDrainsOnError fails one pipelined batch: apply must
// return that error, send nothing after it, and leave no transaction
// running when it returns.
func TestApplyWindowDrainsOnError(t *testing.T) {
	cfg := vtep.Config{Networks: []vtep.Network{{VNI: 9, Flood: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}}
	for i := range 100 {
		cfg.Networks[0].MACs = append(cfg.Networks[0].MACs, vtep.MACEntry{MAC: mac(i), VTEP: netip.MustParseAddr("192.0.2.1")})
	}
	opts := Options{PhysicalSwitch: "sw0", BatchSize: 10, PipelineDepth: 3}
	b := &Backend{opts: opts}
	p := makePlan(emptyState(), opts, cfg.Normalize())

	var mu sync.Mutex
	calls, running, maxRunning := 0, 0, 0
	boom := errors.New("injected failure")
	transact := func(ctx context.Context, ops []lo.Operation) ([]lo.OperationResult, error) {
		mu.Lock()
		calls++
		n := calls
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		time.Sleep(20 * time.Millisecond)
		if n == 4 { // structure, locator batch, then two pipelined batches
			return nil, boom
		}
		out := make([]lo.OperationResult, len(ops))
		for i := range out {
			out[i].UUID = lo.UUID{GoUUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", n*1000+i)}
		}
		return out, nil
	}
	_, err := b.apply(context.Background(), p, transact, false)
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(err, boom) {
		t.Errorf("apply returned %v, want the injected failure", err)
	}
	if running != 0 {
		t.Errorf("%d transactions still running after apply returned", running)
	}
	if maxRunning < 2 {
		t.Errorf("at most %d transaction in flight: the window never opened", maxRunning)
	}
	if calls > 4+opts.PipelineDepth {
		t.Errorf("%d transactions sent; sending should stop soon after the failure", calls)
	}
}
