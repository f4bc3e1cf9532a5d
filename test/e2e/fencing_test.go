package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
)

// bumProbe is a broadcast frame with a unique payload, so the copies of
// one send can be counted wherever it arrives.
func bumProbe(src []byte, seq int) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x88b5) // IEEE local experimental
	copy(f[14:], fmt.Sprintf("l2span-bum-%06d", seq))
	return f
}

// copiesOf counts the frames carrying probe seq that arrive within d.
func (c *capture) copiesOf(seq int, d time.Duration) int {
	tag := []byte(fmt.Sprintf("l2span-bum-%06d", seq))
	n := 0
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if bytes.Contains(f, tag) {
				n++
			}
		case <-deadline:
			return n
		}
	}
}

// assertOneCopy sends broadcasts from pod's VM and checks that every other
// pod's VM receives each exactly once.
func (h *haLab) assertOneCopy(t *testing.T, pod int, what string, caps map[int]*capture, seq *int) {
	t.Helper()
	for range 3 {
		*seq++
		sendFrame(t, h.vms[pod].NS, "eth0", bumProbe(h.vms[pod].MAC, *seq))
		for i, c := range caps {
			if n := c.copiesOf(*seq, 500*time.Millisecond); n != 1 {
				t.Fatalf("%s: broadcast %d from pod%d reached pod%d's VM %d times, want exactly once", what, *seq, pod+1, i+1, n)
			}
		}
	}
}

// Fencing (a): the agent of pod2's designated forwarder dies (kill -9)
// while its host lives. Its kernel would keep bridging beside the standby
// that takes over; the fencing lease it no longer renews lapses and the
// eBPF gate on its local port drops everything. Broadcasts from pod2 then
// reach the other pods exactly once, before and after the standby took
// over; the brain is down throughout.
//
// Fencing (b): pod2's forwarder is cut off from every gossip peer (an
// nftables drop of the gossip port in its namespace) but stays on the data
// path. It hears no one, fences itself, and the standby becomes the only
// forwarder; after the cut heals, the network moves back with no window of
// two forwarders. (Between its peers declaring it dead and its own probes
// telling it of the cut there is a window of doubled broadcasts: see
// docs/ha.md.)
func TestFencingNoDoubleForwarding(t *testing.T) {
	t.Parallel()
	h := newHALab(t, "--fence-lease", "300ms")
	requireNft(t)
	pod := 1 // pod2
	// (a) kill -9 of the forwarder's agent; its host keeps running.
	caps, seq, df := h.killForwarderAgent(t, pod, "")
	dead, standby := h.gws[pod][df], h.gws[pod][1-df]
	// Back: the restarted agent takes its networks back without a window of
	// two forwarders.
	h.agents[dead.Pod+"-"+dead.Host].restart()
	h.probeThrough(t, pod, caps, &seq, "network back on the restarted agent", func() bool { return h.df(pod) == df })
	h.assertOneCopy(t, pod, "agent back", caps, &seq)

	// (b) the forwarder loses gossip but not the data path.
	// It learns of the cut from its own failed probes, later than its peers
	// declare it dead (memberlist slows a node's probing as they fail):
	// broadcasts may be doubled for that window; after it, exactly once.
	cut := time.Now()
	cutGossip(dead)
	eventually(t, 10*time.Second, "standby took over from the isolated gateway", func() error {
		if !h.forwarding(standby) {
			return fmt.Errorf("standby %s not bridging", standby.Host)
		}
		return nil
	})
	eventually(t, 10*time.Second, "isolated gateway fenced: broadcasts once", func() error {
		seq++
		sendFrame(t, h.vms[pod].NS, "eth0", bumProbe(h.vms[pod].MAC, seq))
		for i, c := range caps {
			if n := c.copiesOf(seq, 300*time.Millisecond); n != 1 {
				return fmt.Errorf("broadcast %d reached pod%d %d times", seq, i+1, n)
			}
		}
		return nil
	})
	t.Logf("gossip cut: broadcasts exactly once again %s after the cut", time.Since(cut).Round(10*time.Millisecond))
	h.assertOneCopy(t, pod, "forwarder cut off from gossip", caps, &seq)
	dead.MustExec("nft", "delete table inet l2stest")
	h.probeThrough(t, pod, caps, &seq, "network back after the cut healed", func() bool { return h.df(pod) == df })
	h.assertOneCopy(t, pod, "gossip healed", caps, &seq)
}

