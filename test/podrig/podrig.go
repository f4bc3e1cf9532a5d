// Package podrig runs real OpenStack pods for tests: per pod its own
// RabbitMQ (private node name, ports and dirs), its own neutron-server on
// PostgreSQL (ML2 vxlan with l2span_bottom, linuxbridge and l2population)
// and two "compute hosts", each a network namespace running a real
// neutron-linuxbridge-agent with L2 population. VMs are network namespaces
// plugged the way Nova/os-vif would: a veth whose host end is
// tap<port id[:11]> in the bridge brq<network id[:11]>.
//
// Everything sits on one underlay L2 segment, bridge br0 in the namespace
// "<tag>-ul", 198.51.100.0/24:
//
//	198.51.100.1        br0 in the underlay namespace (for a brain there)
//	198.51.100.10*i     pod i's control namespace: RabbitMQ :5672, Neutron :9696
//	198.51.100.10*i+j   pod i's compute host j (VXLAN local_ip)
//	198.51.100.100+n    gateways the test adds (AddGateway)
//	198.51.100.200+i    pod i's shadow tunnel IP (VIP)
//
// One rig per test binary:
//
//	func TestMain(m *testing.M) { podrig.Main(m) }
//	...
//	r := podrig.Shared(t) // started on first use, stopped after all tests
//
// Every process is ended by the PIDs in the rig's namespaces.
package podrig

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/test/pgtest"
)

// NotInstalledMessage is why tests skip (or fail under CI) without the pods' packages.
const NotInstalledMessage = "rabbitmq-server, neutron-server or neutron-linuxbridge-agent not installed: run make deps"

const (
	rabbitBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	serverBin = "/usr/bin/neutron-server"
	agentBin  = "/usr/bin/neutron-linuxbridge-agent"
	python    = "/usr/bin/python3"
	// UnderlayMTU leaves room for one VXLAN header on 1500-byte frames.
	UnderlayMTU = 1600
	// VMMTU is the MTU of the VMs' interfaces.
	VMMTU = 1450
)

// Installed reports whether the packages the rig runs are installed.
func Installed() bool {
	for _, p := range []string{rabbitBin, serverBin, agentBin, python} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Options shape a rig.
type Options struct {
	// Pods is how many pods (default 2), each with two compute hosts.
	Pods int
}

// Rig is the running pods.
type Rig struct {
	Tag      string
	Dir      string
	Underlay *NS
	Pods     []*Pod
	// StartupTime is how long Start took.
	StartupTime time.Duration

	pg   *pgtest.Server
	mu   sync.Mutex
	nss  []*NS
	nGW  int
	nVM  int
	nTop int
}

// Pod is one pod: its RabbitMQ, neutron-server and compute hosts.
type Pod struct {
	ID    string // "pod1", ...
	Index int    // 1-based
	Ctl   *NS
	// CtlIP is where RabbitMQ and Neutron listen.
	CtlIP netip.Addr
	// NeutronURL is http://CtlIP:9696/ (reachable from the underlay).
	NeutronURL string
	Hosts      []*Host
	// ShadowIP is the pod's shadow tunnel IP (the gateways' VIP).
	ShadowIP netip.Addr
	// ShadowHost is the binding host of the pod's shadow ports.
	ShadowHost string

	rig       *Rig
	dir       string
	once      sync.Once
	transport *http.Transport
	rabbit    *daemon
	neutron   *daemon
	// neutronEnv is neutron-server's environment, for restarts.
	neutronEnv []string
}

// Host is a compute host running neutron-linuxbridge-agent.
type Host struct {
	*NS
	Name string // Neutron host name, e.g. "pod1-h1"
	IP   netip.Addr
	dir  string
	// agent is nil while the agent is stopped.
	agent *daemon
}

var shared struct {
	mu      sync.Mutex
	enabled bool
	rig     *Rig
	err     error
}

// Main runs m's tests with one rig (and one PostgreSQL) for the test binary.
func Main(m *testing.M) { os.Exit(RunMain(m)) }

// RunMain is Main returning m.Run's code. The rig stops after the tests
// (its Neutrons outlive PostgreSQL by a moment: they are killed anyway).
func RunMain(m *testing.M) int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	defer func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.rig != nil {
			shared.rig.Stop()
		}
		shared.enabled, shared.rig, shared.err = false, nil, nil
	}()
	return pgtest.RunMain(m)
}

// Shared returns the test binary's rig, starting it on first use.
func Shared(t testing.TB) *Rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("podrig: needs root")
	}
	if !Installed() {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatal(NotInstalledMessage)
		}
		t.Skip(NotInstalledMessage)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.enabled {
		t.Fatal("podrig: Shared needs podrig.Main in TestMain")
	}
	if shared.rig == nil && shared.err == nil {
		shared.rig, shared.err = Start(pgtest.Shared(t), Options{})
	}
	if shared.err != nil {
		t.Fatalf("podrig: %v", shared.err)
	}
	return shared.rig
}

