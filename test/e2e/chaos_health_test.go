package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// daemonStat is one daemon's health at one moment: goroutines from its
// /metrics (go_goroutines), open fds and resident memory from /proc.
type daemonStat struct {
	pid        int
	goroutines int
	fds        int
	rssKB      int
}

// daemon is a process of the chaos rig whose health is watched.
type daemon struct {
	name string
	// slack is growth that is no leak: a brain replica serves more
	// goroutines and fds when agents move their watches to it.
	slack   int
	p       *proc
	metrics string // URL of its /metrics
	client  *http.Client
}

func (d daemon) stat() (daemonStat, error) {
	if d.p.cmd == nil || d.p.cmd.Process == nil {
		return daemonStat{}, fmt.Errorf("%s not running", d.name)
	}
	s := daemonStat{pid: d.p.cmd.Process.Pid}
	resp, err := d.client.Get(d.metrics)
	if err != nil {
		return s, fmt.Errorf("%s metrics: %w", d.name, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return s, fmt.Errorf("%s metrics: %w", d.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.goroutines = int(f)
		}
	}
	if s.goroutines == 0 {
		return s, fmt.Errorf("%s metrics: no go_goroutines", d.name)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return s, fmt.Errorf("%s fds: %w", d.name, err)
	}
	s.fds = len(fds)
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return s, fmt.Errorf("%s status: %w", d.name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			s.rssKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return s, nil
}

// statAll reads every daemon; a daemon that cannot be read is left out.
func statAll(ds []daemon) map[string]daemonStat {
	out := map[string]daemonStat{}
	for _, d := range ds {
		if s, err := d.stat(); err == nil {
			out[d.name] = s
		}
	}
	return out
}

// checkGrowth fails when a daemon that kept running since base (same pid)
// holds clearly more goroutines or fds now than then: a leak per fault or
// per operation shows as growth over a run with hundreds of each.
func checkGrowth(t *testing.T, ds []daemon, base map[string]daemonStat) {
	t.Helper()
	now := map[string]daemonStat{}
	// Goroutines of a daemon come and go with requests in flight: take
	// the lowest of a few readings.
	for range 5 {
		for name, s := range statAll(ds) {
			if p, ok := now[name]; !ok || s.goroutines < p.goroutines || s.fds < p.fds {
				s.goroutines, s.fds = minNonZero(p.goroutines, s.goroutines), minNonZero(p.fds, s.fds)
				now[name] = s
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	compared := 0
	for _, d := range ds {
		b, ok := base[d.name]
		n, ok2 := now[d.name]
		if !ok {
			t.Logf("%s: no baseline reading yet; checked from the next checkpoint", d.name)
			continue
		}
		if !ok2 {
			t.Errorf("%s: no health reading now (pid %d at the baseline)", d.name, b.pid)
			continue
		}
		if b.pid != n.pid {
			t.Logf("%s: restarted since the baseline (pid %d -> %d): %d goroutines, %d fds, %d kB", d.name, b.pid, n.pid, n.goroutines, n.fds, n.rssKB)
			continue
		}
		compared++
		t.Logf("%s: goroutines %d -> %d, fds %d -> %d, rss %d -> %d kB", d.name, b.goroutines, n.goroutines, b.fds, n.fds, b.rssKB, n.rssKB)
		if n.goroutines > b.goroutines+b.goroutines/4+10+d.slack {
			t.Errorf("%s: goroutines grew from %d to %d", d.name, b.goroutines, n.goroutines)
		}
		if n.fds > b.fds+b.fds/4+8+d.slack {
			t.Errorf("%s: open fds grew from %d to %d", d.name, b.fds, n.fds)
		}
	}
	if compared == 0 {
		t.Error("no daemon ran from its baseline to this checkpoint: growth unchecked")
	}
}

func minNonZero(a, b int) int {
	if a == 0 {
		return b
	}
	return min(a, b)
}

// healthRecorder writes every daemon's health every interval to a CSV file
// (seconds since start, daemon, rss kB, goroutines, fds) for the soak plot.
type healthRecorder struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func recordHealth(t *testing.T, path string, ds []daemon, every time.Duration) *healthRecorder {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "seconds,daemon,rss_kb,goroutines,fds")
	r := &healthRecorder{stop: make(chan struct{})}
	start := time.Now()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer f.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for name, s := range statAll(ds) {
				fmt.Fprintf(f, "%.1f,%s,%d,%d,%d\n", time.Since(start).Seconds(), name, s.rssKB, s.goroutines, s.fds)
			}
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

func (r *healthRecorder) Stop() {
	close(r.stop)
	r.wg.Wait()
}
