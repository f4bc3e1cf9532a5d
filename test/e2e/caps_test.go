package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// unitCapabilities reads CapabilityBoundingSet from the shipped agent unit.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(here), "..", "..", "deploy", "systemd", "l2span-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			var caps []string
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			return caps
		}
	}
	t.Fatal("no CapabilityBoundingSet in l2span-agent.service")
	return nil
}

// The agent does its whole job — FDB and neighbor entries, the eBPF
// programs — with only the capabilities its systemd unit grants.
func TestAgentRunsWithUnitCapabilities(t *testing.T) {
	t.Parallel()
	caps := unitCapabilities(t)
	set := "-all,+" + strings.Join(caps, ",+")
	s := newSpanned(t, 2, func(a *[]string) {
		*a = append([]string{"setpriv", "--bounding-set=" + set, "--inh-caps=" + set, "--ambient-caps=" + set, "--"}, *a...)
		*a = append(*a, "--metrics-listen", "127.0.0.1:9697")
	})
	s.createPorts(t)
	pingAll(t, s.vms, 15*time.Second)
	for i, gw := range s.gws {
		if _, err := fdbDst(gw, s.net.SegmentationID, s.ports[1-i].MAC); err != nil {
			t.Fatalf("%s: %v", gw.Name(), err)
		}
		eventually(t, 5*time.Second, "eBPF programs counting in "+gw.Name(), func() error {
			v := agentMetric(t, gw, `l2span_agent_bpf_packets_total{action="passed_to_overlay"}`)
			if v == "" || v == "0" {
				return fmt.Errorf("passed_to_overlay = %q", v)
			}
			return nil
		})
	}
	// The agent really ran without the rest: its effective set is the unit's.
	pid := s.agents["pod1-gw"].cmd.Process.Pid
	status := agentCapEff(t, pid)
	bits := map[string]uint{"net_admin": 12, "net_raw": 13, "sys_admin": 21, "perfmon": 38, "bpf": 39}
	var want uint64
	for _, c := range caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("capability %s: add its bit number to this test", c)
		}
		want |= 1 << b
	}
	if status != fmt.Sprintf("%016x", want) {
		t.Fatalf("agent CapEff %s, want %016x (the unit's %v)", status, want, caps)
	}
}

// agentCapEff returns CapEff of the agent process (a child of ip/setpriv
// after exec, the same pid).
func agentCapEff(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
