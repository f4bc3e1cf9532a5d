package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// capture collects the frames a namespace's interface receives.
type capture struct {
	fd     int
	frames chan []byte
}

func startCapture(t *testing.T, ns *netns.NS, ifname string) *capture {
	t.Helper()
	c := &capture{frames: make(chan []byte, 1024)}
	err := ns.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			syscall.Close(fd)
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ns.Name(), err)
	}
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := syscall.Recvfrom(c.fd, buf, 0)
			if err == syscall.EBADF {
				return
			}
			if err != nil {
				if err == syscall.EAGAIN || err == syscall.EINTR {
					continue
				}
				return
			}
			if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
				continue
			}
			select {
			case c.frames <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	t.Cleanup(func() { syscall.Close(c.fd); <-done })
	return c
}

// wait returns the first frame matching ok within d, or nil.
func (c *capture) wait(d time.Duration, ok func([]byte) bool) []byte {
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if ok(f) {
				return f
			}
		case <-deadline:
			return nil
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendFrame writes one raw Ethernet frame out of ns's ifname.
func sendFrame(t *testing.T, ns *netns.NS, ifname string, frame []byte) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		return syscall.Sendto(fd, frame, 0, &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
	})
	if err != nil {
		t.Fatalf("send frame from %s: %v", ns.Name(), err)
	}
}

func isARPRequestFor(ip netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:14]) != 0x0806 || binary.BigEndian.Uint16(f[20:22]) != 1 {
			return false
		}
		tip, _ := netip.AddrFromSlice(f[38:42])
		return tip == ip
	}
}

// agentDataplane reads an agent's GET /dataplane inside its netns.
func agentDataplane(gw *netns.Gateway) (api.AgentDataplane, error) {
	var v api.AgentDataplane
	resp, err := (&http.Client{Transport: nsTransport(gw.NS), Timeout: 5 * time.Second}).Get("http://127.0.0.1:9697/dataplane")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v, err
}

// agentMetric reads one sample from an agent's /metrics inside its netns.
func agentMetric(t testing.TB, gw *netns.Gateway, sample string) string {
	t.Helper()
	resp, err := (&http.Client{Transport: nsTransport(gw.NS), Timeout: 2 * time.Second}).Get("http://127.0.0.1:9697/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, sample+" ") {
			return strings.TrimPrefix(line, sample+" ")
		}
	}
	return ""
}

// The agent attaches its eBPF programs to each forwarded network's local
// interface: a routed frame from pod1's DVR host reaches pod2's VM with
// pod2's gateway DVR MAC as source; ARP for the anycast gateway IP stays in
// its pod while ARP for an unknown VM address still crosses; the drops are
// counted in the agent's metrics.
func TestGatewayIsolationThroughAgent(t *testing.T) {
	t.Parallel()
	s := newSpanned(t, 2, func(a *[]string) {
		// Each agent's /metrics inside its own netns; DVR MACs per pod.
		*a = append(*a, "--metrics-listen", "127.0.0.1:9697")
	})
	ctx := context.Background()
	// DVR: pod1's hosts use fa:16:3f/24, pod2's fa:16:41/24; pod2's gateway
	// host is registered in pod2's Neutron as fa:16:41:00:00:99.
	for pod, mac := range map[string]string{"pod1": "fa:16:3f:00:00:00/24", "pod2": "fa:16:41:00:00:00/24"} {
		if _, err := s.client.UpdatePod(ctx, api.Pod{ID: pod, DVRBaseMAC: mac}); err != nil {
			t.Fatal(err)
		}
	}
	s.agents["pod2-gw"].kill(syscall.SIGTERM)
	s.agents["pod2-gw"].argv = append(s.agents["pod2-gw"].argv, "--dvr-mac", "fa:16:41:00:00:99")
	s.agents["pod2-gw"].restart()
	s.createPorts(t)
	pingAll(t, s.vms, 15*time.Second)

	vm1, vm2 := s.vms[0], s.vms[1]
	capture := startCapture(t, vm2.NS, "eth0")
	// A frame routed by pod1's DVR: source MAC from pod1's DVR prefix.
	frame := make([]byte, 0, 64)
	frame = append(frame, vm2.MAC...)
	frame = append(frame, 0xfa, 0x16, 0x3f, 0xaa, 0xbb, 0xcc)
	frame = append(frame, 0x88, 0xb5) // local experimental ethertype
	frame = append(frame, []byte("l2span dvr rewrite probe.........................")...)
	var got []byte
	eventually(t, 10*time.Second, "DVR-sourced frame arrives in pod2 rewritten", func() error {
		sendFrame(t, vm1.NS, "eth0", frame)
		got = capture.wait(300*time.Millisecond, func(f []byte) bool {
			return len(f) > 14 && binary.BigEndian.Uint16(f[12:14]) == 0x88b5
		})
		if got == nil {
			return fmt.Errorf("no probe frame received")
		}
		return nil
	})
	if src := net.HardwareAddr(got[6:12]).String(); src != "fa:16:41:00:00:99" {
		t.Fatalf("probe arrived with source %s, want pod2's gateway DVR MAC fa:16:41:00:00:99", src)
	}
	if !bytes.Equal(got[14:14+10], frame[14:14+10]) {
		t.Fatalf("payload changed: % x", got[14:24])
	}

	// ARP for the gateway IP from pod1 never reaches pod2.
	gwIP := netip.MustParseAddr("203.0.113.1")
	go netns.PingOnce(vm1.NS, gwIP, 2*time.Second)
	if f := capture.wait(2500*time.Millisecond, isARPRequestFor(gwIP)); f != nil {
		t.Fatalf("ARP for the gateway IP crossed pods: % x (pod1 dropped_arp=%s passed_to_overlay=%s)", f[:42], agentMetric(t, s.gws[0], `l2span_agent_bpf_packets_total{action="dropped_arp"}`), agentMetric(t, s.gws[0], `l2span_agent_bpf_packets_total{action="passed_to_overlay"}`))
	}
	// ARP for an address nobody has still crosses (positive control).
	other := netip.MustParseAddr("203.0.113.77")
	go netns.PingOnce(vm1.NS, other, 2*time.Second)
	if capture.wait(2500*time.Millisecond, isARPRequestFor(other)) == nil {
		t.Fatal("ARP for an unknown VM address did not cross: the overlay is broken, so the check above proves nothing")
	}
	eventually(t, 5*time.Second, "drops counted in pod1's agent metrics", func() error {
		v := agentMetric(t, s.gws[0], `l2span_agent_bpf_packets_total{action="dropped_arp"}`)
		if v == "" || v == "0" {
			return fmt.Errorf("dropped_arp = %q", v)
		}
		return nil
	})
	if v := agentMetric(t, s.gws[1], `l2span_agent_bpf_packets_total{action="rewritten"}`); v == "" || v == "0" {
		t.Fatalf("pod2's agent counted no rewrite: %q", v)
	}
	// The agent reports them to the brain with its registration (l2spanctl
	// gateway show displays them).
	eventually(t, 25*time.Second, "pod2's gateway status in the brain carries the rewrite count", func() error {
		g, err := s.client.GetGateway(ctx, "pod2-gw")
		if err != nil {
			return err
		}
		if g.Status == nil || !g.Status.Healthy || g.Status.Forwarding != 1 || g.Status.Counters["rewritten"] == 0 {
			return fmt.Errorf("status %+v", g.Status)
		}
		return nil
	})
}
