package httpapi_test

// Throughput and fan-out benchmarks of the brain over HTTP, SQLite and
// PostgreSQL side by side:
//
//	go test -run '^$' -bench . -benchtime 3s ./brain/httpapi/
//
// Each sub-benchmark sets its brain up once (on its first run) and reuses it
// for the larger b.N runs, so a run's figures cover only the measured work.

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/test/pgtest"
)

const (
	benchClients = 8    // concurrent API clients in the create benchmarks
	benchPods    = 10   // pods the benchmark network spans
	bulkSize     = 1000 // ports per bulk request
	fanWatchers  = 1000 // watchers in BenchmarkWatchFanout
)

// parentTB sends Cleanup to the parent benchmark so that a brain set up in a
// sub-benchmark's first run lives through its later, larger runs; failures
// still go to the sub-benchmark that hit them.
type parentTB struct {
	testing.TB
	parent *testing.B
}

func (p parentTB) Cleanup(f func()) { p.parent.Cleanup(f) }

// benchEnv is a brain with benchPods pods and one shared_vxlan network with
// a /8 subnet, already spanned into every pod.
type benchEnv struct {
	b      *testBrain
	net    api.Network
	next   atomic.Uint64 // next port index: MAC, IP and pod come from it
	kind   string
	client *api.Client
}

// benchStores runs fn as sub-benchmarks "sqlite" and "postgres", handing each
// one env built on its first run.
func benchStores(b *testing.B, fn func(b *testing.B, env *benchEnv)) {
	for _, kind := range []string{"sqlite", "postgres"} {
		var env *benchEnv
		b.Run(kind, func(sb *testing.B) {
			if env == nil {
				env = newBenchEnv(parentTB{sb, b}, kind)
			}
			fn(sb, env)
		})
	}
}

