package ml2

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/test/netns"
)

var agentBuild struct {
	once sync.Once
	bin  string
	err  error
}

func agentBinary(t *testing.T) string {
	t.Helper()
	agentBuild.once.Do(func() {
		agentBuild.bin = filepath.Join(rig.tmp, "l2span-agent")
		if out, err := exec.Command("go", "build", "-o", agentBuild.bin, "github.com/l2span/l2span/cmd/l2span-agent").CombinedOutput(); err != nil {
			agentBuild.err = fmt.Errorf("go build agent: %v\n%s", err, out)
		}
	})
	if agentBuild.err != nil {
		t.Fatal(agentBuild.err)
	}
	return agentBuild.bin
}

// proxyIntoNetns listens on addr inside ns and forwards every connection to
// target, dialled from the test's own namespace: the brain stays on the
// host's loopback (where neutron-server reaches it) and the gateway agents
// in their namespaces reach it too, without touching the host's network.
func proxyIntoNetns(t *testing.T, ns *netns.NS, addr, target string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", target, 2*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				go io.Copy(out, in)
				io.Copy(in, out)
			}()
		}
	}()
}

// fdbTo returns the VTEP the FDB entry of mac points at on l2sv<vni>.
func fdbTo(gw *netns.Gateway, vni int, mac string) (netip.Addr, error) {
	return netns.FDBDst(gw.NS, fmt.Sprintf("l2sv%d", vni), mac)
}

// TestNeutronPortReachesRemoteGateway: a port created through Neutron's API
// (driver -> brain) ends as an FDB entry in the other pod's gateway kernel,
// programmed by a real agent in a netns rig; deleting it in Neutron removes it.
func TestNeutronPortReachesRemoteGateway(t *testing.T) {
	needRig(t)
	netns.RequireRoot(t)
	bin := agentBinary(t)
	ctx := context.Background()

	r := netns.NewRig(t)
	br, err := r.Underlay.Handle().LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	const brainIP = "198.51.100.1"
	if err := r.Underlay.Handle().AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(brainIP).To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	proxyIntoNetns(t, r.Underlay, brainIP+":9696", rig.brain.addr)

	netID := createNetwork(t, "fdb-net", "az1", "az2")
	createSubnet(t, netID, "203.0.113.0/24")
	var vni int
	eventually(t, 10*time.Second, func() error {
		n, err := brainNetwork(ctx, netID)
		if err != nil || n == nil {
			return fmt.Errorf("network not in the brain yet: %v", err)
		}
		vni = n.SegmentationID
		return nil
	})

	gws := []*netns.Gateway{r.AddGateway("pod1", "gw"), r.AddGateway("pod2", "gw")}
	seeds := gws[0].VTEP.String() + ":7946," + gws[1].VTEP.String() + ":7946"
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("ml2-fdb-test-gossip-key-32-bytes"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, gw := range gws {
		r.AddSegment(gw, fmt.Sprintf("seg%d", vni))
		logf, err := os.Create(filepath.Join(t.TempDir(), gw.Pod+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", gw.Name(), bin, "--pod", gw.Pod, "--gateway-id", gw.Pod+"-gw",
			"--brain-url", "http://"+brainIP+":9696", "--vtep", gw.VTEP.String(), "--underlay-dev", gw.UnderlayDev,
			"--gossip-bind", gw.VTEP.String()+":7946", "--gossip-seeds", seeds, "--local-interface", "seg{vni}",
			"--state-dir", t.TempDir(), "--metrics-listen", "", "--bpf=false", "--gossip-key-file", keyFile)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			logf.Close()
			if t.Failed() {
				t.Logf("%s agent log:\n%s", gw.Pod, readFile(logf.Name()))
			}
		})
	}

	pA := createPort(t, netID, hostA, "fa:16:3e:0f:db:01") // pod1 by host_pod_map
	pB := createPort(t, netID, hostB, "fa:16:3e:0f:db:02") // pod2 by its AZ
	for _, c := range []struct {
		gw   *netns.Gateway
		mac  string
		want netip.Addr
	}{{gws[0], pB.MAC, gws[1].VTEP}, {gws[1], pA.MAC, gws[0].VTEP}} {
		eventually(t, 15*time.Second, func() error {
			dst, err := fdbTo(c.gw, vni, c.mac)
			if err == nil && dst != c.want {
				return fmt.Errorf("%s: %s points at %s, want %s", c.gw.Name(), c.mac, dst, c.want)
			}
			return err
		})
	}
	mustNeutron(t, "DELETE", "ports/"+pB.ID, nil, nil)
	eventually(t, 15*time.Second, func() error {
		if _, err := fdbTo(gws[0], vni, pB.MAC); err == nil {
			return fmt.Errorf("entry for the deleted port still in pod1's gateway")
		}
		return nil
	})
}