// probeThrough sends a broadcast from pod's VM every 20 ms until done holds
// (at most 15 s) and for 300 ms more, then checks that no probe reached
// another pod's VM twice. Probes sent while no gateway forwards may be lost.
func (h *haLab) probeThrough(t *testing.T, pod int, caps map[int]*capture, seq *int, what string, done func() bool) {
	t.Helper()
	first := *seq + 1
	deadline := time.Now().Add(15 * time.Second)
	var doneAt time.Time
	for doneAt.IsZero() || time.Since(doneAt) < 300*time.Millisecond {
		*seq++
		sendFrame(t, h.vms[pod].NS, "eth0", bumProbe(h.vms[pod].MAC, *seq))
		time.Sleep(20 * time.Millisecond)
		if doneAt.IsZero() && done() {
			doneAt = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
	}
	for i, c := range caps {
		counts := c.countProbes(500 * time.Millisecond)
		lost := 0
		for s := first; s <= *seq; s++ {
			if counts[s] > 1 {
				t.Fatalf("%s: broadcast %d from pod%d reached pod%d's VM %d times", what, s, pod+1, i+1, counts[s])
			}
			if counts[s] == 0 {
				lost++
			}
		}
		t.Logf("%s: %d broadcasts, none doubled at pod%d, %d lost in the switch-over", what, *seq-first+1, i+1, lost)
	}
}

// countProbes drains the capture for d and counts the copies of each probe.
func (c *capture) countProbes(d time.Duration) map[int]int {
	counts := map[int]int{}
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if i := bytes.Index(f, []byte("l2span-bum-")); i >= 0 && len(f) >= i+17 {
				var n int
				fmt.Sscanf(string(f[i+11:i+17]), "%d", &n)
				counts[n]++
			}
		case <-deadline:
			return counts
		}
	}
}

// cutGossip drops the gossip port (7946) both ways in gw's namespace; the
// VXLAN data path stays. deleting table inet l2stest heals it.
func cutGossip(gw *netns.Gateway) {
	gw.MustExec("nft", "add", "table", "inet", "l2stest")
	for _, c := range []struct{ name, hook string }{{"in", "input"}, {"out", "output"}} {
		gw.MustExec("nft", "add", "chain", "inet", "l2stest", c.name, "{ type filter hook "+c.hook+" priority 0; }")
		for _, proto := range []string{"udp", "tcp"} {
			gw.MustExec("nft", "add", "rule", "inet", "l2stest", c.name, proto, "dport", "7946", "drop")
			gw.MustExec("nft", "add", "rule", "inet", "l2stest", c.name, proto, "sport", "7946", "drop")
		}
	}
}

func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed: run make deps")
	}
}

// killForwarderAgent waits for one forwarder in pod, starts counting
// broadcasts at the VMs of the other pods, kills the brain and then the
// forwarder's agent (its host keeps bridging), and asserts the standby takes
// over with every broadcast arriving once. what names the run in messages.
func (h *haLab) killForwarderAgent(t *testing.T, pod int, what string) (caps map[int]*capture, seq, df int) {
	t.Helper()
	eventually(t, 10*time.Second, "one forwarder in pod2", func() error {
		if h.df(pod) < 0 {
			return fmt.Errorf("pod2 forwarders: %v %v", h.forwarding(h.gws[pod][0]), h.forwarding(h.gws[pod][1]))
		}
		return nil
	})
	caps = map[int]*capture{0: startCapture(t, h.vms[0].NS, "eth0"), 2: startCapture(t, h.vms[2].NS, "eth0")}
	h.assertOneCopy(t, pod, "before any fault", caps, &seq)
	h.brain.kill(syscall.SIGKILL)
	df = h.df(pod)
	dead, standby := h.gws[pod][df], h.gws[pod][1-df]
	h.agents[dead.Pod+"-"+dead.Host].kill(syscall.SIGKILL)
	h.probeThrough(t, pod, caps, &seq, "standby takes over from a dead agent"+what, func() bool { return h.forwarding(standby) })
	if !h.forwarding(dead) {
		t.Fatal("the dead agent's kernel stopped bridging by itself: the test would not show fencing")
	}
	h.assertOneCopy(t, pod, "agent of the forwarder killed, its kernel still bridging"+what, caps, &seq)
	return caps, seq, df
}
