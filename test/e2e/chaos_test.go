package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
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
	"github.com/l2span/l2span/test/ovsdbtest"
	"github.com/l2span/l2span/test/pgtest"
)

// chaosLab is three pods on two brain replicas sharing one PostgreSQL:
// pod1 has two Linux gateways on the same segments (one forwards each
// network, the other stands by), pod2 one Linux gateway, pod3 an hwvtep
// gateway driving a hardware_vtep database (a private ovsdb-server).
// Three shared_vxlan networks have a local segment on every Linux gateway.
type chaosLab struct {
	*lab
	brains  []*proc
	urls    string
	nets    []api.Network
	gws     []chaosGateway
	ovs     *ovsdbtest.Server
	daemons []daemon
	// lines is how many entries the last comparison expected per gateway.
	lines map[string]int
}

const chaosNets = 3

func newChaosLab(t *testing.T) *chaosLab {
	requireNft(t)
	if _, err := exec.LookPath("vtep-ctl"); err != nil {
		t.Skip("vtep-ctl not installed: run make deps")
	}
	l := newLab(t)
	c := &chaosLab{lab: l, lines: map[string]int{}}
	// The SQLite brain of newLab makes way for two replicas on PostgreSQL,
	// reached through its unix socket (the brains run in the underlay
	// namespace, where the server's 127.0.0.1 is not).
	l.brain.kill(syscall.SIGTERM)
	dsn := chaosDSN(t)
	admin := filepath.Join(t.TempDir(), "admin.token")
	for i, port := range []int{9696, 9697} {
		args := []string{l.bin + "/l2span-brain", "--listen", fmt.Sprintf("%s:%d", brainAddr, port), "--store", dsn,
			"--vni-ranges", "4000:4999", "--poll-interval", "1s", "--insecure-plaintext"}
		if i == 0 {
			// The first replica creates the admin token in the shared store.
			args = append(args, "--bootstrap-token-file", admin)
		}
		c.brains = append(c.brains, startProc(t, l.rig.Underlay, fmt.Sprintf("brain-%c", 'a'+i), args...))
		if i == 0 {
			waitFile(t, admin)
		}
	}
	l.brain = c.brains[0]
	c.urls = fmt.Sprintf("http://%s:9696,http://%s:9697", brainAddr, brainAddr)
	var err error
	if l.client, err = api.NewClient(c.urls, api.WithTransport(l.transport), api.WithToken(waitFile(t, admin))); err != nil {
		t.Fatal(err)
	}
	l.waitBrain()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		l.mkPod(fmt.Sprintf("pod%d", i), fmt.Sprintf("az%d", i))
	}
	for k := range chaosNets {
		n, err := l.client.CreateNetwork(ctx, api.NetworkCreate{Name: fmt.Sprintf("chaos%d", k), Type: api.TypeSharedVXLAN})
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range []api.Subnet{{CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}, {CIDR: fmt.Sprintf("2001:db8:%x::/64", k+1), GatewayIP: fmt.Sprintf("2001:db8:%x::1", k+1)}} {
			sn.NetworkID = n.ID
			if _, err := l.client.CreateSubnet(ctx, sn); err != nil {
				t.Fatal(err)
			}
		}
		c.nets = append(c.nets, n)
	}
	g1a, g1b, g2, g3 := l.addGateway("pod1", "gwa"), l.addGateway("pod1", "gwb"), l.addGateway("pod2", "gw"), l.addGateway("pod3", "gw")
	for _, n := range c.nets {
		ifname := fmt.Sprintf("seg%d", n.SegmentationID)
		l.rig.Attach(l.rig.AddSegment(g1a, ifname), g1b, ifname)
		l.rig.AddSegment(g2, ifname)
	}
	c.ovs = ovsdbtest.Start(t, ovsdbtest.VTEPSchema)
	runCmd(t, "vtep-ctl", "--db="+c.ovs.Endpoint(), "add-ps", hwvtepSwitch, "--", "set", "Physical_Switch", hwvtepSwitch,
		"tunnel_ips="+g3.VTEP.String(), "--", "add-port", hwvtepSwitch, hwvtepPort)
	for _, gw := range []*netns.Gateway{g1a, g1b, g2, g3} {
		c.gws = append(c.gws, chaosGateway{gw: gw, id: gw.Pod + "-" + gw.Host})
	}
	c.gws[3].ovsdb = c.ovs.Socket()
	for _, g := range c.gws {
		c.startChaosAgent(g)
	}
	for i, b := range c.brains {
		c.daemons = append(c.daemons, daemon{name: b.name, p: b, slack: 3 * len(c.gws), client: &http.Client{Transport: l.transport, Timeout: 2 * time.Second},
			metrics: fmt.Sprintf("http://%s:%d/metrics", brainAddr, 9696+i)})
	}
	for _, g := range c.gws {
		c.daemons = append(c.daemons, daemon{name: "agent-" + g.id, p: l.agents[g.id],
			client: &http.Client{Transport: nsTransport(g.gw.NS), Timeout: 2 * time.Second}, metrics: "http://127.0.0.1:9697/metrics"})
	}
	return c
}

