package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/test/netns"
)

var (
	rogueOnce sync.Once
	rogueBin  string
	rogueErr  error
)

// rogueBinary builds test/e2e/roguegossip once per test binary, beside
// the daemons.
func rogueBinary(t *testing.T) string {
	t.Helper()
	dir := binaries(t)
	rogueOnce.Do(func() {
		rogueBin = filepath.Join(dir, "roguegossip")
		if out, err := exec.Command("go", "build", "-o", rogueBin, "github.com/l2span/l2span/test/e2e/roguegossip").CombinedOutput(); err != nil {
			rogueErr = fmt.Errorf("go build roguegossip: %v\n%s", err, out)
		}
	})
	if rogueErr != nil {
		t.Fatal(rogueErr)
	}
	return rogueBin
}

// floodDsts returns the VTEPs dev's all-zero-MAC (flood) entries point
// at, sorted, read from the kernel of ns.
func floodDsts(ns *netns.NS, dev string) ([]netip.Addr, error) {
	link, err := ns.Handle().LinkByName(dev)
	if err != nil {
		return nil, err
	}
	neighs, err := ns.Handle().NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, n := range neighs {
		if n.HardwareAddr.String() == "00:00:00:00:00:00" && n.Flags&netlink.NTF_SELF != 0 && n.IP != nil {
			a, _ := netip.AddrFromSlice(n.IP)
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// A stranger on the underlay tries to take pod2's traffic from pod1's
// gateway by gossip: (a) with no key, (b) with a wrong key, (c) with the
// right key, claiming pod2's gateway id (under another node name) and an
// unregistered gateway of pod2, each with its own VTEP and the highest
// weight. Each time pod1's gateway refuses or ignores it, its kernel's
// entries for pod2 stay where they were, and traffic keeps crossing.
func TestRogueGossipNodeCannotHijackTraffic(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2)
	s.createPorts(t)
	pingAll(t, s.vms, 15*time.Second)
	victim, pod2 := s.gws[0], s.gws[1]
	dev := fmt.Sprintf("l2sv%d", s.net.SegmentationID)
	const pod2MAC = "fa:16:3e:00:00:02"
	want := []netip.Addr{pod2.VTEP}
	// unchanged checks the victim's kernel: pod2's MAC and the flood
	// entries still point at pod2's real gateway only.
	unchanged := func() error {
		dst, err := fdbDst(victim, s.net.SegmentationID, pod2MAC)
		if err != nil {
			return err
		}
		if dst != pod2.VTEP {
			return fmt.Errorf("pod2's MAC %s points at %s, want %s", pod2MAC, dst, pod2.VTEP)
		}
		flood, err := floodDsts(victim.NS, dev)
		if err != nil {
			return err
		}
		if !slices.Equal(flood, want) {
			return fmt.Errorf("flood entries %v, want %v", flood, want)
		}
		return nil
	}
	eventually(t, 10*time.Second, "pod1's gateway points at pod2's gateway", unchanged)

	rogueNS := s.rig.AddGateway("rogue", "x")
	bin := rogueBinary(t)
	victimAgent := s.agents[victim.Pod+"-"+victim.Host]
	seed := victim.VTEP.String() + ":7946"
	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrongKey, []byte(randomKey(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rogue := func(name, port, keyFile, gwID string) *proc {
		args := []string{bin, "--bind", rogueNS.VTEP.String() + ":" + port, "--seed", seed, "--name", name,
			"--pod", "pod2", "--gateway-id", gwID, "--vtep", rogueNS.VTEP.String()}
		if keyFile != "" {
			args = append(args, "--key-file", keyFile)
		}
		return startProc(t, rogueNS.NS, "rogue-"+name, args...)
	}
	// holds checks, for a while after the agent has dealt with the rogue,
	// that nothing moved and traffic still crosses: what is asserted is an
	// absence, so there is no event to wait for.
	holds := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err := unchanged(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if err := netns.PingOnce(s.vms[0].NS, s.vms[1].IPv4.Addr(), time.Second); err != nil {
			t.Fatalf("%s: traffic no longer crosses: %v", what, err)
		}
	}
	logHas := func(p *proc, what string, subs ...string) {
		t.Helper()
		eventually(t, 15*time.Second, what, func() error {
			for _, line := range strings.Split(readLog(p), "\n") {
				if all(line, subs) {
					return nil
				}
			}
			return fmt.Errorf("no log line with %q", subs)
		})
	}

	// (a) no key: memberlist refuses its plain-text join.
	a := rogue("nokey", "7946", "", "rogue-gw")
	logHas(victimAgent, "pod1's gateway refuses the keyless join", "refused traffic from a peer without our key", "reason=unencrypted", rogueNS.VTEP.String())
	holds("after a keyless join")
	a.kill(syscall.SIGTERM)

	// (b) a wrong key: nothing it sends decrypts.
	b := rogue("wrongkey", "7946", wrongKey, "rogue-gw")
	logHas(victimAgent, "pod1's gateway refuses the wrongly keyed join", "refused traffic from a peer without our key", "reason=bad_key", rogueNS.VTEP.String())
	holds("after a wrongly keyed join")
	b.kill(syscall.SIGTERM)

	// (c) the right key: it joins, but the brain backs neither claim.
	c1 := rogue("impostor", "7947", s.keyFile, "pod2-gw")
	c2 := rogue("pod2-gw9", "7948", s.keyFile, "pod2-gw9")
	logHas(c1, "the keyed impostor joins gossip", "rogue: joined")
	logHas(c2, "the keyed unregistered gateway joins gossip", "rogue: joined")
	logHas(victimAgent, "pod1's gateway ignores the impostor", "ignoring a gossip member", "node=impostor", "reason=name_mismatch")
	logHas(victimAgent, "pod1's gateway ignores the unregistered gateway", "ignoring a gossip member", "node=pod2-gw9", "reason=unregistered")
	holds("with keyed rogues in gossip")
}

func all(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
