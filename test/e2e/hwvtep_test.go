package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/l2span/l2span/agent"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/netns"
)

// This file runs pod2's gateway as OVS's VTEP emulator (ovs-vtep from
// Debian's openvswitch-vtep), a software "hardware switch", driven by our
// agent through its hardware_vtep database, against a Linux gateway in
// pod1. What the emulator needs here (see DESIGN.md):
//
//	gateway netns of pod2:
//	  ovsdb-server #1: hardware_vtep (vtep.ovsschema)   <- our agent, ovs-vtep (vtep-ctl)
//	  ovsdb-server #2: Open_vSwitch (vswitch.ovsschema) <- ovs-vswitchd, ovs-vtep (ovs-vsctl)
//	  ovs-vswitchd, every bridge datapath_type=netdev (no openvswitch module):
//	    brul: the underlay bridge, port ul0, owns the VTEP IP (userspace
//	          tunnels route and resolve ARP through an OVS bridge);
//	    ps0:  the emulated switch (Physical_Switch "ps0"), port segb
//	          toward the pod's segment;
//	    ls bridges and vtep_bfd: made by ovs-vtep.
//	  ovs-vtep: polls the databases every second, learns local MACs with
//	          a 15 s idle timeout.
//
// ovs-vtep calls ovs-vsctl and vtep-ctl with their default database (the
// same $OVS_RUNDIR/db.sock for both); wrappers first on its PATH point each
// at its own server. The Linux gateway's underlay veth has TX checksum
// offload off (OVS's userspace datapath drops the partial checksums of a
// veth), and the VMs' MTU is 1450.

const (
	vtepSchema    = "/usr/share/openvswitch/vtep.ovsschema"
	vswitchSchema = "/usr/share/openvswitch/vswitch.ovsschema"
	ovsVTEPScript = "/usr/share/openvswitch/scripts/ovs-vtep"
	emulatorPS    = "ps0"
	emulatorPort  = "segb"
)

// emulator is OVS's VTEP emulator in one gateway's netns.
type emulator struct {
	t        *testing.T
	gw       *netns.Gateway
	dir      string
	vtepSock string
	vsSock   string
	vtepDB   *proc
	vsDB     *proc
}

// requireEmulator skips the test, naming what is missing, when the
// emulator cannot run here.
func requireEmulator(t *testing.T) {
	t.Helper()
	for _, f := range []string{vtepSchema, vswitchSchema, ovsVTEPScript, "/usr/bin/python3"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("VTEP emulator unavailable: %s missing (Debian openvswitch-switch, openvswitch-vtep)", f)
		}
	}
	for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "vtep-ctl", "ethtool"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("VTEP emulator unavailable: %s not installed", b)
		}
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import ovs.vlog, ovs.unixctl.server").CombinedOutput(); err != nil {
		t.Skipf("VTEP emulator unavailable: ovs-vtep needs the python3 ovs package: %v: %s", err, out)
	}
}

func runCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startEmulator builds the emulator in gw's netns, with physical port
// emulatorPort already present in gw (the pod segment's veth).
func (l *lab) startEmulator(t *testing.T, gw *netns.Gateway) *emulator {
	t.Helper()
	// Unix socket paths must stay short: a private directory under /tmp,
	// removed at cleanup (registered first: it goes after the processes).
	dir, err := os.MkdirTemp("", "l2s-vtep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &emulator{t: t, gw: gw, dir: dir, vtepSock: filepath.Join(dir, "vtep.sock"), vsSock: filepath.Join(dir, "vs.sock")}
	runCmd(t, "ovsdb-tool", "create", filepath.Join(dir, "vtep.db"), vtepSchema)
	runCmd(t, "ovsdb-tool", "create", filepath.Join(dir, "conf.db"), vswitchSchema)
	env := []string{"env", "OVS_RUNDIR=" + dir, "OVS_DBDIR=" + dir, "OVS_LOGDIR=" + dir, "OVS_SYSCONFDIR=" + dir}
	server := func(name, db, sock string) *proc {
		p := startProc(t, gw.NS, name, append(slices.Clone(env), "ovsdb-server", filepath.Join(dir, db),
			"--remote=punix:"+sock, "--unixctl="+filepath.Join(dir, name+".ctl"), "--no-chdir", "-vconsole:info")...)
		waitSocket(t, sock)
		return p
	}
	e.vtepDB = server("ovsdb-vtep", "vtep.db", e.vtepSock)
	e.vsDB = server("ovsdb-vswitch", "conf.db", e.vsSock)
	e.vsctl("--no-wait", "init")
	startProc(t, gw.NS, "ovs-vswitchd", append(slices.Clone(env), "ovs-vswitchd", "unix:"+e.vsSock,
		"--unixctl="+filepath.Join(dir, "ovs-vswitchd.ctl"), "--no-chdir", "-vconsole:info")...)

	// OVS's userspace datapath reads ul0 with a plain packet socket: what
	// enters it must carry full checksums, so the underlay's end of the
	// veth does not offload them (brain, gossip and VXLAN from the Linux
	// gateway all come this way).
	h := gw.Handle()
	ul, err := h.LinkByName(gw.UnderlayDev)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := l.rig.Underlay.Handle().LinkByIndex(ul.Attrs().ParentIndex)
	if err != nil {
		t.Fatalf("underlay end of %s: %v", gw.UnderlayDev, err)
	}
	l.rig.Underlay.MustExec("ethtool", "-K", peer.Attrs().Name, "tx", "off")

	// The underlay bridge takes over ul0 and its address.
	vtepPrefix := netip.PrefixFrom(gw.VTEP, 24)
	e.vsctl("add-br", "brul", "--", "set", "Bridge", "brul", "datapath_type=netdev", "fail_mode=standalone",
		"--", "add-port", "brul", gw.UnderlayDev)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.VTEP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrDel(ul, addr); err != nil {
		t.Fatalf("move %s off %s: %v", vtepPrefix, gw.UnderlayDev, err)
	}
	var br netlink.Link
	eventually(t, 10*time.Second, "ovs-vswitchd creates brul", func() error {
		br, err = h.LinkByName("brul")
		return err
	})
	if err := h.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	// The emulated switch and its physical port.
	port, err := h.LinkByName(emulatorPort)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(port); err != nil {
		t.Fatal(err)
	}
	e.vsctl("add-br", emulatorPS, "--", "set", "Bridge", emulatorPS, "datapath_type=netdev", "--", "add-port", emulatorPS, emulatorPort)
	e.vtepctl("add-ps", emulatorPS, "--", "set", "Physical_Switch", emulatorPS, "tunnel_ips="+gw.VTEP.String())

	// ovs-vtep, with ovs-vsctl and vtep-ctl pinned to their servers.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, sock := range map[string]string{"ovs-vsctl": e.vsSock, "vtep-ctl": e.vtepSock} {
		real, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\nexec %s --db=unix:%s \"$@\"\n", real, sock)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	startProc(t, gw.NS, "ovs-vtep", append(slices.Clone(env), "PATH="+bin+":"+os.Getenv("PATH"),
		"/usr/bin/python3", ovsVTEPScript, "-vconsole:info", emulatorPS)...)
	eventually(t, 15*time.Second, "ovs-vtep reports its physical port", func() error {
		out, err := exec.Command("vtep-ctl", "--db=unix:"+e.vtepSock, "list-ports", emulatorPS).CombinedOutput()
		if err != nil || !strings.Contains(string(out), emulatorPort) {
			return fmt.Errorf("list-ports: %v: %s", err, out)
		}
		return nil
	})
	return e
}