// chaosDSN is a fresh database of the test binary's PostgreSQL, as a URL
// over the server's unix socket.
func chaosDSN(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(pgtest.SharedDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("host", pgtest.Shared(t).SocketDir())
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *chaosLab) startChaosAgent(g chaosGateway) {
	c.startAgent(g.gw, func(a *[]string) {
		*a = append(*a, "--brain-url", c.urls, "--metrics-listen", "127.0.0.1:9697", "--log-level", "info")
		if g.ovsdb != "" {
			*a = append(*a, "--backend", "hwvtep", "--ovsdb-endpoint", "unix:"+g.ovsdb,
				"--physical-switch", hwvtepSwitch, "--local-interface", hwvtepPort+":{vni}")
		}
	})
}

// converged compares every gateway with what the brain's data says it
// must hold, with every gateway alive and healthy.
func (c *chaosLab) converged() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := readBrainView(ctx, c.client, c.nets)
	if err != nil {
		return err
	}
	ms := chaosMembers(c.gws)
	for _, g := range c.gws {
		var want, have []string
		if g.ovsdb != "" {
			want = v.wantOVSDB(g, ms)
			have, err = haveOVSDB(g.ovsdb)
		} else {
			want = v.wantLinux(g, ms)
			have, err = haveLinux(g.gw)
		}
		if err == nil {
			err = diffLines(want, have)
		}
		c.lines[g.id] = len(want)
		if err != nil {
			return fmt.Errorf("%s: %w", g.id, err)
		}
	}
	return nil
}