// Start starts a rig on PostgreSQL server pg; the caller stops it.
func Start(pg *pgtest.Server, o Options) (_ *Rig, err error) {
	if o.Pods == 0 {
		o.Pods = 2
	}
	began := time.Now()
	dir, err := os.MkdirTemp("", "l2span-podrig-")
	if err != nil {
		return nil, err
	}
	r := &Rig{Tag: fmt.Sprintf("pr%05d", os.Getpid()%100000), Dir: dir, pg: pg}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	if r.Underlay, err = r.ns("ul"); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "br0", "mtu", fmt.Sprint(UnderlayMTU), "type", "bridge"},
		{"ip", "addr", "add", BrainIP.String() + "/24", "dev", "br0"},
		{"ip", "link", "set", "br0", "up"},
	} {
		if _, err := r.Underlay.Run(c...); err != nil {
			return nil, err
		}
	}
	if err := writeShims(dir); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Pods; i++ {
		p, err := r.newPod(i)
		if err != nil {
			return nil, err
		}
		r.Pods = append(r.Pods, p)
	}
	// The pods start side by side: RabbitMQ and Neutron dominate.
	errs := make([]error, len(r.Pods))
	var wg sync.WaitGroup
	for i, p := range r.Pods {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.start() }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.StartupTime = time.Since(began)
	return r, nil
}

// ns creates the namespace "<tag>-<name>", removed by Stop.
func (r *Rig) ns(name string) (*NS, error) {
	n, err := addNS(r.Tag + "-" + name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.nss = append(r.nss, n)
	r.mu.Unlock()
	return n, nil
}

// attach links ns to the underlay bridge with a veth: ifname in ns, addr
// on it, peer named peer on br0.
func (r *Rig) attach(ns *NS, ifname, peer string, addr netip.Prefix) error {
	cmds := [][]string{
		{"ip", "link", "add", ifname, "mtu", fmt.Sprint(UnderlayMTU), "type", "veth", "peer", "name", peer, "mtu", fmt.Sprint(UnderlayMTU), "netns", r.Underlay.Name},
		{"ip", "addr", "add", addr.String(), "dev", ifname},
		{"ip", "link", "set", ifname, "up"},
	}
	for _, c := range cmds {
		if _, err := ns.Run(c...); err != nil {
			return err
		}
	}
	for _, c := range [][]string{{"ip", "link", "set", peer, "master", "br0"}, {"ip", "link", "set", peer, "up"}} {
		if _, err := r.Underlay.Run(c...); err != nil {
			return err
		}
	}
	return nil
}

// BrainIP is the underlay namespace's own address, on br0.
var BrainIP = Addr(1)

// Addr is 198.51.100.n.
func Addr(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}) }

// Stop ends every process in the rig's namespaces by PID and deletes them
// and the rig's files.
func (r *Rig) Stop() {
	r.mu.Lock()
	nss := r.nss
	r.nss = nil
	r.mu.Unlock()
	for _, p := range r.Pods {
		for _, h := range p.Hosts {
			h.agent.stop()
		}
		p.neutron.stop()
		p.rabbit.stop()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		nss[i].remove()
	}
	if r.Dir != "" && os.Getenv("PODRIG_KEEP") == "" {
		os.RemoveAll(r.Dir)
	}
}

// RSS is the resident memory of every process in the pod's namespaces.
func (p *Pod) RSS() int64 {
	sum := p.Ctl.RSS()
	for _, h := range p.Hosts {
		sum += h.RSS()
	}
	return sum
}

// Gateway is a gateway host namespace on the underlay.
type Gateway struct {
	*NS
	Pod string
	// IP is the address of UnderlayDev (its overlay VTEP).
	IP          netip.Addr
	UnderlayDev string
}

// AddGateway creates a gateway namespace of pod on the underlay
// (198.51.100.100+n on ul0); the caller runs the agent in it.
func (r *Rig) AddGateway(pod *Pod, name string) (*Gateway, error) {
	r.mu.Lock()
	r.nGW++
	n := r.nGW
	r.mu.Unlock()
	ns, err := r.ns(pod.ID + name)
	if err != nil {
		return nil, err
	}
	ip := Addr(100 + n)
	if err := r.attach(ns, "ul0", fmt.Sprintf("g%d", n), netip.PrefixFrom(ip, 24)); err != nil {
		return nil, err
	}
	return &Gateway{NS: ns, Pod: pod.ID, IP: ip, UnderlayDev: "ul0"}, nil
}

// Remove ends the gateway's processes (by PID) and deletes its namespace.
func (g *Gateway) Remove() { g.remove() }

// writeShims puts a no-op ebtables on the agents' PATH: the kernel here has
// no ebtables tables and the agent lists them at start.
func writeShims(dir string) error {
	bin := dir + "/bin"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	return os.WriteFile(bin+"/ebtables", []byte("#!/bin/sh\nexit 0\n"), 0o755)
}

func (r *Rig) env() []string {
	path := r.Dir + "/bin:" + os.Getenv("PATH")
	return []string{"PATH=" + path}
}
