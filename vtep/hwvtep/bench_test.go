package hwvtep

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/test/ovsdbtest"
	"github.com/l2span/l2span/vtep"
)

const (
	benchMACs  = 50_000
	benchVTEPs = 100
)

func benchConfig() vtep.Config {
	n := vtep.Network{VNI: 1000, Flood: []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, 1})}}
	for i := range benchMACs {
		n.MACs = append(n.MACs, vtep.MACEntry{MAC: mac(i), VTEP: netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%benchVTEPs)})})
	}
	return vtep.Config{Networks: []vtep.Network{n}}
}

// rawFloor writes the same rows (switch, locators, 50k Ucast_Macs_Remote)
// as one JSON-RPC transact straight on the unix socket, with
// encoding/json and no library, and waits for the reply.
func rawFloor(ctx context.Context, sock string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	params := []any{"hardware_vtep",
		map[string]any{"op": "insert", "table": "Logical_Switch", "uuid-name": "ls", "row": map[string]any{"name": "l2s-1000", "tunnel_key": 1000}}}
	for v := range benchVTEPs {
		params = append(params, map[string]any{"op": "insert", "table": "Physical_Locator", "uuid-name": fmt.Sprintf("loc%d", v),
			"row": map[string]any{"encapsulation_type": "vxlan_over_ipv4", "dst_ip": fmt.Sprintf("198.51.100.%d", 1+v)}})
	}
	for i := range benchMACs {
		params = append(params, map[string]any{"op": "insert", "table": "Ucast_Macs_Remote", "row": map[string]any{
			"MAC": mac(i).String(), "logical_switch": []string{"named-uuid", "ls"}, "locator": []string{"named-uuid", fmt.Sprintf("loc%d", i%benchVTEPs)}}})
	}
	if err := json.NewEncoder(c).Encode(map[string]any{"method": "transact", "params": params, "id": 1}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	for {
		var m struct {
			ID     any               `json:"id"`
			Method string            `json:"method"`
			Result []json.RawMessage `json:"result"`
			Error  any               `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("reply: %w", err)
		}
		if m.Method != "" {
			continue
		}
		if m.Error != nil || len(m.Result) != len(params)-1 {
			return fmt.Errorf("transact failed: %v (%d results)", m.Error, len(m.Result))
		}
		for _, r := range m.Result {
			var res struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(r, &res); err != nil || res.Error != "" {
				return fmt.Errorf("transact: %s", r)
			}
		}
		return nil
	}
}

// heapPeak samples the Go heap in use every 5ms until stopped.
type heapPeak struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) done() uint64 { close(h.stop); h.wg.Wait(); return h.peak.Load() }

// BenchmarkUcast50k programs 50,000 Ucast_Macs_Remote (over 100 VTEPs)
// with the backend into a fresh database (connect, plan, batched writes,
// and the monitor cache holding every row at the end), and in the same
// iteration writes the same rows into another fresh database with one raw
// transact (the floor). Metrics: floor-ms, ratio (backend/floor),
// heap-peak-MB (Go heap in use, sampled) and maxrss-MB (process peak RSS
// after the backend's first run, which precedes any floor run).
func BenchmarkUcast50k(b *testing.B) {
	cfg := benchConfig()
	var backendTotal, floorTotal time.Duration
	var heapMax uint64
	var rssAfterBackend int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srvA := ovsdbtest.Start(b, ovsdbtest.VTEPSchema)
		srvB := ovsdbtest.Start(b, ovsdbtest.VTEPSchema)
		runtime.GC()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		hp := watchHeap()
		b.StartTimer()

		start := time.Now()
		be, err := New(ctx, Options{Endpoint: srvA.Endpoint(), PhysicalSwitch: "sw0", Logger: testLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		res, err := be.Set(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		heapMax = max(heapMax, hp.done())
		if res.Added.MACs != benchMACs {
			b.Fatalf("added %d", res.Added.MACs)
		}
		var rows int
		be.cli.Read(func(st *ovsdb.State) { rows = len(st.UcastMacsRemote) })
		if rows != benchMACs {
			b.Fatalf("cache holds %d rows", rows)
		}
		be.Close()
		if i == 0 {
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			rssAfterBackend = ru.Maxrss
		}
		backendTotal += elapsed

		start = time.Now()
		if err := rawFloor(ctx, srvB.Socket()); err != nil {
			b.Fatal(err)
		}
		floorTotal += time.Since(start)
		cancel()
		_ = srvA.Stop()
		_ = srvB.Stop()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(floorTotal.Milliseconds())/float64(b.N), "floor-ms")
	b.ReportMetric(float64(backendTotal.Milliseconds())/float64(b.N), "backend-ms")
	b.ReportMetric(float64(backendTotal)/float64(floorTotal), "ratio")
	b.ReportMetric(float64(heapMax)/(1<<20), "heap-peak-MB")
	b.ReportMetric(float64(rssAfterBackend)/1024, "maxrss-MB")
}
