package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

const (
	deltaNetPorts = 10000 // ports already in the network
	deltaWatchers = 10    // watchers of the remote pod, per stream kind
)

// rawWatcher reads a watch stream line by line without decoding it, and
// counts the bytes and the change events (not the snapshot, not heartbeats).
type rawWatcher struct {
	bytes, events atomic.Int64
}

func (w *rawWatcher) run(ctx context.Context, url string, ready *sync.WaitGroup) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	first := true
	for {
		line, err := r.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			var more []byte
			more, err = r.ReadSlice('\n')
			line = append(bytes.Clone(line), more...)
		}
		if err != nil {
			return err
		}
		if first {
			first = false
			ready.Done()
			continue
		}
		if bytes.Contains(line[:min(len(line), 40)], []byte(`"heartbeat"`)) {
			continue
		}
		w.bytes.Add(int64(len(line)))
		w.events.Add(1)
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPortChange10k: one port change in a network of 10k ports spanned
// over two pods, watched by 10 watchers of the remote pod, on the delta
// stream (delta=1) and on the full-network stream older agents use (the
// wire of every change before the scale work), side by side. Reports bytes
// on the wire per watcher per change and the process's CPU per change
// (brain + watchers that only count bytes), over SQLite.
func BenchmarkPortChange10k(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tb := startBrain(b, "sqlite://"+filepath.Join(b.TempDir(), "brain.db"), testConfig, httpapi.Options{Heartbeat: time.Minute})
	c := tb.client
	mkPods(b, c, api.Pod{ID: "pod0", AZ: "az0"}, api.Pod{ID: "pod1", AZ: "az1"})
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "big", Type: api.TypeSharedVXLAN})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:ff:ff:ff"}); err != nil {
		b.Fatal(err)
	}
	var ports []api.Port
	for i := 0; i < deltaNetPorts; i += 1000 {
		batch := make([]api.PortCreate, 1000)
		for j := range batch {
			k := i + j
			batch[j] = api.PortCreate{NetworkID: n.ID, PodID: "pod0", MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", k>>8, k&0xff),
				IPs: []string{fmt.Sprintf("10.%d.%d.%d", k>>16, (k>>8)&0xff, k&0xff)}}
		}
		got, err := c.CreatePorts(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		ports = append(ports, got...)
	}
	next := 0
	for _, mode := range []string{"delta", "full"} {
		b.Run(mode, func(b *testing.B) {
			url := tb.http.URL + "/v1/pods/pod1/state?watch=true"
			if mode == "delta" {
				url += "&delta=1"
			}
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			ws := make([]*rawWatcher, deltaWatchers)
			var ready sync.WaitGroup
			for i := range ws {
				ws[i] = &rawWatcher{}
				ready.Add(1)
				go ws[i].run(wctx, url, &ready)
			}
			ready.Wait()
			b.ResetTimer()
			cpu0 := cpuNow()
			for i := range b.N {
				p := ports[next%len(ports)]
				next++
				ips := []string{fmt.Sprintf("10.200.%d.%d", (next>>8)&0xff, next&0xff)}
				if _, err := c.UpdatePort(ctx, p.ID, api.PortUpdate{IPs: &ips}); err != nil {
					b.Fatal(err)
				}
				for _, w := range ws {
					for w.events.Load() < int64(i+1) {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			cpu := cpuNow() - cpu0
			b.StopTimer()
			var total int64
			for _, w := range ws {
				total += w.bytes.Load()
			}
			b.ReportMetric(float64(total)/float64(b.N*len(ws)), "B/watcher/change")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/change")
		})
	}
}

// BenchmarkSnapshot100k: GET of a pod's full state holding 100k remote
// ports (served from the brain's in-memory state), one at a time and ten
// at once. Reports ms per snapshot and the encoded size.
func BenchmarkSnapshot100k(b *testing.B) {
	ctx := context.Background()
	tb := startBrain(b, "sqlite://"+filepath.Join(b.TempDir(), "brain.db"), testConfig, httpapi.Options{})
	c := tb.client
	mkPods(b, c, api.Pod{ID: "pod0", AZ: "az0"}, api.Pod{ID: "pod1", AZ: "az1"})
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "big", Type: api.TypeSharedVXLAN})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:ff:ff:ff"}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100000; i += 1000 {
		batch := make([]api.PortCreate, 1000)
		for j := range batch {
			k := i + j
			batch[j] = api.PortCreate{NetworkID: n.ID, PodID: "pod0", MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", k>>16, (k>>8)&0xff, k&0xff),
				IPs: []string{fmt.Sprintf("10.%d.%d.%d", k>>16, (k>>8)&0xff, k&0xff)}}
		}
		if _, err := c.CreatePorts(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	for _, par := range []int{1, 10} {
		b.Run(fmt.Sprintf("concurrent=%d", par), func(b *testing.B) {
			start := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for range par {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st, err := c.PodState(ctx, "pod1")
						if err != nil || len(st.Networks) != 1 || len(st.Networks[0].RemotePorts) != 100000 {
							b.Errorf("snapshot: %v", err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/round")
		})
	}
}
