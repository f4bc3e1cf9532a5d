//go:build linux

// Package frrtest runs FRR (Debian frr: zebra + bgpd) as an EVPN VTEP
// inside a test's network namespace, the way DESIGN.md measured it works:
// bridge + VXLAN (nolearning, neigh_suppress) per VNI, iBGP l2vpn evpn
// with advertise-all-vni, daemons as -u frr -g frr with a private
// zserv socket and vty directory.
package frrtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/test/netns"
)

// Require skips the test when FRR is not installed.
func Require(t testing.TB) {
	t.Helper()
	for _, f := range []string{"/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/bin/vtysh"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("FRR unavailable: %s missing (Debian frr; make deps)", f)
		}
	}
}

// Config is one FRR VTEP's BGP configuration.
type Config struct {
	ASN      uint32
	RouterID netip.Addr
	// Neighbors are iBGP peers (same ASN); Clients are those it reflects to.
	Neighbors []netip.Addr
	Clients   map[netip.Addr]bool
	// VNIs get a bridge br<VNI> and a VXLAN device vx<VNI> from RouterID.
	VNIs []uint32
}

func (c Config) text(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname frr-%s\nlog file %s/frr.log informational\n!\n", c.RouterID, dir)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp default ipv4-unicast\n bgp graceful-restart\n timers bgp 3 9\n", c.ASN, c.RouterID)
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 2\n", n, c.ASN, n)
	}
	b.WriteString(" address-family l2vpn evpn\n")
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, "  neighbor %s activate\n", n)
		if c.Clients[n] {
			fmt.Fprintf(&b, "  neighbor %s route-reflector-client\n", n)
		}
	}
	b.WriteString("  advertise-all-vni\n exit-address-family\nexit\n!\n")
	return b.String()
}

// Router is zebra + bgpd running in one namespace.
type Router struct {
	t    testing.TB
	NS   *netns.NS
	Cfg  Config
	Dir  string
	cmds []*exec.Cmd
}

