package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
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

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
	"github.com/l2span/l2span/test/pgtest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the real daemons once per test binary.
func binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "l2span-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/l2span/l2span/cmd/l2span-brain",
			"github.com/l2span/l2span/cmd/l2span-agent",
			"github.com/l2span/l2span/cmd/l2span-bgpd")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := pgtest.RunMain(m) // a PostgreSQL shared by the tests that ask for one (TestChaos)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a daemon started inside a namespace, logging to a file.
type proc struct {
	t    testing.TB
	name string
	ns   *netns.NS
	argv []string
	log  string
	cmd  *exec.Cmd
}

func startProc(t testing.TB, ns *netns.NS, name string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, ns: ns, argv: argv, log: filepath.Join(t.TempDir(), name+".log")}
	p.start()
	t.Cleanup(func() {
		p.kill(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("--- %s log (last 4KB) ---\n%s", name, tail(b, 4096))
		}
	})
	return p
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", p.ns.Name()}, p.argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// The daemon dies with the test binary even if cleanup never runs.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
}

// kill signals the daemon (by PID) and waits for it.
func (p *proc) kill(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (p *proc) restart() {
	p.t.Helper()
	p.start()
}

// lab is a rig of pods with a brain on the underlay and one agent per gateway.
type lab struct {
	bpffs     string
	transport *http.Transport
	t         testing.TB
	rig       *netns.Rig
	bin       string
	brain     *proc
	client    *api.Client
	tokenDir  string           // the bootstrap admin token and one agent token per gateway
	agents    map[string]*proc // by gateway id
	gws       map[string]*netns.Gateway
	seeds     []string
	// keyFile is the gossip key every agent gets unless told otherwise.
	keyFile string
}

const brainAddr = "198.51.100.1"

func newLab(t testing.TB) *lab {
	t.Helper()
	netns.RequireRoot(t)
	l := &lab{t: t, rig: netns.NewRig(t), bin: binaries(t), agents: map[string]*proc{}, gws: map[string]*netns.Gateway{}}
	br, err := l.rig.Underlay.Handle().LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.rig.Underlay.Handle().AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(brainAddr).To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l.keyFile = filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(l.keyFile, []byte(randomKey(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A private bpffs for the agents' pinned eBPF maps and links; registered
	// before the agents so it is unmounted after they are gone.
	l.bpffs = filepath.Join(dir, "bpffs")
	if err := os.MkdirAll(l.bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("bpf", l.bpffs, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(l.bpffs, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	l.brain = startProc(t, l.rig.Underlay, "brain", l.bin+"/l2span-brain", "--listen", brainAddr+":9696",
		"--store", "sqlite://"+filepath.Join(dir, "brain.db"), "--vni-ranges", "4000:4999", "--poll-interval", "50ms",
		// The underlay is a private netns: tokens, no TLS (make run shows TLS).
		"--insecure-plaintext", "--bootstrap-token-file", filepath.Join(dir, "admin.token"))
	// The test reaches the brain from inside the underlay namespace.
	l.transport = nsTransport(l.rig.Underlay)
	l.tokenDir = dir
	l.client, err = api.NewClient("http://"+brainAddr+":9696", api.WithTransport(l.transport), api.WithToken(waitFile(t, filepath.Join(dir, "admin.token"))))
	if err != nil {
		t.Fatal(err)
	}
	l.waitBrain()
	return l
}

// nsTransport is an HTTP transport whose connections are opened inside ns
// (the socket is created on a thread switched into it, and stays there).
func nsTransport(ns *netns.NS) *http.Transport {
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = dialer.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}, MaxIdleConnsPerHost: 16}
}

func (l *lab) waitBrain() {
	l.t.Helper()
	// Connections kept alive to a brain that was killed are dead; a POST
	// would not be retried on one.
	l.transport.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := l.client.ListPods(context.Background(), api.ListOptions{Limit: 1})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("brain not answering: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addGateway adds a gateway host to pod and registers its segment
// interface name template seg{vni}. It does not start the agent.
func (l *lab) addGateway(pod, host string) *netns.Gateway {
	gw := l.rig.AddGateway(pod, host)
	l.gws[pod+"-"+host] = gw
	l.seeds = append(l.seeds, gw.VTEP.String()+":7946")
	return gw
}

type agentOpt func(*[]string)

func noPopulate(args *[]string) { *args = append(*args, "--populate-macs=false") }

// startAgent runs l2span-agent in gw's namespace.
func (l *lab) startAgent(gw *netns.Gateway, opts ...agentOpt) *proc {
	id := gw.Pod + "-" + gw.Host
	args := []string{l.bin + "/l2span-agent", "--pod", gw.Pod, "--gateway-id", id,
		"--brain-url", "http://" + brainAddr + ":9696", "--vtep", gw.VTEP.String(), "--underlay-dev", gw.UnderlayDev,
		"--gossip-bind", gw.VTEP.String() + ":7946", "--gossip-seeds", strings.Join(l.seeds, ","),
		"--local-interface", "seg{vni}", "--state-dir", filepath.Join(l.t.TempDir(), id), "--metrics-listen", "",
		"--resync-interval", "5s", "--log-level", "debug", "--bpf-pin-dir", filepath.Join(l.bpffs, id)}
	args = append(args, "--brain-token-file", l.agentToken(gw.Pod, id))
	for _, o := range opts {
		o(&args)
	}
	if !slices.Contains(args, "--gossip-key-file") {
		args = append(args, "--gossip-key-file", l.keyFile)
	}
	p := startProc(l.t, gw.NS, "agent-"+id, args...)
	l.agents[id] = p
	return p
}

func (l *lab) mkPod(id, az string) {
	l.t.Helper()
	if _, err := l.client.CreatePod(context.Background(), api.Pod{ID: id, AZ: az}); err != nil {
		l.t.Fatal(err)
	}
}

// randomKey is a 32-byte gossip key, base64 as key files hold it.
func randomKey(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

// fdbDst returns the VTEP a MAC points to on the gateway's VXLAN device of vni.
func fdbDst(gw *netns.Gateway, vni int, mac string) (netip.Addr, error) {
	return netns.FDBDst(gw.NS, fmt.Sprintf("l2sv%d", vni), mac)
}

func pingAll(t *testing.T, vms []*netns.VM, within time.Duration) {
	t.Helper()
	for _, a := range vms {
		for _, b := range vms {
			if a == b {
				continue
			}
			for _, ip := range []netip.Addr{b.IPv4.Addr(), b.IPv6.Addr()} {
				eventually(t, within, fmt.Sprintf("%s pings %s", a.Host, ip), func() error {
					return netns.PingOnce(a.NS, ip, 300*time.Millisecond)
				})
			}
		}
	}
}

// waitFile waits for path (written by a process starting) and returns its
// trimmed content.
func waitFile(t testing.TB, path string) string {
	t.Helper()
	var b []byte
	eventually(t, 15*time.Second, "file "+path, func() (err error) {
		b, err = os.ReadFile(path)
		if err == nil && len(b) == 0 {
			err = fmt.Errorf("empty")
		}
		return err
	})
	return strings.TrimSpace(string(b))
}

// agentToken is the file of an agent token bound to pod and gateway id,
// issued once per lab and reused when the agent restarts.
func (l *lab) agentToken(pod, id string) string {
	l.t.Helper()
	path := filepath.Join(l.tokenDir, "agent-"+id+".token")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	k, err := l.client.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleAgent, PodID: pod, GatewayID: id})
	if err != nil {
		l.t.Fatalf("agent token for %s: %v", id, err)
	}
	if err := os.WriteFile(path, []byte(k.Token+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return path
}
