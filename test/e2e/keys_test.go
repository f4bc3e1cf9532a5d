package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// newKey makes a gossip key the way docs/install.md says.
func newKey(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", "-c", "head -c 32 /dev/urandom | base64").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// Gossip key rotation as docs/operations.md describes it, on running
// agents: new key first + old key, SIGHUP everywhere; then the new key
// alone, SIGHUP everywhere. Traffic never stops, and a gateway that only
// knows the new key joins afterwards.
func TestGossipKeyRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	dir := t.TempDir()
	keyFile := func(gw string) string { return filepath.Join(dir, gw+".keys") }
	write := func(gw string, keys ...string) {
		if err := os.WriteFile(keyFile(gw), []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pod1-gw", k1)
	write("pod2-gw", k1)
	s := newSpanned(t, 2, func(a *[]string) {
		// The agent's id is the word after --gateway-id.
		for i, v := range *a {
			if v == "--gateway-id" {
				*a = append(*a, "--gossip-key-file", keyFile((*a)[i+1]))
				break
			}
		}
	})
	s.createPorts(t)
	pingAll(t, s.vms, 15*time.Second)
	p, err := netns.StartPinger(s.vms[0].NS, s.vms[1].IPv4.Addr(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	hup := func() {
		for _, id := range []string{"pod1-gw", "pod2-gw"} {
			s.agents[id].cmd.Process.Signal(syscall.SIGHUP)
		}
		time.Sleep(time.Second)
	}
	write("pod1-gw", k2, k1)
	write("pod2-gw", k2, k1)
	hup()
	write("pod1-gw", k2)
	write("pod2-gw", k2)
	hup()
	for _, id := range []string{"pod1-gw", "pod2-gw"} {
		if log := readLog(s.agents[id]); strings.Count(log, "gossip keyring rotated") != 2 {
			t.Fatalf("%s did not rotate twice:\n%s", id, tail([]byte(log), 2000))
		}
	}
	// A third pod whose gateway knows only the new key joins the cluster:
	// the others now speak k2.
	s.mkPod("pod3", "az3")
	gw3 := s.addGateway("pod3", "gw")
	write("pod3-gw", k2)
	s.rig.AddSegment(gw3, fmt.Sprintf("seg%d", s.net.SegmentationID))
	s.startAgent(gw3, func(a *[]string) { *a = append(*a, "--gossip-key-file", keyFile("pod3-gw")) })
	if _, err := s.client.CreatePort(t.Context(), portIn(s, "pod3", "fa:16:3e:00:00:33")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "pod1's gateway points pod3's port at pod3's gateway (gossip with k2 only)", func() error {
		dst, err := fdbDst(s.gws[0], s.net.SegmentationID, "fa:16:3e:00:00:33")
		if err == nil && dst != gw3.VTEP {
			return fmt.Errorf("points at %s", dst)
		}
		return err
	})
	sent, got := p.Stop(300 * time.Millisecond)
	if sent < 50 || got != sent {
		t.Fatalf("lost %d of %d pings during key rotation", sent-got, sent)
	}
}

func portIn(s *spanned, pod, mac string) api.PortCreate {
	return api.PortCreate{NetworkID: s.net.ID, PodID: pod, MAC: mac}
}

func readLog(p *proc) string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}
