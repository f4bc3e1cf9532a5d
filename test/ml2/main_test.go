// Package ml2 tests the l2span ML2 mechanism driver (deploy/openstack)
// inside Debian's neutron-server against a real l2span-brain binary: one
// brain and one neutron-server per test binary, started by TestMain.
package ml2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/neutrontest"
)

// Pods and hosts of the rig: compute-a1 is mapped to pod1 by host_pod_map;
// compute-b1 has a DHCP agent in az2, so the AZ fallback puts it in pod2.
const (
	hostA = "compute-a1"
	hostB = "compute-b1"
)

var rig struct {
	tmp     string
	brain   *brainProc
	neutron *neutrontest.Server
	err     error // why the rig is not there (skip or fail)
}

func TestMain(m *testing.M) {
	code := func() int {
		tmp, err := os.MkdirTemp("", "l2span-ml2-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		rig.tmp = tmp
		defer func() {
			if rig.neutron != nil {
				rig.neutron.Stop()
			}
			if rig.brain != nil {
				rig.brain.kill()
			}
		}()
		rig.err = setup(tmp)
		return m.Run()
	}()
	os.Exit(code)
}

func setup(tmp string) error {
	if !neutrontest.Installed() {
		return errNotInstalled
	}
	bin := filepath.Join(tmp, "l2span-brain")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/l2span/l2span/cmd/l2span-brain").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	rig.brain = &brainProc{bin: bin, addr: addr, store: "sqlite://" + filepath.Join(tmp, "brain.db"), log: filepath.Join(tmp, "brain.log")}
	if err := rig.brain.start(); err != nil {
		return err
	}
	c := brainClient()
	ctx := context.Background()
	// az3 has an agent but no pod; az4 has two pods (for external networks).
	for _, p := range []api.Pod{{ID: "pod1", AZ: "az1"}, {ID: "pod2", AZ: "az2"}, {ID: "pod4", AZ: "az4"}, {ID: "pod5", AZ: "az4"}} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			return fmt.Errorf("create pod %s: %w", p.ID, err)
		}
	}
	pp, err := distInfo(tmp)
	if err != nil {
		return err
	}
	rig.neutron, err = neutrontest.New(neutrontest.Options{
		MechanismDrivers: []string{"logger", "l2span"},
		ServicePlugins:   []string{"segments"},
		PythonPath:       pp,
		Agents:           []neutrontest.Agent{{Host: "dhcp-a", AZ: "az1"}, {Host: hostB, AZ: "az2"}, {Host: "dhcp-c", AZ: "az3"}, {Host: "dhcp-d", AZ: "az4"}},
		Config: `[l2span]
brain_url = http://` + addr + `
host_pod_map = ` + hostA + `:pod1
timeout = 3
validate_timeout = 1
view_ttl = 1
retry_interval = 0.3
sync_interval = 2
sync_on_start = false
journal_path = {{DIR}}/l2span-journal.db
`,
	})
	if neutrontest.IsNotInstalled(err) {
		return errNotInstalled
	}
	return err
}

var errNotInstalled = errors.New(neutrontest.NotInstalledMessage)

// distInfo makes the driver loadable with no install: the package folder
// (deploy/openstack) and a folder holding a hand-made dist-info that
// registers the entry point, both on PYTHONPATH.
func distInfo(tmp string) ([]string, error) {
	_, file, _, _ := runtime.Caller(0)
	pkg, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "openstack"))
	if err != nil {
		return nil, err
	}
	di := filepath.Join(tmp, "site", "networking_l2span-0.1.0.dist-info")
	if err := os.MkdirAll(di, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{
		"METADATA":         "Metadata-Version: 2.1\nName: networking-l2span\nVersion: 0.1.0\n",
		"entry_points.txt": "[neutron.ml2.mechanism_drivers]\nl2span = networking_l2span.mech_driver:L2spanMechanismDriver\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(di, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	return []string{filepath.Join(tmp, "site"), pkg}, nil
}

func needRig(t *testing.T) {
	t.Helper()
	if rig.err == errNotInstalled {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatal(neutrontest.NotInstalledMessage)
		}
		t.Skip(neutrontest.NotInstalledMessage)
	}
	if rig.err != nil {
		t.Fatalf("rig: %v", rig.err)
	}
}

