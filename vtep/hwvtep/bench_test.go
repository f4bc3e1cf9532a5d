package hwvtep

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// rssHelperEnv names the database endpoint TestProgramUcast50kRSSHelper
// writes to; the test does nothing without it.
const rssHelperEnv = "L2SPAN_HWVTEP_RSS_ENDPOINT"

// TestProgramUcast50kRSSHelper is BenchmarkUcast50k's backend run alone, in
// a process of its own, so that the benchmark can read that process's peak
// RSS untouched by the floor's buffers or earlier rounds.
func TestProgramUcast50kRSSHelper(t *testing.T) {
	ep := os.Getenv(rssHelperEnv)
	if ep == "" {
		t.Skip("run by BenchmarkUcast50k")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	be, err := New(ctx, Options{Endpoint: ep, PhysicalSwitch: "sw0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	res, err := be.Set(ctx, benchConfig())
	if err != nil || res.Added.MACs != benchMACs {
		t.Fatalf("set: %+v %v", res.Added, err)
	}
	// VmHWM, not getrusage: ru_maxrss survives execve, so a helper started
	// by a big parent would report the parent's size.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Printf("vmhwm-kib %s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
}

// backendMaxRSS runs TestProgramUcast50kRSSHelper against a fresh database
// and returns the helper process's peak RSS (VmHWM) in KiB.
func backendMaxRSS(b *testing.B) int64 {
	srv := ovsdbtest.Start(b, ovsdbtest.VTEPSchema)
	defer srv.Stop()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProgramUcast50kRSSHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), rssHelperEnv+"="+srv.Endpoint())
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("rss helper: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "vmhwm-kib "); ok {
			kib, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("rss helper: %q: %v", line, err)
			}
			return kib
		}
	}
	b.Fatalf("rss helper printed no peak RSS:\n%s", out)
	return 0
}

// BenchmarkUcast50k programs 50,000 Ucast_Macs_Remote (over 100 VTEPs)
// with the backend into a fresh database (connect, plan, batched writes,
// and the monitor cache holding every row at the end), and in the same
// iteration writes the same rows into another fresh database with one raw
// transact (the floor). Metrics: floor-ms, ratio (backend/floor),
// heap-peak-MB (Go heap in use, sampled) and maxrss-MB (peak RSS of a
// process that does only the backend's run, the test binary included).
func BenchmarkUcast50k(b *testing.B) {
	cfg := benchConfig()
	var backendTotal, floorTotal time.Duration
	var heapMax uint64
	b.StopTimer()
	rss := backendMaxRSS(b)
	b.StartTimer()
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
	b.ReportMetric(float64(rss)/1024, "maxrss-MB")
}
