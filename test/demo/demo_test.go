// Package demo runs scripts/demo.sh — what `make run` executes — and checks
// its promises: the ping crosses the overlay, and the teardown leaves no
// daemon, namespace or mount behind.
package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/l2span/l2span/test/netns"
)

func TestMakeRunDemo(t *testing.T) {
	netns.RequireRoot(t)
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/l2span-brain", "./cmd/l2spanctl", "./cmd/l2span-agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "BIN="+bin, "DEMO_HOLD=0")
	cmd.Stdin = nil // not a terminal: the demo tears down at its end
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, text)
	}
	for _, want := range []string{"3 packets transmitted, 3 received", "pod1  az1  vxlan", "l2span_agent_bpf_packets_total", "done."} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Count(text, "3 packets transmitted, 3 received") != 2 {
		t.Errorf("want both pings (IPv4 and IPv6) to cross:\n%s", text)
	}
	// Nothing started from this test's binaries survives the teardown.
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && strings.HasPrefix(exe, bin+"/") {
			t.Errorf("left running after the demo: %s (%s)", filepath.Dir(p), exe)
		}
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "l2sdemo-") {
		t.Errorf("namespaces left: %s", ns)
	}
	if mounts, _ := os.ReadFile("/proc/mounts"); strings.Contains(string(mounts), "l2span-demo.") {
		t.Error("the demo's bpffs is still mounted")
	}
}