// checkpoint waits until every gateway holds exactly the desired state and
// returns how long that took; it fails the test after a minute.
func (c *chaosLab) checkpoint(t *testing.T, what string) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < time.Minute {
		if err = c.converged(); err == nil {
			d := time.Since(start)
			t.Logf("checkpoint %s: every gateway exact after %s (entries compared: %v)", what, d.Round(time.Millisecond), c.lines)
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.debugDump(fmt.Sprint(err))
	t.Fatalf("checkpoint %s: not converged within a minute: %v", what, err)
	return 0
}

// noJobStuck fails on a job that is neither done nor waiting for a retry.
func (c *chaosLab) noJobStuck(t *testing.T) {
	t.Helper()
	jobs, err := c.client.ListJobs(context.Background(), api.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.State == api.JobRunning || (j.State == api.JobNew && time.Since(j.UpdatedAt) > 30*time.Second) {
			t.Errorf("job %s (%s %s in %s) stuck %s since %s", j.ID, j.Type, j.Resource, j.PodID, j.State, j.UpdatedAt)
		}
	}
}

// chaosFault is one fault: done returns once it is healed.
type chaosFault struct {
	name string
	do   func(t *testing.T)
}

func (c *chaosLab) faults() []chaosFault {
	agent := func(i int) *proc { return c.agents[c.gws[i].id] }
	kill9 := func(p *proc, down time.Duration) func(*testing.T) {
		return func(*testing.T) { p.kill(syscall.SIGKILL); time.Sleep(down); p.restart() }
	}
	return []chaosFault{
		{"kill -9 of pod2's agent", kill9(agent(2), 500*time.Millisecond)},
		{"kill -9 of brain replica a", kill9(c.brains[0], 2*time.Second)},
		{"ovsdb-server restart", func(t *testing.T) {
			if err := c.ovs.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
		{"underlay of pod1-gwa cut for 3 s", func(t *testing.T) {
			cutUnderlay(c.gws[0].gw)
			time.Sleep(3 * time.Second)
			c.gws[0].gw.MustExec("nft", "delete", "table", "inet", "l2schaos")
		}},
		{"kill -9 of pod1-gwa's agent", kill9(agent(0), time.Second)},
		{"kill -9 of the hwvtep agent", kill9(agent(3), 500*time.Millisecond)},
		{"kill -9 of brain replica b", kill9(c.brains[1], 2*time.Second)},
	}
}

// cutUnderlay drops everything in and out of gw's underlay device.
func cutUnderlay(gw *netns.Gateway) {
	gw.MustExec("nft", "add", "table", "inet", "l2schaos")
	gw.MustExec("nft", "add", "chain", "inet", "l2schaos", "in", "{ type filter hook input priority 0; }")
	gw.MustExec("nft", "add", "chain", "inet", "l2schaos", "out", "{ type filter hook output priority 0; }")
	gw.MustExec("nft", "add", "rule", "inet", "l2schaos", "in", "iifname", gw.UnderlayDev, "drop")
	gw.MustExec("nft", "add", "rule", "inet", "l2schaos", "out", "oifname", gw.UnderlayDev, "drop")
}

// TestChaos churns ports through the API (creates, bulk creates, moves,
// IP changes, deletes) while agents and brain replicas are killed -9 and
// restarted, the hwvtep gateway's ovsdb-server restarted and a gateway's
// underlay cut and healed. At checkpoints and at the end every gateway's
// kernel FDB, neighbor entries and devices, and every hardware_vtep row,
// equal what the brain's data says exactly; no job is stuck; daemons that
// ran throughout hold no more goroutines or fds than at the first
// checkpoint. It reports the convergence time after the last fault.
//
// L2SPAN_SOAK=<duration> repeats the faults for that long (make soak), and
// L2SPAN_SOAK_CSV=<file> records the daemons' memory and goroutines.
func TestChaos(t *testing.T) {
	t.Parallel()
	soak := time.Duration(0)
	if v := os.Getenv("L2SPAN_SOAK"); v != "" {
		var err error
		if soak, err = time.ParseDuration(v); err != nil {
			t.Fatalf("L2SPAN_SOAK: %v", err)
		}
	}
	start := time.Now()
	c := newChaosLab(t)
	t.Logf("rig up in %s", time.Since(start).Round(time.Millisecond))
	csv := os.Getenv("L2SPAN_SOAK_CSV")
	if csv == "" {
		csv = filepath.Join(t.TempDir(), "health.csv")
	}
	rec := recordHealth(t, csv, c.daemons, 2*time.Second)
	defer rec.Stop()
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn seed %d", seed)
	ch := newChurner(c.client, c.nets, []string{"pod1", "pod2", "pod3"}, seed)

	ch.start(20)
	time.Sleep(3 * time.Second)
	ch.pause()
	c.checkpoint(t, "warm-up")
	c.driftCheck(t)
	base := map[string]daemonStat{}
	rebase(base, c.daemons)

	faults := c.faults()
	var lastFault time.Time
	var lastConv, lastChange time.Duration
	for round := 0; round == 0 || time.Since(start) < soak; round++ {
		ch.start(20)
		for i, f := range faults {
			time.Sleep(2 * time.Second)
			f.do(t)
			lastFault = time.Now()
			t.Logf("round %d fault %d: %s", round, i+1, f.name)
			if i != 3 && i != len(faults)-1 {
				continue
			}
			time.Sleep(time.Second)
			ch.pause()
			paused := time.Now()
			lastChange = c.checkpoint(t, fmt.Sprintf("round %d after %q (%s)", round, f.name, ch.summary()))
			lastConv = paused.Add(lastChange).Sub(lastFault)
			checkGrowth(t, c.daemons, base)
			rebase(base, c.daemons)
			if i != len(faults)-1 {
				ch.start(20)
			}
		}
	}
	t.Logf("convergence after the last fault healed: %s (target < 5 s), after the last API change: %s; churn: %s",
		lastConv.Round(time.Millisecond), lastChange.Round(time.Millisecond), ch.summary())
	if ch.ok["create"]+ch.ok["bulk-create"] == 0 || ch.ok["move"] == 0 || ch.ok["ip-change"] == 0 || ch.ok["delete"] == 0 {
		t.Errorf("churn did not exercise every kind of change: %s", ch.summary())
	}
	c.driftCheck(t)
	c.noJobStuck(t)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// driftCheck deletes, behind the agents' backs, one FDB entry and one
// neighbor entry of pod2's gateway, then a VXLAN device of it, and one
// Ucast_Macs_Remote row of the hwvtep gateway; the comparison must see it (or the check could not
// fail), and the agents must put them back. It reports the repair times.
func (c *chaosLab) driftCheck(t *testing.T) {
	t.Helper()
	have, err := haveLinux(c.gws[2].gw)
	if err != nil {
		t.Fatal(err)
	}
	var fdb, neigh []string
	for _, l := range have {
		f := strings.Fields(l)
		switch {
		case f[0] == "fdb" && len(f) == 5 && fdb == nil:
			fdb = f // fdb DEV MAC -> VTEP
		case f[0] == "neigh" && neigh == nil:
			neigh = f // neigh DEV IP MAC
		}
	}
	if fdb == nil || neigh == nil {
		t.Fatalf("pod2's gateway holds no remote entry to delete: %q", head(have, 8))
	}
	gw := c.gws[2].gw
	start := time.Now()
	gw.MustExec("bridge", "fdb", "del", fdb[2], "dev", fdb[1], "dst", fdb[4], "self")
	gw.MustExec("ip", "neigh", "del", neigh[2], "dev", neigh[1])
	c.comparisonNotices(t, c.gws[2], fdb[2], neigh[2])
	c.waitExact(t, "kernel drift repaired")
	kernel := time.Since(start)
	// A whole VXLAN device of a forwarded network goes.
	start = time.Now()
	gw.MustExec("ip", "link", "del", fdb[1])
	c.comparisonNotices(t, c.gws[2], " "+fdb[1]+" ")
	c.waitExact(t, "deleted VXLAN device repaired")
	device := time.Since(start)

	rows, err := ovsdbRows(c.ovs.Socket(), "Ucast_Macs_Remote")
	if err != nil || len(rows) == 0 {
		t.Fatalf("hwvtep gateway: no Ucast_Macs_Remote to delete (%v)", err)
	}
	start = time.Now()
	runCmd(t, "ovsdb-client", "transact", c.ovs.Endpoint(),
		fmt.Sprintf(`["hardware_vtep",{"op":"delete","table":"Ucast_Macs_Remote","where":[["_uuid","==",["uuid",%q]]]}]`, rows[0]["_uuid"]))
	c.comparisonNotices(t, c.gws[3], "ucast ", " "+fmt.Sprint(rows[0]["MAC"])+" ")
	c.waitExact(t, "OVSDB drift repaired")
	t.Logf("drift behind the agents' backs repaired: kernel FDB+neighbor %s, VXLAN device with its entries %s, OVSDB row %s",
		kernel.Round(time.Millisecond), device.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// comparisonNotices proves the comparison sees what was deleted: the
// agents repair drift in ~150 ms, often before a fresh read could show the
// gap, so the check drops the lines holding each key from the gateway's
// current read-back and requires the comparison to report them missing.
func (c *chaosLab) comparisonNotices(t *testing.T, g chaosGateway, keys ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := readBrainView(ctx, c.client, c.nets)
	if err != nil {
		t.Fatal(err)
	}
	ms := chaosMembers(c.gws)
	var want, have []string
	if g.ovsdb != "" {
		want = v.wantOVSDB(g, ms)
		have, err = haveOVSDB(g.ovsdb)
	} else {
		want = v.wantLinux(g, ms)
		have, err = haveLinux(g.gw)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		holds := func(l string) bool { return strings.Contains(l, key) }
		if !slices.ContainsFunc(want, holds) {
			t.Fatalf("%s: no wanted line holds %q", g.id, key)
		}
		// Not repaired yet: the read-back itself lacks the lines. Repaired
		// already: take them out again.
		gap := slices.DeleteFunc(slices.Clone(have), holds)
		if diffLines(want, gap) == nil {
			t.Fatalf("%s: the comparison did not notice the lines holding %q missing", g.id, key)
		}
	}
}

func (c *chaosLab) waitExact(t *testing.T, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what, c.converged)
}

// rebase takes a daemon's health reading as its baseline when it has none
// or was restarted since its baseline.
func rebase(base map[string]daemonStat, ds []daemon) {
	for name, s := range statAll(ds) {
		if b, ok := base[name]; !ok || b.pid != s.pid {
			base[name] = s
		}
	}
}