// Start builds the VTEP devices in ns and starts zebra and bgpd.
func Start(t testing.TB, ns *netns.NS, cfg Config) *Router {
	t.Helper()
	dir, err := os.MkdirTemp("", "l2s-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	u, err := user.Lookup("frr")
	if err != nil {
		t.Skipf("FRR unavailable: no frr user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o770)
	r := &Router{t: t, NS: ns, Cfg: cfg, Dir: dir}
	for _, vni := range cfg.VNIs {
		v := strconv.FormatUint(uint64(vni), 10)
		ns.MustExec("ip", "link", "add", "br"+v, "type", "bridge")
		ns.MustExec("ip", "link", "add", "vx"+v, "type", "vxlan", "id", v, "local", cfg.RouterID.String(), "dstport", "4789", "nolearning")
		ns.MustExec("ip", "link", "set", "vx"+v, "master", "br"+v)
		ns.MustExec("bridge", "link", "set", "dev", "vx"+v, "neigh_suppress", "on", "learning", "off")
		ns.MustExec("ip", "link", "set", "vx"+v, "up")
		ns.MustExec("ip", "link", "set", "br"+v, "up")
	}
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte(cfg.text(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start("zebra")
	r.waitFile(filepath.Join(dir, "zserv.api"))
	r.start("bgpd")
	r.waitFile(filepath.Join(dir, "bgpd.vty"))
	t.Cleanup(r.Stop)
	return r
}

func (r *Router) start(daemon string) {
	r.t.Helper()
	log, err := os.OpenFile(filepath.Join(r.Dir, daemon+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer log.Close()
	args := []string{"netns", "exec", r.NS.Name(), "/usr/lib/frr/" + daemon, "-u", "frr", "-g", "frr", "-P", "0",
		"-z", filepath.Join(r.Dir, "zserv.api"), "--vty_socket", r.Dir, "-f", filepath.Join(r.Dir, "frr.conf"),
		"-i", filepath.Join(r.Dir, daemon+".pid")}
	if daemon == "bgpd" {
		args = append(args, "-p", "179")
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", daemon, err)
	}
	r.cmds = append(r.cmds, cmd)
}

func (r *Router) waitFile(path string) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(filepath.Join(r.Dir, "zebra.out"))
	out2, _ := os.ReadFile(filepath.Join(r.Dir, "bgpd.out"))
	r.t.Fatalf("frr in %s: %s did not appear\nzebra: %s\nbgpd: %s", r.NS.Name(), path, out, out2)
}

// Stop ends the daemons (by PID), bgpd first.
func (r *Router) Stop() {
	for i := len(r.cmds) - 1; i >= 0; i-- {
		c := r.cmds[i]
		if c.Process == nil {
			continue
		}
		c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			<-done
		}
		c.Process = nil
	}
	if r.t.Failed() {
		b, _ := os.ReadFile(filepath.Join(r.Dir, "frr.log"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		r.t.Logf("--- frr %s log (tail) ---\n%s", r.Cfg.RouterID, b)
	}
}

// Vtysh runs one command in the router's vty.
func (r *Router) Vtysh(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", "--vty_socket", r.Dir, "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q: %w: %s", cmd, err, out)
	}
	return string(out), nil
}

// PeerState is the state FRR shows for a neighbor ("Established", ...).
func (r *Router) PeerState(peer netip.Addr) (string, error) {
	p, err := r.Peer(peer)
	return p.State, err
}

// Peer is what FRR shows of a neighbor's session.
type Peer struct {
	State string `json:"bgpState"`
	// Established and Dropped count the sessions since bgpd started.
	Established int `json:"connectionsEstablished"`
	Dropped     int `json:"connectionsDropped"`
}

// Peer reads a neighbor's session state and counters.
func (r *Router) Peer(peer netip.Addr) (Peer, error) {
	out, err := r.Vtysh("show bgp neighbors " + peer.String() + " json")
	if err != nil {
		return Peer{}, err
	}
	var m map[string]Peer
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return Peer{}, fmt.Errorf("neighbor json: %w", err)
	}
	return m[peer.String()], nil
}

// FDB is one entry of the kernel's bridge FDB on vx<VNI>, as iproute2 shows it.
type FDB struct {
	MAC   string   `json:"mac"`
	Dst   string   `json:"dst"`
	Flags []string `json:"flags"`
	State string   `json:"state"`
}

// KernelFDB lists the VXLAN device's FDB of vni in the router's kernel.
func (r *Router) KernelFDB(vni uint32) ([]FDB, error) {
	out, err := r.NS.Exec(context.Background(), "bridge", "-j", "fdb", "show", "dev", "vx"+strconv.FormatUint(uint64(vni), 10))
	if err != nil {
		return nil, fmt.Errorf("bridge fdb: %w: %s", err, out)
	}
	var es []FDB
	if err := json.Unmarshal(out, &es); err != nil {
		return nil, fmt.Errorf("bridge fdb json: %w", err)
	}
	return es, nil
}

// RemoteMAC returns the VTEP the kernel sends mac to and whether the entry
// is extern_learn (installed by zebra from a BGP route).
func (r *Router) RemoteMAC(vni uint32, mac string) (dst string, externLearn bool, err error) {
	es, err := r.KernelFDB(vni)
	if err != nil {
		return "", false, err
	}
	for _, e := range es {
		if strings.EqualFold(e.MAC, mac) && e.Dst != "" {
			for _, f := range e.Flags {
				if f == "extern_learn" {
					externLearn = true
				}
			}
			return e.Dst, externLearn, nil
		}
	}
	return "", false, fmt.Errorf("no fdb entry for %s on vx%d in %s", mac, vni, r.NS.Name())
}

// MACSeq is FRR's MAC Mobility sequence for mac in vni, local or remote.
func (r *Router) MACSeq(vni uint32, mac string) (local, remote int, kind string, err error) {
	out, err := r.Vtysh(fmt.Sprintf("show evpn mac vni %d mac %s json", vni, mac))
	if err != nil {
		return 0, 0, "", err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return 0, 0, "", fmt.Errorf("evpn mac json: %w: %s", err, out)
	}
	var e struct {
		Type      string `json:"type"`
		LocalSeq  int    `json:"localSequence"`
		RemoteSeq int    `json:"remoteSequence"`
	}
	for _, v := range m {
		if json.Unmarshal(v, &e) == nil && e.Type != "" {
			return e.LocalSeq, e.RemoteSeq, e.Type, nil
		}
	}
	return 0, 0, "", fmt.Errorf("mac %s not in vni %d: %s", mac, vni, out)
}