func brainClient() *api.Client {
	c, err := api.NewClient("http://"+rig.brain.addr, api.WithTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	return c
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// brainProc is the l2span-brain binary, restartable on the same address
// and store.
type brainProc struct {
	bin, addr, store, log string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

func (b *brainProc) start() error {
	logf, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// The brain's own VNI range is apart from Neutron's (5000:5999): it
	// adopts the VNIs of Neutron's VXLAN networks and allocates its own only
	// for networks Neutron has no id for (flat -> mixed_vlan_vxlan).
	b.cmd = exec.Command(b.bin, "--listen", b.addr, "--store", b.store, "--log-level", "warn",
		"--vni-ranges", "9000:9999", "--vlan-ranges", "physnet1:100:200", "--poll-interval", "50ms")
	b.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		return err
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(b.cmd, b.done)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return fmt.Errorf("brain exited at start: %s", readFile(b.log))
		default:
		}
		if resp, err := hc.Get("http://" + b.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("brain not ready: %s", readFile(b.log))
}

// kill stops the brain (by its PID) and reaps it.
func (b *brainProc) kill() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// ---- Neutron over plain HTTP (noauth) ----

type neutronErr struct {
	Status  int
	Type    string
	Message string
}

func (e *neutronErr) Error() string {
	return fmt.Sprintf("neutron %d %s: %s", e.Status, e.Type, e.Message)
}

// neutron sends one request; out, if set, receives the decoded body.
func neutron(t *testing.T, method, path string, body, out any) error {
	t.Helper()
	var rd io.Reader
	if m, ok := body.(map[string]any); ok && method == "POST" {
		for _, v := range m { // noauth wants the project in the body
			if r, ok := v.(map[string]any); ok {
				r["tenant_id"] = "tenant1"
			}
		}
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, rig.neutron.URL+"v2.0/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Project-Id", "tenant1")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct {
			NeutronError struct{ Type, Message string }
		}
		json.Unmarshal(data, &e)
		return &neutronErr{Status: resp.StatusCode, Type: e.NeutronError.Type, Message: e.NeutronError.Message}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return nil
}

func mustNeutron(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if err := neutron(t, method, path, body, out); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, rig.neutron.LogTail())
	}
}

type nNetwork struct {
	ID string `json:"id"`
}

type nPort struct {
	ID       string `json:"id"`
	MAC      string `json:"mac_address"`
	HostID   string `json:"binding:host_id"`
	VIFType  string `json:"binding:vif_type"`
	FixedIPs []struct {
		IP string `json:"ip_address"`
	} `json:"fixed_ips"`
}

func createNetwork(t *testing.T, name string, azHints ...string) string {
	t.Helper()
	n := map[string]any{"name": name}
	if len(azHints) > 0 {
		n["availability_zone_hints"] = azHints
	}
	var out struct{ Network nNetwork }
	mustNeutron(t, "POST", "networks", map[string]any{"network": n}, &out)
	return out.Network.ID
}

func createSubnet(t *testing.T, netID, cidr string) string {
	t.Helper()
	var out struct{ Subnet struct{ ID string } }
	mustNeutron(t, "POST", "subnets", map[string]any{"subnet": map[string]any{"network_id": netID, "cidr": cidr, "ip_version": 4}}, &out)
	return out.Subnet.ID
}

func portBody(netID, host, mac string) map[string]any {
	p := map[string]any{"network_id": netID, "device_owner": "compute:nova"}
	if host != "" {
		p["binding:host_id"] = host
	}
	if mac != "" {
		p["mac_address"] = mac
	}
	return map[string]any{"port": p}
}

func createPort(t *testing.T, netID, host, mac string) nPort {
	t.Helper()
	var out struct{ Port nPort }
	mustNeutron(t, "POST", "ports", portBody(netID, host, mac), &out)
	return out.Port
}

// ---- brain assertions ----

// eventually polls cond (every 50 ms, up to d), failing with its last error.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v\nneutron log:\n%s", d, err, rig.neutron.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// brainNetwork is the brain's copy of a Neutron network: same id; nil if
// there is none.
func brainNetwork(ctx context.Context, neutronID string) (*api.Network, error) {
	n, err := brainClient().GetNetwork(ctx, neutronID)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func brainPort(ctx context.Context, id string) (*api.Port, error) {
	p, err := brainClient().GetPort(ctx, id)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}