func waitSocket(t testing.TB, path string) {
	t.Helper()
	eventually(t, 10*time.Second, "socket "+path, func() error {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func (e *emulator) vsctl(args ...string) string {
	e.t.Helper()
	return runCmd(e.t, "ovs-vsctl", append([]string{"--db=unix:" + e.vsSock, "--timeout=10"}, args...)...)
}

func (e *emulator) vtepctl(args ...string) string {
	e.t.Helper()
	return runCmd(e.t, "vtep-ctl", append([]string{"--db=unix:" + e.vtepSock, "--timeout=10"}, args...)...)
}

// restartVTEPDB stops the hardware_vtep ovsdb-server (by PID), runs
// whileDown, and starts it again on the same database file and socket.
func (e *emulator) restartVTEPDB(whileDown func()) {
	e.t.Helper()
	e.vtepDB.kill(syscall.SIGTERM)
	whileDown()
	_ = os.Remove(e.vtepSock)
	e.vtepDB.restart()
	waitSocket(e.t, e.vtepSock)
}

// rows reads a table of the emulator's hardware_vtep database with
// ovsdb-client (independent of our client): each row as column -> text,
// uuids as their text, sets space-joined and sorted.
func (e *emulator) rows(table string) ([]map[string]string, error) {
	out, err := exec.Command("ovsdb-client", "-f", "json", "dump", "unix:"+e.vtepSock, "hardware_vtep", table).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ovsdb-client dump %s: %w: %s", table, err, out)
	}
	var d struct {
		Data     [][]any  `json:"data"`
		Headings []string `json:"headings"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("dump %s: %w: %s", table, err, out)
	}
	var rows []map[string]string
	for _, r := range d.Data {
		row := map[string]string{}
		for i, h := range d.Headings {
			row[h] = flatValue(r[i])
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func flatValue(v any) string {
	switch x := v.(type) {
	case []any:
		if len(x) == 2 {
			switch x[0] {
			case "uuid":
				return x[1].(string)
			case "set", "map":
				var parts []string
				for _, el := range x[1].([]any) {
					if kv, ok := el.([]any); ok && x[0] == "map" {
						parts = append(parts, flatValue(kv[0])+"="+flatValue(kv[1]))
						continue
					}
					parts = append(parts, flatValue(el))
				}
				slices.Sort(parts)
				return strings.Join(parts, " ")
			}
		}
	case float64:
		return fmt.Sprint(int64(x))
	}
	return fmt.Sprint(v)
}

// remoteView is what our agent wrote into the emulator's database, in
// words: "ucast LS MAC -> DST" and "mcast LS unknown-dst -> DST,DST"
// lines, sorted; and an error for anything duplicated (two rows for one
// MAC in one switch, two locators for one VTEP, two switches of one name).
func (e *emulator) remoteView() ([]string, error) {
	tables := map[string][]map[string]string{}
	for _, tb := range []string{"Logical_Switch", "Physical_Locator", "Physical_Locator_Set", "Ucast_Macs_Remote", "Mcast_Macs_Remote"} {
		rows, err := e.rows(tb)
		if err != nil {
			return nil, err
		}
		tables[tb] = rows
	}
	var errs []error
	lsName, locIP, sets := map[string]string{}, map[string]string{}, map[string]string{}
	seen := map[string]bool{}
	dup := func(what string) {
		if seen[what] {
			errs = append(errs, fmt.Errorf("duplicate %s", what))
		}
		seen[what] = true
	}
	for _, r := range tables["Logical_Switch"] {
		lsName[r["_uuid"]] = r["name"]
		dup("logical switch " + r["name"])
	}
	for _, r := range tables["Physical_Locator"] {
		locIP[r["_uuid"]] = r["dst_ip"]
		dup("locator " + r["encapsulation_type"] + "/" + r["dst_ip"])
	}
	for _, r := range tables["Physical_Locator_Set"] {
		var ips []string
		for _, u := range strings.Fields(r["locators"]) {
			ips = append(ips, locIP[u])
		}
		slices.Sort(ips)
		sets[r["_uuid"]] = strings.Join(ips, ",")
	}
	var view []string
	for _, r := range tables["Ucast_Macs_Remote"] {
		ls := lsName[r["logical_switch"]]
		dup("ucast " + ls + " " + r["MAC"])
		view = append(view, fmt.Sprintf("ucast %s %s -> %s", ls, r["MAC"], locIP[r["locator"]]))
	}
	for _, r := range tables["Mcast_Macs_Remote"] {
		ls := lsName[r["logical_switch"]]
		dup("mcast " + ls + " " + r["MAC"])
		view = append(view, fmt.Sprintf("mcast %s %s -> %s", ls, r["MAC"], sets[r["locator_set"]]))
	}
	slices.Sort(view)
	return view, errors.Join(errs...)
}

// localMACs lists the MACs the emulator learned (Ucast_Macs_Local).
func (e *emulator) localMACs() ([]string, error) {
	rows, err := e.rows("Ucast_Macs_Local")
	if err != nil {
		return nil, err
	}
	var macs []string
	for _, r := range rows {
		macs = append(macs, r["MAC"])
	}
	slices.Sort(macs)
	return macs, nil
}

func hwvtepAgent(e *emulator) agentOpt {
	return func(args *[]string) {
		*args = append(*args, "--backend", "hwvtep", "--ovsdb-endpoint", "unix:"+e.vtepSock,
			"--physical-switch", emulatorPS, "--local-interface", emulatorPort)
	}
}

// TestHWVTEPEmulator: pod1's gateway is a Linux box running our agent
// (linux backend); pod2's gateway is OVS's VTEP emulator driven by our
// agent (hwvtep backend). A VM behind each pings the other; a port deleted
// in the brain leaves the emulator's database; the VM MAC the emulator
// learns becomes an l2gw:learned port of pod2 in the brain and an FDB
// entry on pod1's gateway; the vtep ovsdb-server restarted under the
// running agent converges with nothing lost or duplicated.
func TestHWVTEPEmulator(t *testing.T) {
	requireEmulator(t)
	t.Parallel()
	start := time.Now()
	r := newHWVTEPRig(t)
	ctx := context.Background()
	t.Logf("emulator and agents up in %s", time.Since(start).Round(time.Millisecond))

	// pod1: VM A and a port with no VM (deleted later). pod2: a DHCP
	// port, so that the network spans there; VM B is not in the brain:
	// the emulator learns it.
	ghost := "fa:16:3e:00:01:01"
	ports, err := r.client.CreatePorts(ctx, []api.PortCreate{
		{NetworkID: r.nw.ID, PodID: "pod1", MAC: r.macA, IPs: []string{"203.0.113.11", "2001:db8::11"}, DeviceOwner: "compute:nova"},
		{NetworkID: r.nw.ID, PodID: "pod1", MAC: ghost, IPs: []string{"203.0.113.50"}, DeviceOwner: "compute:nova"},
		{NetworkID: r.nw.ID, PodID: "pod2", MAC: "fa:16:3e:00:02:fe", IPs: []string{"203.0.113.3"}, DeviceOwner: "network:dhcp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.checkView(t, "pod1's ports and flood entry in the emulator's database", 20*time.Second, r.macA, ghost)

	pingAll(t, []*netns.VM{r.vmA, r.vmB}, 20*time.Second)
	t.Logf("VMs ping across the Linux gateway and the VTEP emulator after %s", time.Since(start).Round(time.Millisecond))
	// Keep VM B talking so that the emulator keeps it learned (15 s idle).
	pinger, err := netns.StartPinger(r.vmA.NS, r.vmB.IPv4.Addr(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	pingerStopped := false
	defer func() {
		if !pingerStopped {
			pinger.Stop(0)
		}
	}()

	before := r.waitLearned(t)
	t.Logf("learned MAC reported and populated after %s", time.Since(start).Round(time.Millisecond))

	// A port deleted in the brain leaves the emulator's database.
	if err := r.client.DeletePort(ctx, ports[1].ID); err != nil {
		t.Fatal(err)
	}
	r.checkView(t, "deleted port gone from the emulator's database", 10*time.Second, r.macA)

	after := r.restartDatabase(t)
	// ovs-vtep clears Ucast_Macs_Local when its database comes back and
	// learns again within a few seconds; the agent's hold
	// (agent.DefaultForgetAfter) normally keeps the port meanwhile. Not
	// asserted: on a loaded machine the rebuild may outlast the hold.
	t.Logf("learned port across the restart: %s -> %s (same: %v)", before.ID, after.ID, before.ID == after.ID)
	sent, got := pinger.Stop(500 * time.Millisecond)
	pingerStopped = true
	t.Logf("background ping VM A -> VM B: %d/%d answered over the whole test (the restart makes ovs-vtep rebuild its bridges)", got, sent)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// hwvtepRig is two pods spanned by one shared_vxlan network: pod1's gateway
// is a Linux agent with VM A behind it, pod2's is the VTEP emulator driven
// by an hwvtep agent with VM B behind it. No port is in the brain yet.
type hwvtepRig struct {
	*lab
	nw         api.Network
	vni        int
	gwA, gwB   *netns.Gateway
	vmA, vmB   *netns.VM
	macA, macB string
	emu        *emulator
}

func newHWVTEPRig(t *testing.T) *hwvtepRig {
	ctx := context.Background()
	r := &hwvtepRig{lab: newLab(t), macA: "fa:16:3e:00:00:01", macB: "fa:16:3e:00:00:02"}
	r.mkPod("pod1", "az1")
	r.mkPod("pod2", "az2")
	var err error
	if r.nw, err = r.client.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN}); err != nil {
		t.Fatal(err)
	}
	r.vni = r.nw.SegmentationID
	for _, sn := range []api.Subnet{{CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}, {CIDR: "2001:db8::/64", GatewayIP: "2001:db8::1"}} {
		sn.NetworkID = r.nw.ID
		if _, err := r.client.CreateSubnet(ctx, sn); err != nil {
			t.Fatal(err)
		}
	}
	r.gwA = r.addGateway("pod1", "gw")
	r.gwB = r.addGateway("pod2", "gw")
	segA := r.rig.AddSegment(r.gwA, fmt.Sprintf("seg%d", r.vni))
	segB := r.rig.AddSegment(r.gwB, emulatorPort)
	r.vmA = r.rig.AddVM("pod1", segA, "pod1-vm", netns.MustMAC(r.macA),
		netip.MustParsePrefix("203.0.113.11/24"), netip.MustParsePrefix("2001:db8::11/64"))
	r.vmB = r.rig.AddVM("pod2", segB, "pod2-vm", netns.MustMAC(r.macB),
		netip.MustParsePrefix("203.0.113.12/24"), netip.MustParsePrefix("2001:db8::12/64"))
	for _, vm := range []*netns.VM{r.vmA, r.vmB} {
		eth, err := vm.Handle().LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Handle().LinkSetMTU(eth, 1450); err != nil {
			t.Fatal(err)
		}
	}
	r.gwA.MustExec("ethtool", "-K", r.gwA.UnderlayDev, "tx", "off")
	r.emu = r.startEmulator(t, r.gwB)
	r.startAgent(r.gwA)
	r.startAgent(r.gwB, hwvtepAgent(r.emu))
	return r
}

// checkView waits until the emulator's remote tables hold exactly the flood
// entry to pod1's gateway and macs behind it.
func (r *hwvtepRig) checkView(t *testing.T, what string, within time.Duration, macs ...string) {
	t.Helper()
	want := r.wantView(macs...)
	eventually(t, within, what, func() error {
		got, err := r.emu.remoteView()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("emulator holds %q, want %q", got, want)
		}
		return nil
	})
}

func (r *hwvtepRig) wantView(macs ...string) []string {
	ls := fmt.Sprintf("l2s-%d", r.vni)
	v := []string{fmt.Sprintf("mcast %s unknown-dst -> %s", ls, r.gwA.VTEP)}
	for _, m := range macs {
		v = append(v, fmt.Sprintf("ucast %s %s -> %s", ls, m, r.gwA.VTEP))
	}
	slices.Sort(v)
	return v
}

// learnedPort returns VM B's port as the hwvtep agent reported it: the one
// port with its MAC, in pod2, owned by l2gw:learned.
func (r *hwvtepRig) learnedPort() (api.Port, error) {
	list, err := r.client.ListPorts(context.Background(), api.ListOptions{Filters: map[string]string{"network_id": r.nw.ID, "mac": r.macB}})
	if err != nil {
		return api.Port{}, err
	}
	if len(list.Items) != 1 {
		return api.Port{}, fmt.Errorf("%d ports with %s", len(list.Items), r.macB)
	}
	p := list.Items[0]
	if p.PodID != "pod2" || p.DeviceOwner != agent.LearnedOwner {
		return p, fmt.Errorf("port %+v: want pod2, %s", p, agent.LearnedOwner)
	}
	return p, nil
}

// waitLearned waits for VM B's MAC in the emulator, in the brain and in
// pod1's FDB, and returns its port.
func (r *hwvtepRig) waitLearned(t *testing.T) api.Port {
	t.Helper()
	eventually(t, 10*time.Second, "the emulator learns VM B", func() error {
		macs, err := r.emu.localMACs()
		if err != nil || !slices.Contains(macs, r.macB) {
			return fmt.Errorf("Ucast_Macs_Local %v (%v)", macs, err)
		}
		return nil
	})
	var port api.Port
	eventually(t, 10*time.Second, "VM B's learned port in the brain", func() (err error) { port, err = r.learnedPort(); return err })
	eventually(t, 10*time.Second, "VM B's MAC in pod1's gateway FDB", func() error {
		dst, err := fdbDst(r.gwA, r.vni, r.macB)
		if err == nil && dst != r.gwB.VTEP {
			err = fmt.Errorf("fdb %s -> %s, want %s", r.macB, dst, r.gwB.VTEP)
		}
		return err
	})
	return port
}

// restartDatabase restarts the vtep ovsdb-server under the running agent,
// with a port created while it is down. Afterwards the database holds
// exactly the desired rows (the new port, nothing lost, nothing twice), the
// VMs ping again and VM B is learned again; it returns VM B's port then.
func (r *hwvtepRig) restartDatabase(t *testing.T) api.Port {
	t.Helper()
	late := "fa:16:3e:00:01:02"
	r.emu.restartVTEPDB(func() {
		if _, err := r.client.CreatePort(context.Background(), api.PortCreate{NetworkID: r.nw.ID, PodID: "pod1", MAC: late, IPs: []string{"203.0.113.51"}}); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
	})
	restarted := time.Now()
	r.checkView(t, "the database after the restart", 20*time.Second, r.macA, late)
	t.Logf("database converged %s after the restart", time.Since(restarted).Round(time.Millisecond))
	// Our rows stay put for a while: nothing flaps or doubles.
	for range 5 {
		time.Sleep(400 * time.Millisecond)
		got, err := r.emu.remoteView()
		if err != nil || !slices.Equal(got, r.wantView(r.macA, late)) {
			t.Fatalf("after convergence: %q (%v)", got, err)
		}
	}
	// The emulator picks up again: VMs ping, VM B is learned again and its
	// port is the same single port in pod2.
	pingAll(t, []*netns.VM{r.vmA, r.vmB}, 20*time.Second)
	var after api.Port
	eventually(t, 20*time.Second, "VM B learned again after the restart", func() error {
		macs, err := r.emu.localMACs()
		if err != nil || !slices.Contains(macs, r.macB) {
			return fmt.Errorf("Ucast_Macs_Local %v (%v)", macs, err)
		}
		after, err = r.learnedPort()
		return err
	})
	return after
}
