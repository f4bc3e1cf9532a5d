package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// upgradeLab is two pods, one gateway and one VM each, on one network,
// with the ports in the brain and the VMs pinging; built on l, whose brain
// may be an older binary.
type upgradeLab struct {
	*lab
	net api.Network
	vms []*netns.VM
	gws []*netns.Gateway
}

func newUpgradeLab(t *testing.T, l *lab) *upgradeLab {
	ctx := context.Background()
	u := &upgradeLab{lab: l}
	var err error
	for i := 1; i <= 2; i++ {
		l.mkPod(fmt.Sprintf("pod%d", i), fmt.Sprintf("az%d", i))
	}
	if u.net, err = l.client.CreateNetwork(ctx, api.NetworkCreate{Name: "up", Type: api.TypeSharedVXLAN}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.client.CreateSubnet(ctx, api.Subnet{NetworkID: u.net.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}); err != nil {
		t.Fatal(err)
	}
	var ports []api.PortCreate
	for i := 1; i <= 2; i++ {
		pod := fmt.Sprintf("pod%d", i)
		gw := l.addGateway(pod, "gw")
		seg := l.rig.AddSegment(gw, fmt.Sprintf("seg%d", u.net.SegmentationID))
		mac := fmt.Sprintf("fa:16:3e:00:00:%02x", i)
		vm := l.rig.AddVM(pod, seg, pod+"-vm", netns.MustMAC(mac), netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/24", 10+i)), netip.Prefix{})
		u.vms, u.gws = append(u.vms, vm), append(u.gws, gw)
		ports = append(ports, api.PortCreate{NetworkID: u.net.ID, PodID: pod, MAC: mac, IPs: []string{vm.IPv4.Addr().String()}})
	}
	for _, gw := range u.gws {
		l.startAgent(gw, func(a *[]string) { *a = append(*a, "--metrics-listen", "127.0.0.1:9697", "--log-level", "info") })
	}
	if _, err := l.client.CreatePorts(ctx, ports); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "VMs ping", func() error {
		return netns.PingOnce(u.vms[0].NS, u.vms[1].IPv4.Addr(), 300*time.Millisecond)
	})
	return u
}

// agentReady waits for the agent in gw to report ready (a reconcile done
// since it started).
func agentReady(t *testing.T, gw *netns.Gateway) {
	t.Helper()
	c := &http.Client{Transport: nsTransport(gw.NS), Timeout: time.Second}
	eventually(t, 20*time.Second, "agent in "+gw.Name()+" ready", func() error {
		resp, err := c.Get("http://127.0.0.1:9697/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

// An agent upgrade: the running agent is stopped and a new binary started
// in its place, under a ping every 10 ms across the pods. The agent never
// flushes, so not one reply is lost, and the new agent picks up changes.
func TestAgentUpgradeLosesNothing(t *testing.T) {
	t.Parallel()
	u := newUpgradeLab(t, newLab(t))
	gw := u.gws[0]
	old := u.agents[gw.Pod+"-"+gw.Host]
	agentReady(t, gw)
	// The "new release": another copy of the binary, at another path.
	next := filepath.Join(t.TempDir(), "l2span-agent-next")
	runCmd(t, "cp", old.argv[0], next)

	p, err := netns.StartPinger(u.vms[0].NS, u.vms[1].IPv4.Addr(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitPings(t, p, 20)
	old.kill(syscall.SIGTERM)
	down := time.Now()
	time.Sleep(time.Second) // a package manager takes its time
	old.argv[0] = next
	old.restart()
	agentReady(t, gw)
	t.Logf("agent down for %s, ready %s after the stop", time.Second, time.Since(down).Round(time.Millisecond))
	// The new agent does its job: a port created now reaches its kernel.
	mac := "fa:16:3e:00:02:01"
	if _, err := u.client.CreatePort(context.Background(), api.PortCreate{NetworkID: u.net.ID, PodID: "pod2", MAC: mac}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "new port programmed by the upgraded agent", func() error {
		_, err := fdbDst(gw, u.net.SegmentationID, mac)
		return err
	})
	time.Sleep(500 * time.Millisecond)
	sent, got := p.Stop(300 * time.Millisecond)
	t.Logf("agent upgrade under a 10 ms ping: %d of %d replies", got, sent)
	if sent != got {
		t.Fatalf("agent upgrade lost %d of %d pings", sent-got, sent)
	}
}

// A rolling upgrade with a schema migration: the release before the latest
// migration (brain and agents built from git) creates the database and
// serves the rig. Its brain is stopped and the current brain started on
// the same file: the migration runs, every row is still there, the old
// agents keep forwarding and follow a change made through the new brain.
// Then each agent is replaced by the current one. Not one reply of a 10 ms
// ping is lost from start to end.
func TestUpgradeWithMigrationKeepsData(t *testing.T) {
	t.Parallel()
	oldDir := buildOldRelease(t)
	l := newLab(t)
	// The lab's brain makes way for the old release on a fresh file. Both
	// releases take the shared bearer token of --token-file (the current
	// one as a legacy admin token), and so do the agents.
	l.brain.kill(syscall.SIGTERM)
	i := slices.Index(l.brain.argv, "--store")
	db := strings.TrimPrefix(l.brain.argv[i+1], "sqlite://")
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		os.Remove(f)
	}
	token := filepath.Join(l.tokenDir, "shared.token")
	secret := randomKey(t)
	if err := os.WriteFile(token, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"pod1-gw", "pod2-gw"} {
		if err := os.WriteFile(filepath.Join(l.tokenDir, "agent-"+id+".token"), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"--listen", brainAddr + ":9696", "--store", "sqlite://" + db, "--vni-ranges", "4000:4999",
		"--poll-interval", "50ms", "--token-file", token}
	newBin, newDir := l.brain.argv[0], l.bin
	l.brain.argv = append([]string{filepath.Join(oldDir, "l2span-brain")}, common...)
	l.brain.restart()
	var err error
	if l.client, err = api.NewClient("http://"+brainAddr+":9696", api.WithTransport(l.transport), api.WithToken(secret)); err != nil {
		t.Fatal(err)
	}
	l.waitBrain()
	l.bin = oldDir // the old agents
	u := newUpgradeLab(t, l)
	l.bin = newDir
	ctx := context.Background()
	before, err := listAllPorts(ctx, l.client, u.net.ID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := netns.StartPinger(u.vms[0].NS, u.vms[1].IPv4.Addr(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitPings(t, p, 20)
	l.brain.kill(syscall.SIGTERM)
	l.brain.argv = append([]string{newBin, "--insecure-plaintext"}, common...)
	l.brain.restart()
	l.waitBrain()
	after, err := listAllPorts(ctx, l.client, u.net.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("ports before the upgrade %d, after %d", len(before), len(after))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.ID != b.ID || a.MAC != b.MAC || a.PodID != b.PodID || !slices.Equal(a.IPs, b.IPs) {
			t.Fatalf("port changed across the upgrade: %+v -> %+v", b, a)
		}
	}
	n, err := l.client.GetNetwork(ctx, u.net.ID)
	if err != nil || n.SegmentationID != u.net.SegmentationID {
		t.Fatalf("network across the upgrade: %+v (%v), was %+v", n, err, u.net)
	}
	mac := "fa:16:3e:00:02:02"
	if _, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: u.net.ID, PodID: "pod2", MAC: mac}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a port created through the upgraded brain reaches pod1's old agent", func() error {
		_, err := fdbDst(u.gws[0], u.net.SegmentationID, mac)
		return err
	})
	for i, gw := range u.gws {
		a := u.agents[gw.Pod+"-"+gw.Host]
		a.kill(syscall.SIGTERM)
		a.argv[0] = filepath.Join(newDir, "l2span-agent")
		a.restart()
		agentReady(t, gw)
		mac := fmt.Sprintf("fa:16:3e:00:03:%02x", i)
		other := u.gws[1-i].Pod
		if _, err := l.client.CreatePort(ctx, api.PortCreate{NetworkID: u.net.ID, PodID: other, MAC: mac}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "a port created after the upgrade reaches "+gw.Name(), func() error {
			_, err := fdbDst(gw, u.net.SegmentationID, mac)
			return err
		})
	}
	sent, got := p.Stop(300 * time.Millisecond)
	t.Logf("rolling upgrade (brain with a migration, then each agent) under a 10 ms ping: %d of %d replies; %d ports kept", got, sent, len(after))
	if sent != got {
		t.Fatalf("the upgrade lost %d of %d pings", sent-got, sent)
	}
}

// buildOldRelease builds the brain and agent of the release the upgrade
// starts from, the parent of the last commit that added a schema
// migration, into a directory it returns.
func buildOldRelease(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: the old release is built from the repository")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not a git checkout: the old release is built from its history")
	}
	root := strings.TrimSpace(string(top))
	last := strings.TrimSpace(runCmd(t, "git", "-C", root, "log", "-1", "--format=%H", "--", "brain/store/migrate.go"))
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %s archive %s^ | tar -x -C %s", root, last, src))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s^: %v: %s", last, err, out)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/l2span-brain", "./cmd/l2span-agent")
	build.Dir = src
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the brain of %s^: %v: %s", last[:12], err, out)
	}
	t.Logf("release %s^ (before the latest migration) built in %s", last[:12], time.Since(start).Round(time.Millisecond))
	return bin
}