func newBenchEnv(t parentTB, kind string) *benchEnv {
	var url string
	if kind == "sqlite" {
		url = "sqlite://" + filepath.Join(t.parent.TempDir(), "brain.db")
	} else {
		url = pgtest.SharedDatabase(t)
	}
	ctx := context.Background()
	tb := startBrain(t, url, testConfig, httpapi.Options{})
	env := &benchEnv{b: tb, kind: kind, client: tb.client}
	for i := range benchPods {
		mkPods(t, tb.client, api.Pod{ID: podName(i), AZ: fmt.Sprintf("az%d", i)})
	}
	n, err := tb.client.CreateNetwork(ctx, api.NetworkCreate{Name: "bench", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	env.net = n
	if _, err := tb.client.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "10.0.0.0/8", GatewayIP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// One port per pod spans the network everywhere, so the measured creates
	// are plain port inserts (no segment creation).
	for range benchPods {
		if _, err := tb.client.CreatePort(ctx, env.port()); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func podName(i int) string { return fmt.Sprintf("pod%d", i) }

// port returns the next port to create: a unique MAC and IP, pods in turn.
func (e *benchEnv) port() api.PortCreate {
	i := e.next.Add(1)
	mac := fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return api.PortCreate{NetworkID: e.net.ID, PodID: podName(int(i % benchPods)), MAC: mac, IPs: []string{ip.String()}}
}

// percentile returns the q-quantile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// runConcurrent runs op b.N times from benchClients goroutines and returns
// every call's latency, sorted.
func runConcurrent(b *testing.B, clients int, op func() error) []time.Duration {
	var (
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, b.N)
		left  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	left.Store(int64(b.N))
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, b.N/clients+1)
			for left.Add(-1) >= 0 {
				start := time.Now()
				if err := op(); err != nil {
					first.CompareAndSwap(nil, &err)
					left.Store(0)
					break
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := first.Load(); err != nil {
		b.Fatal(*err)
	}
	slices.Sort(lat)
	return lat
}

// BenchmarkPortCreate: durable single-port creates over HTTP from 8
// concurrent clients into one network spanned over 10 pods. One op is one
// port; ns/op is wall time per port (1e9 / ports/s).
func BenchmarkPortCreate(b *testing.B) {
	benchStores(b, func(b *testing.B, env *benchEnv) {
		ctx := context.Background()
		lat := runConcurrent(b, benchClients, func() error {
			_, err := env.client.CreatePort(ctx, env.port())
			return err
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ports/s")
		b.ReportMetric(percentile(lat, 0.50), "p50-ms")
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	})
}

// BenchmarkPortCreateBulk: bulk creates of 1,000 ports per request from 8
// concurrent clients. One op is one request of 1,000 ports.
func BenchmarkPortCreateBulk(b *testing.B) {
	benchStores(b, func(b *testing.B, env *benchEnv) {
		ctx := context.Background()
		lat := runConcurrent(b, benchClients, func() error {
			req := make([]api.PortCreate, bulkSize)
			for i := range req {
				req[i] = env.port()
			}
			ports, err := env.client.CreatePorts(ctx, req)
			if err == nil && len(ports) != bulkSize {
				err = fmt.Errorf("bulk create returned %d ports, want %d", len(ports), bulkSize)
			}
			return err
		})
		b.ReportMetric(float64(b.N*bulkSize)/b.Elapsed().Seconds(), "ports/s")
		b.ReportMetric(percentile(lat, 0.50), "p50-ms")
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	})
}

// raiseNoFile lifts the soft RLIMIT_NOFILE toward want (both ends of every
// watch connection live in this process).
func raiseNoFile(b *testing.B, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < want {
		b.Logf("RLIMIT_NOFILE hard limit %d < %d: watchers may fail", lim.Max, want)
	}
}

// fanout is 1,000 watchers, 100 on each of the 10 pods the network spans.
type fanout struct {
	seen   []chan time.Time // per watcher: when it saw an update
	cancel context.CancelFunc
	errs   chan error
}

func startFanout(t parentTB, env *benchEnv) *fanout {
	raiseNoFile(t.parent, 4*fanWatchers+1024)
	ctx, cancel := context.WithCancel(context.Background())
	f := &fanout{seen: make([]chan time.Time, fanWatchers), cancel: cancel, errs: make(chan error, fanWatchers)}
	// Ten clients, one per pod, so that no single transport's connection
	// pool mutex carries all 1,000 streams (api.Client's transport has no
	// MaxConnsPerHost limit, so each client opens its 100 streams at once).
	clients := make([]*api.Client, benchPods)
	for i := range clients {
		c, err := api.NewClient(env.b.http.URL, api.WithToken(env.b.token))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	ready := make(chan struct{}, fanWatchers)
	for w := range fanWatchers {
		f.seen[w] = make(chan time.Time, 4)
		pod := w % benchPods
		go func() {
			err := clients[pod].Watch(ctx, podName(pod), 0, time.Minute, func(ev api.WatchEvent) error {
				now := time.Now()
				switch ev.Type {
				case api.EventSnapshot:
					if len(ev.State.Networks) != 1 {
						return fmt.Errorf("watcher %d: snapshot of %s has %d networks, want 1", w, podName(pod), len(ev.State.Networks))
					}
					ready <- struct{}{}
				case api.EventUpdate:
					if len(ev.Networks) != 1 || ev.Networks[0].NetworkID != env.net.ID {
						return fmt.Errorf("watcher %d: unexpected update %+v", w, ev)
					}
					f.seen[w] <- now
				}
				return nil
			})
			if ctx.Err() == nil {
				f.errs <- fmt.Errorf("watcher %d on %s: %w", w, podName(pod), err)
			}
		}()
	}
	t.Cleanup(cancel)
	timeout := time.After(60 * time.Second)
	for range fanWatchers {
		select {
		case <-ready:
		case err := <-f.errs:
			t.Fatal(err)
		case <-timeout:
			t.Fatal("watchers did not all get their snapshot within 60s")
		}
	}
	return f
}

// BenchmarkWatchFanout: 1,000 watchers (10 pods x 100) on one network spanned
// over those 10 pods; each op creates one port (in the pods in turn) and
// waits until every watcher has seen the update (then, unmeasured, deletes
// it again, so every update carries the same 11-port network state). The latency of a watcher is
// from just before the create request to the watcher's decoding the event,
// so it includes the create's durable commit. ns/op is reported as 0: it is
// the slowest watcher's latency plus bookkeeping, covered by max-ms.
func BenchmarkWatchFanout(b *testing.B) {
	parent := b
	for _, kind := range []string{"sqlite", "postgres"} {
		var env *benchEnv
		var fan *fanout
		b.Run(kind, func(b *testing.B) {
			if env == nil {
				env = newBenchEnv(parentTB{b, parent}, kind)
				fan = startFanout(parentTB{b, parent}, env)
			}
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N*fanWatchers)
			var commit []time.Duration
			b.ResetTimer()
			// waitAll returns when every watcher has seen one more update.
			waitAll := func(record func(at time.Time)) {
				timeout := time.After(10 * time.Second)
				for w, ch := range fan.seen {
					select {
					case at := <-ch:
						record(at)
					case err := <-fan.errs:
						b.Fatal(err)
					case <-timeout:
						b.Fatalf("watcher %d did not see the change within 10s", w)
					}
				}
			}
			for range b.N {
				start := time.Now()
				p, err := env.client.CreatePort(ctx, env.port())
				if err != nil {
					b.Fatal(err)
				}
				commit = append(commit, time.Since(start))
				waitAll(func(at time.Time) { lat = append(lat, at.Sub(start)) })
				// Delete the port again (not measured) so that every
				// change carries the same network state (10+1 ports)
				// however long the benchmark runs.
				b.StopTimer()
				if err := env.client.DeletePort(ctx, p.ID); err != nil {
					b.Fatal(err)
				}
				waitAll(func(time.Time) {})
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			slices.Sort(commit)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(fanWatchers), "watchers")
			b.ReportMetric(percentile(commit, 0.50), "create-p50-ms")
			b.ReportMetric(percentile(lat, 0.50), "p50-ms")
			b.ReportMetric(percentile(lat, 0.99), "p99-ms")
			b.ReportMetric(percentile(lat, 1), "max-ms")
		})
	}
}
