package e2e

import (
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
)

// fastGossip are the failure-detector timers that bring kill -9 -> first
// reply through the standby under 500 ms (BenchmarkFailover "fast"):
// a probe every 100 ms, 50 ms to answer, a suspicion of 2 intervals. The
// fencing lease shrinks with them: a dead agent's kernel must stop
// bridging before its standby can take over, at the earliest a probe
// timeout plus the suspicion (250 ms) after the death.
var fastGossip = []string{"--gossip-probe-interval", "100ms", "--gossip-probe-timeout", "50ms", "--gossip-suspicion-mult", "2",
	"--fence-lease", "200ms"}

// BenchmarkGossipFalsePositives runs the HA rig (three pods, two gateways
// each, nothing failing) for 60 s under a busy loop on every CPU (twice
// over), with the default tuned timers and with fastGossip, and reports
// what a loaded machine costs in wrong verdicts: members declared dead,
// suspicions, and designated-forwarder changes, per gateway and minute,
// summed over the six agents. Every death here is a false positive.
func BenchmarkGossipFalsePositives(b *testing.B) {
	netns.RequireRoot(b)
	for _, mode := range []struct {
		name string
		args []string
	}{{"tuned", nil}, {"fast", fastGossip}} {
		b.Run(mode.name, func(b *testing.B) {
			h := newHALab(b, append([]string{"--log-level", "warn", "--metrics-listen", "127.0.0.1:9697"}, mode.args...)...)
			before := h.gossipEvents(b)
			load := busyLoops(b, 2*runtime.NumCPU())
			const window = 60 * time.Second
			time.Sleep(window)
			stopAll(load)
			after := h.gossipEvents(b)
			per := func(k string) float64 { return (after[k] - before[k]) / 6 / window.Minutes() }
			b.ReportMetric(per("death"), "deaths/gw/min")
			b.ReportMetric(per("suspect"), "suspects/gw/min")
			b.ReportMetric(per("df"), "df-changes/gw/min")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// gossipEvents sums the agents' gossip death and suspect counters and
// forwarder changes.
func (h *haLab) gossipEvents(b *testing.B) map[string]float64 {
	out := map[string]float64{}
	for _, pair := range h.gws {
		for _, gw := range pair {
			for k, sample := range map[string]string{
				"death":   `l2span_agent_gossip_events_total{event="death"}`,
				"suspect": `l2span_agent_gossip_events_total{event="suspect"}`,
				"df":      "l2span_agent_df_changes_total",
			} {
				v, err := strconv.ParseFloat(agentMetric(b, gw, sample), 64)
				if err != nil {
					b.Fatalf("%s of %s: %v", sample, gw.Name(), err)
				}
				out[k] += v
			}
		}
	}
	return out
}

// busyLoops starts n shell busy loops (a stress-like load), ended by PID.
func busyLoops(b *testing.B, n int) []*exec.Cmd {
	var cmds []*exec.Cmd
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stopAll(cmds)
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	b.Cleanup(func() { stopAll(cmds) })
	return cmds
}

func stopAll(cmds []*exec.Cmd) {
	for _, c := range cmds {
		if c.Process != nil && c.ProcessState == nil {
			c.Process.Kill()
			c.Wait()
		}
	}
}

// With the fast timers the fencing lease (200 ms) still lapses before the
// standby can take over: kill -9 of the forwarder's agent on a live host,
// the brain down, and broadcasts from the pod reach every other pod
// exactly once through the switch-over.
func TestFencingWithFastGossip(t *testing.T) {
	t.Parallel()
	h := newHALab(t, fastGossip...)
	requireNft(t)
	h.killForwarderAgent(t, 1, " (fast timers)")
}
