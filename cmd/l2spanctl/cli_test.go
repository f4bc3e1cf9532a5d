package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/brain/store"
)

var testConfig = brain.Config{
	VLANRanges: []brain.VLANRange{{PhysicalNetwork: "physnet1", Min: 100, Max: 102}},
	VNIRanges:  []brain.VNIRange{{Min: 5000, Max: 5999}},
	// Jobs are enqueued (no pool runs them here), so `job` has rows to show.
	BottomJobs: true,
}

type testBrain struct {
	url    string
	client *api.Client
	srv    *httptest.Server
}

// startBrain runs an in-process brain over SQLite in a temp dir.
func startBrain(t *testing.T, opts httpapi.Options) *testBrain {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	var hub *brain.Hub
	svc := brain.NewService(st, testConfig, func(rev int64) { hub.Notify(rev) })
	svc.Start(ctx)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hub = brain.NewHub(svc, 20*time.Millisecond, log)
	opts.Logger = log
	srv := httptest.NewServer(httpapi.New(svc, hub, opts))
	go hub.Run(ctx, 0)
	c, err := api.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
		svc.Close()
		st.Close()
	})
	return &testBrain{url: srv.URL, client: c, srv: srv}
}

type result struct {
	out, err string
	code     int
}

// ctl runs l2spanctl against b.
func (b *testBrain) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return ctlRaw(t, append([]string{"--brain", b.url}, args...)...)
}

func ctlRaw(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{out.String(), errb.String(), code}
}

// ok runs l2spanctl and fails the test unless it exits 0.
func (b *testBrain) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := b.ctl(t, args...)
	if r.code != 0 {
		t.Fatalf("l2spanctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

func (b *testBrain) fails(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := b.ctl(t, args...)
	if r.code != code {
		t.Fatalf("l2spanctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	return r
}

func jsonOut[T any](t *testing.T, b *testBrain, args ...string) T {
	t.Helper()
	var v T
	out := b.ok(t, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s: not JSON of %T: %v\n%s", strings.Join(args, " "), v, err, out)
	}
	return v
}

// rowsOf returns the whitespace-split rows of a table section that starts
// with a line whose first field is header.
func rowsOf(out, header string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == header:
			in = true
		case in && len(f) == 0:
			return rows
		case in:
			rows = append(rows, f)
		}
	}
	return rows
}

// field returns the value of a key/value line of a show table.
func field(out, key string) string {
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// spanned sets up pods in az1, az2, az3, a shared_vxlan network scoped to
// az1+az2 with a subnet, one port in pod1 and two in pod2.
func spanned(t *testing.T, b *testBrain) api.Network {
	t.Helper()
	b.ok(t, "pod", "create", "pod1", "--az", "az1", "--region", "RegionOne", "--dvr-base-mac", "fa:16:3f:00:00:00/24")
	b.ok(t, "pod", "create", "--az=az2", "pod2") // flags before the argument too
	b.ok(t, "pod", "create", "pod3", "--az", "az3")
	n := jsonOut[api.Network](t, b, "network", "create", "net1", "--type", "shared_vxlan", "--az-hint", "az1", "--az-hint", "az2")
	b.ok(t, "subnet", "create", "net1", "--cidr", "10.0.0.0/24", "--gateway-ip", "10.0.0.1")
	b.ok(t, "subnet", "create", "net1", "--cidr", "fd00::/64")
	b.ok(t, "port", "create", "net1", "--pod", "pod1", "--mac", "fa:16:3e:00:00:01", "--ip", "10.0.0.11", "--device-owner", "compute:nova")
	b.ok(t, "port", "create", n.ID, "--pod", "pod2", "--mac", "fa:16:3e:00:00:02", "--ip", "10.0.0.12,fd00::12", "--id", "vm2-port")
	b.ok(t, "port", "create", "net1", "--pod", "pod2", "--mac", "FA:16:3E:00:00:03")
	return n
}

func TestNetworkShowSpan(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)

	out := b.ok(t, "network", "show", "net1")
	t.Logf("network show net1:\n%s", out)
	if got := field(out, "id"); got != n.ID {
		t.Errorf("id = %q, want %s", got, n.ID)
	}
	if got := field(out, "type"); got != "shared_vxlan" {
		t.Errorf("type = %q", got)
	}
	if got := field(out, "az_hints"); got != "az1,az2" {
		t.Errorf("az_hints = %q", got)
	}
	if got := field(out, "ports"); got != "3" {
		t.Errorf("ports = %q", got)
	}
	if !strings.Contains(out, "10.0.0.0/24 gateway 10.0.0.1 (id ") || !strings.Contains(out, "fd00::/64 (id ") {
		t.Errorf("subnets missing:\n%s", out)
	}
	vni := fmt.Sprint(n.SegmentationID)
	want := [][]string{
		{"pod1", "az1", "vxlan", vni, "-", "1", "-"},
		{"pod2", "az2", "vxlan", vni, "-", "2", "-"},
	}
	got := rowsOf(out, "POD")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("span rows = %v, want %v", got, want)
	}
	if h := strings.Fields(strings.SplitAfter(out, "Span:\n")[1])[:6]; strings.Join(h, " ") != "POD AZ NETWORK_TYPE SEGMENTATION_ID PHYSICAL_NETWORK PORTS" {
		t.Errorf("span header = %v", h)
	}

	// The same by id, and the list shows the pods it spans.
	if out2 := b.ok(t, "network", "show", n.ID); out2 != out {
		t.Errorf("show by id differs from show by name:\n%s", out2)
	}
	rows := rowsOf(b.ok(t, "network", "list"), "ID")
	if len(rows) != 1 || rows[0][0] != n.ID || rows[0][1] != "net1" || rows[0][7] != "pod1,pod2" {
		t.Errorf("network list rows = %v", rows)
	}

	// Port list with filters, by network name.
	rows = rowsOf(b.ok(t, "port", "list", "--network", "net1", "--pod", "pod2"), "ID")
	if len(rows) != 2 {
		t.Fatalf("port list --pod pod2: %v", rows)
	}
	for _, r := range rows {
		if r[2] != "pod2" || r[1] != n.ID {
			t.Errorf("port row %v", r)
		}
	}
	rows = rowsOf(b.ok(t, "port", "list", "--mac", "fa:16:3e:00:00:01"), "ID")
	if len(rows) != 1 || rows[0][4] != "10.0.0.11" || rows[0][5] != "compute:nova" {
		t.Errorf("port list --mac: %v", rows)
	}
	if got := field(b.ok(t, "port", "show", "vm2-port"), "ips"); got != "10.0.0.12, fd00::12" {
		t.Errorf("port show ips = %q", got)
	}
}

func TestOutOfScopePort(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	spanned(t, b)
	r := b.fails(t, 1, "port", "create", "net1", "--pod", "pod3", "--mac", "fa:16:3e:00:00:09")
	if !strings.HasPrefix(r.err, "error: ") || !strings.Contains(r.err, "(field: pod_id)") || !strings.Contains(r.err, "az3") {
		t.Errorf("stderr = %q", r.err)
	}
	if r.out != "" {
		t.Errorf("stdout = %q", r.out)
	}
	// A bad MAC is an input error naming its field too.
	r = b.fails(t, 1, "port", "create", "net1", "--pod", "pod1", "--mac", "nope")
	if !strings.Contains(r.err, "(field: mac)") {
		t.Errorf("stderr = %q", r.err)
	}
	r = b.fails(t, 1, "pod", "show", "nope")
	if !strings.HasPrefix(r.err, "error: ") {
		t.Errorf("stderr = %q", r.err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	if out := b.ok(t, "-o", "json", "pod", "list"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list = %q, want []", out)
	}
	n := spanned(t, b)

	got := jsonOut[api.Network](t, b, "network", "show", "net1")
	want, err := b.client.GetNetwork(context.Background(), n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gb, wb := mustJSON(t, got), mustJSON(t, want); gb != wb {
		t.Errorf("network show -o json:\n%s\nwant\n%s", gb, wb)
	}
	if len(got.Segments) != 2 {
		t.Errorf("segments = %v", got.Segments)
	}

	pods := jsonOut[[]api.Pod](t, b, "pod", "list")
	if len(pods) != 3 || pods[0].ID != "pod1" || pods[0].DVRBaseMAC != "fa:16:3f:00:00:00/24" || pods[0].Region != "RegionOne" {
		t.Errorf("pods = %+v", pods)
	}
	if az := jsonOut[[]api.Pod](t, b, "pod", "list", "--az", "az2"); len(az) != 1 || az[0].ID != "pod2" {
		t.Errorf("pod list --az az2 = %+v", az)
	}
	ports := jsonOut[[]api.Port](t, b, "port", "list", "--network", n.ID)
	if len(ports) != 3 {
		t.Errorf("ports = %+v", ports)
	}
	// -o after the subcommand works too.
	var sub []api.Subnet
	if err := json.Unmarshal([]byte(b.ok(t, "subnet", "list", "--network", "net1", "-o", "json")), &sub); err != nil || len(sub) != 2 || sub[0].NetworkID != n.ID {
		t.Errorf("subnet list = %+v, %v", sub, err)
	}
	p := jsonOut[api.Port](t, b, "port", "show", "vm2-port")
	if p.MAC != "fa:16:3e:00:00:02" || p.PodID != "pod2" {
		t.Errorf("port = %+v", p)
	}
	st := jsonOut[api.PodState](t, b, "state", "pod1")
	if st.PodID != "pod1" || len(st.Networks) != 1 || len(st.Networks[0].RemotePorts) != 2 {
		t.Errorf("state = %+v", st)
	}
	// Deletes print nothing in JSON mode.
	if out := b.ok(t, "-o", "json", "port", "delete", "vm2-port"); out != "" {
		t.Errorf("delete -o json printed %q", out)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNameResolution(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	b.ok(t, "pod", "create", "pod1", "--az", "az1")
	a := jsonOut[api.Network](t, b, "network", "create", "dup", "--type", "shared_vxlan")
	c := jsonOut[api.Network](t, b, "network", "create", "dup", "--type", "local")

	r := b.fails(t, 1, "network", "show", "dup")
	if !strings.Contains(r.err, "ambiguous") || !strings.Contains(r.err, a.ID) || !strings.Contains(r.err, c.ID) {
		t.Errorf("ambiguous stderr = %q", r.err)
	}
	b.fails(t, 1, "port", "create", "dup", "--pod", "pod1", "--mac", "fa:16:3e:00:00:01")
	b.fails(t, 1, "network", "delete", "dup")
	r = b.fails(t, 1, "network", "show", "nothing-by-that-name")
	if !strings.Contains(r.err, "not found") {
		t.Errorf("not found stderr = %q", r.err)
	}
	if got := field(b.ok(t, "network", "show", a.ID), "name"); got != "dup" {
		t.Errorf("show by id: name %q", got)
	}

	// Rename one by id: both names now resolve.
	if got := field(b.ok(t, "network", "rename", c.ID, "solo"), "name"); got != "solo" {
		t.Errorf("rename printed name %q", got)
	}
	if got := field(b.ok(t, "network", "show", "dup"), "id"); got != a.ID {
		t.Errorf("dup resolves to %q, want %s", got, a.ID)
	}
	if got := field(b.ok(t, "network", "show", "solo"), "type"); got != "local" {
		t.Errorf("solo type %q", got)
	}
	rows := rowsOf(b.ok(t, "network", "list", "--type", "local"), "ID")
	if len(rows) != 1 || rows[0][1] != "solo" || rows[0][5] != "(any)" {
		t.Errorf("list --type local = %v", rows)
	}
	rows = rowsOf(b.ok(t, "network", "list", "--name", "dup"), "ID")
	if len(rows) != 1 || rows[0][0] != a.ID {
		t.Errorf("list --name dup = %v", rows)
	}
	if out := b.ok(t, "network", "delete", "solo"); !strings.Contains(out, c.ID) {
		t.Errorf("delete printed %q", out)
	}
	b.fails(t, 1, "network", "show", "solo")
}

func TestMixedReportSegment(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	b.ok(t, "pod", "create", "pod1", "--az", "az1")
	b.ok(t, "pod", "create", "pod2", "--az", "az2")
	b.ok(t, "network", "create", "mixed", "--type", "mixed_vlan_vxlan", "--az-hint", "az1,az2")
	b.ok(t, "port", "create", "mixed", "--pod", "pod1", "--mac", "fa:16:3e:00:00:01")
	out := b.ok(t, "network", "show", "mixed")
	if rows := rowsOf(out, "POD"); len(rows) != 1 || rows[0][2] != "(not" {
		t.Errorf("pending segment rows = %v\n%s", rows, out)
	}
	seg := jsonOut[api.Segment](t, b, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan",
		"--segmentation-id", "200", "--physical-network", "physnet1")
	if seg.NetworkType != "vlan" || seg.SegmentationID != 200 {
		t.Errorf("segment = %+v", seg)
	}
	rows := rowsOf(b.ok(t, "network", "show", "mixed"), "POD")
	if len(rows) != 1 || strings.Join(rows[0], " ") != "pod1 az1 vlan 200 physnet1#pod1 1 -" {
		t.Errorf("reported segment rows = %v", rows)
	}
	r := b.fails(t, 1, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan", "--segmentation-id", "5000")
	if !strings.Contains(r.err, "(field: segmentation_id)") {
		t.Errorf("stderr = %q", r.err)
	}
	b.fails(t, 2, "network", "report-segment", "mixed", "--pod", "pod1", "--type", "vlan")
}

func TestState(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	out := b.ok(t, "state", "pod1")
	t.Logf("state pod1:\n%s", out)
	if field(out, "pod") != "pod1" {
		t.Errorf("pod = %q", field(out, "pod"))
	}
	if !strings.Contains(out, "network net1 ("+n.ID+")") {
		t.Errorf("no network header")
	}
	if got := field(strings.ReplaceAll(out, "\n  ", "\n"), "vni"); got != fmt.Sprint(n.SegmentationID) {
		t.Errorf("vni = %q", got)
	}
	if got := field(strings.ReplaceAll(out, "\n  ", "\n"), "remote_pods"); got != "pod2" {
		t.Errorf("remote_pods = %q", got)
	}
	want := [][]string{{"fa:16:3e:00:00:02", "10.0.0.12,fd00::12", "pod2"}, {"fa:16:3e:00:00:03", "-", "pod2"}}
	if got := rowsOf(out, "MAC"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("remote ports = %v, want %v", got, want)
	}
	// pod2 sees pod1's DVR base MAC and pod1's port.
	out = b.ok(t, "state", "pod2")
	if !strings.Contains(out, "pod1=fa:16:3f:00:00:00/24") || !strings.Contains(out, "fa:16:3e:00:00:01") {
		t.Errorf("state pod2:\n%s", out)
	}
	// pod3 has nothing spanned.
	if out := b.ok(t, "state", "pod3"); !strings.Contains(out, "(none spanned") {
		t.Errorf("state pod3:\n%s", out)
	}
	b.fails(t, 1, "state", "nope")
	if r := b.fails(t, 1, "state", "nope", "--watch"); !strings.HasPrefix(r.err, "error: ") {
		t.Errorf("watch of an unknown pod: %q", r.err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, buf *syncBuffer, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in:\n%s", what, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStateWatch(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			b := startBrain(t, httpapi.Options{Heartbeat: 50 * time.Millisecond})
			n := spanned(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int)
			go func() {
				done <- run(ctx, []string{"--brain", b.url, "-o", format, "state", "pod1", "--watch"}, &out, &errb)
			}()

			waitFor(t, &out, "fa:16:3e:00:00:03") // the snapshot
			if _, err := b.client.CreatePort(context.Background(), api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:04", IPs: []string{"10.0.0.14"}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &out, "fa:16:3e:00:00:04") // the update
			// A broken stream is resumed from the last revision.
			b.srv.CloseClientConnections()
			waitFor(t, &errb, "reconnecting from revision")
			// A fresh client: the cut also killed the test client's kept-alive
			// connections, and a POST is not retried on one (EOF).
			fresh, err := api.NewClient(b.url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fresh.CreatePort(context.Background(), api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:05", IPs: []string{}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &out, "fa:16:3e:00:00:05")
			cancel() // Ctrl-C
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d, stderr %s", code, errb.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not stop on cancel")
			}
			t.Logf("watch output:\n%s", out.String())
			if format == "table" {
				if !strings.Contains(out.String(), "snapshot, revision") || !strings.Contains(out.String(), "update, revision") {
					t.Errorf("no snapshot/update headers")
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var types []string
			for _, l := range lines {
				var ev api.WatchEvent
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				types = append(types, ev.Type)
			}
			if types[0] != api.EventSnapshot || types[len(types)-1] != api.EventUpdate {
				t.Errorf("event types = %v", types)
			}
		})
	}
}

func TestPaging(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	spanned(t, b)
	n, err := b.client.GetNetwork(context.Background(), mustNetID(t, b, "net1"))
	if err != nil {
		t.Fatal(err)
	}
	// More ports than one page of the server (1000): the list follows the pages.
	var reqs []api.PortCreate
	for i := range 1200 {
		reqs = append(reqs, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:01:%02x:%02x", i/256, i%256), IPs: []string{}})
	}
	if _, err := b.client.CreatePorts(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	if ports := jsonOut[[]api.Port](t, b, "port", "list"); len(ports) != 1203 {
		t.Errorf("port list: %d ports, want 1203", len(ports))
	}
	if rows := rowsOf(b.ok(t, "network", "show", "net1"), "POD"); len(rows) != 2 || rows[0][5] != "1201" {
		t.Errorf("span rows = %v", rows)
	}
}

func mustNetID(t *testing.T, b *testBrain, name string) string {
	t.Helper()
	nets := jsonOut[[]api.Network](t, b, "network", "list", "--name", name)
	if len(nets) != 1 {
		t.Fatalf("networks named %s: %v", name, nets)
	}
	return nets[0].ID
}

func TestDeletes(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	subs := jsonOut[[]api.Subnet](t, b, "subnet", "list")
	if len(subs) != 2 {
		t.Fatalf("subnets %v", subs)
	}
	if got := field(b.ok(t, "subnet", "show", subs[0].ID), "cidr"); got != subs[0].CIDR {
		t.Errorf("subnet show cidr %q, want %s", got, subs[0].CIDR)
	}
	// A network with ports cannot go.
	if r := b.fails(t, 1, "network", "delete", "net1"); !strings.Contains(r.err, "port") {
		t.Errorf("stderr %q", r.err)
	}
	for _, p := range jsonOut[[]api.Port](t, b, "port", "list") {
		b.ok(t, "port", "delete", p.ID)
	}
	for _, sn := range subs {
		b.ok(t, "subnet", "delete", sn.ID)
	}
	if out := b.ok(t, "-o", "json", "subnet", "list"); strings.TrimSpace(out) != "[]" {
		t.Errorf("subnets after delete: %s", out)
	}
	if out := b.ok(t, "network", "delete", "net1"); !strings.Contains(out, n.ID) {
		t.Errorf("network delete printed %q", out)
	}
	b.ok(t, "pod", "delete", "pod3")
	if pods := jsonOut[[]api.Pod](t, b, "pod", "list"); len(pods) != 2 {
		t.Errorf("pods after delete: %v", pods)
	}
}

// The span shows each pod's designated forwarder as the agents elect it:
// one of the pod's live, healthy gateways; an unhealthy one never.
func TestSpanForwarders(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	ctx := context.Background()
	for _, g := range []api.Gateway{
		{ID: "gw-1a", PodID: "pod1", VTEP: "192.0.2.11", Backend: "linux", Status: &api.GatewayStatus{Healthy: true}},
		{ID: "gw-1b", PodID: "pod1", VTEP: "192.0.2.12", Backend: "linux", Status: &api.GatewayStatus{Healthy: true}},
		{ID: "gw-2a", PodID: "pod2", VTEP: "192.0.2.21", Backend: "linux", Status: &api.GatewayStatus{Healthy: false}},
		{ID: "gw-2b", PodID: "pod2", VTEP: "192.0.2.22", Backend: "linux", Status: &api.GatewayStatus{Healthy: true}},
	} {
		if _, err := b.client.RegisterGateway(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	rows := rowsOf(b.ok(t, "network", "show", n.ID), "POD")
	if len(rows) != 2 {
		t.Fatalf("span rows %v", rows)
	}
	df1 := strings.Join(rows[0][6:], " ")
	if df1 != "gw-1a (192.0.2.11)" && df1 != "gw-1b (192.0.2.12)" {
		t.Errorf("pod1 forwarder %q", df1)
	}
	if df2 := strings.Join(rows[1][6:], " "); df2 != "gw-2b (192.0.2.22)" {
		t.Errorf("pod2 forwarder %q: the unhealthy gateway must not be elected", df2)
	}
	// The MAC table across pods.
	macs := rowsOf(b.ok(t, "network", "macs", n.ID), "MAC")
	if len(macs) != 3 || macs[0][1] != "pod1" || macs[0][3] != "0" || macs[0][4] != "-" {
		t.Errorf("mac table %v", macs)
	}
}

func TestJobs(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	rows := rowsOf(b.ok(t, "job", "list", "--pod", "pod2"), "ID")
	if len(rows) != 1 || rows[0][1] != "network_sync" || rows[0][2] != n.ID || rows[0][3] != "pod2" || rows[0][4] != "new" {
		t.Fatalf("job list = %v", rows)
	}
	id := rows[0][0]
	if out := b.ok(t, "job", "show", id); field(out, "state") != "new" || field(out, "pod_id") != "pod2" {
		t.Errorf("job show:\n%s", out)
	}
	if j := jsonOut[api.Job](t, b, "job", "retry", id); j.ID != id || j.State != "new" {
		t.Errorf("job retry = %+v", j)
	}
	if rows := rowsOf(b.ok(t, "job", "list", "--state", "success"), "ID"); len(rows) != 0 {
		t.Errorf("no job ran, yet: %v", rows)
	}
	if r := b.fails(t, 1, "job", "show", "nope"); !strings.Contains(r.err, "error:") {
		t.Errorf("stderr %q", r.err)
	}
}

func TestGateways(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	spanned(t, b)
	if _, err := b.client.RegisterGateway(context.Background(), api.Gateway{ID: "gw-a", PodID: "pod1", VTEP: "192.0.2.1", Backend: "linux", PopulateMACs: true}); err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(b.ok(t, "gateway", "list", "--pod", "pod1"), "ID")
	if len(rows) != 1 || strings.Join(rows[0][:8], " ") != "gw-a pod1 192.0.2.1 linux - - - yes" {
		t.Errorf("gateway list = %v", rows)
	}
	// An agent's report: health, designated-forwarder load, eBPF counters.
	if _, err := b.client.RegisterGateway(context.Background(), api.Gateway{ID: "gw-b", PodID: "pod1", VTEP: "192.0.2.2", Backend: "linux",
		Status: &api.GatewayStatus{Healthy: false, Forwarding: 3, Standby: 5, Counters: map[string]uint64{"dropped_arp": 7, "rewritten": 42}}}); err != nil {
		t.Fatal(err)
	}
	rows = rowsOf(b.ok(t, "gateway", "list", "--pod", "pod1"), "ID")
	if len(rows) != 2 || strings.Join(rows[1][:7], " ") != "gw-b pod1 192.0.2.2 linux no 3 5" {
		t.Errorf("gateway list with status = %v", rows)
	}
	st := b.ok(t, "gateway", "show", "gw-b")
	if field(st, "healthy") != "no" || !strings.Contains(st, "dropped_arp") || !strings.Contains(st, "42") {
		t.Errorf("gateway show with status:\n%s", st)
	}
	if rows := rowsOf(b.ok(t, "gateway", "list", "--pod", "pod2"), "ID"); len(rows) != 0 {
		t.Errorf("gateway list pod2 = %v", rows)
	}
	out := b.ok(t, "gateway", "show", "gw-a")
	if field(out, "vtep") != "192.0.2.1" || !strings.Contains(field(out, "last_seen"), "ago)") {
		t.Errorf("gateway show:\n%s", out)
	}
	if g := jsonOut[api.Gateway](t, b, "gateway", "show", "gw-a"); g.VTEP != "192.0.2.1" {
		t.Errorf("gateway json %+v", g)
	}
	if r := b.fails(t, 1, "gateway", "show", "gw-z"); !strings.Contains(r.err, "gw-z") {
		t.Errorf("stderr %q", r.err)
	}
	if out := b.ok(t, "pod", "show", "pod1"); !strings.Contains(out, "Gateways:") || !strings.Contains(out, "gw-a") {
		t.Errorf("pod show:\n%s", out)
	}
}

func TestUsage(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "missing command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"pod"}, "missing subcommand"},
		{[]string{"pod", "frob"}, `unknown command "pod frob"`},
		{[]string{"pod", "create"}, "Usage: l2spanctl [global flags] pod create ID --az AZ"},
		{[]string{"pod", "create", "p1"}, "missing required flag --az"},
		{[]string{"pod", "create", "p1", "p2", "--az", "az1"}, `unexpected argument "p2"`},
		{[]string{"pod", "list", "--bogus"}, "flag provided but not defined"},
		{[]string{"--bogus", "pod", "list"}, "flag provided but not defined"},
		{[]string{"-o", "yaml", "pod", "list"}, `-o "yaml"`},
		{[]string{"pod", "list", "-o", "xml"}, `-o "xml"`},
		{[]string{"network", "create", "n"}, "missing required flag --type"},
		{[]string{"network", "create", "n", "--type", "local", "--segmentation-id", "x"}, "invalid value"},
		{[]string{"network", "rename", "n"}, "missing argument"},
		{[]string{"port", "create", "n", "--mac", "fa:16:3e:00:00:01"}, "missing required flag --pod"},
		{[]string{"subnet", "create", "n"}, "missing required flag --cidr"},
		{[]string{"state"}, "Usage: l2spanctl [global flags] state POD"},
		{[]string{"--timeout", "0s", "pod", "list"}, "--timeout"},
		{[]string{"--token", "a", "--token-file", "f", "pod", "list"}, "mutually exclusive"},
		{[]string{"help", "frob"}, `unknown command "frob"`},
	} {
		r := b.ctl(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.want) || !strings.Contains(r.err, "Usage:") || r.out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q with usage", tc.args, r.code, r.out, r.err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "Global flags:"},
		{[]string{"-h"}, "--token-file FILE"},
		{[]string{"--help"}, "network"},
		{[]string{"help", "pod"}, "create ID --az AZ"},
		{[]string{"pod", "help"}, "Subcommands:"},
		{[]string{"pod", "-h"}, "Subcommands:"},
		{[]string{"pod", "help", "create"}, "--dvr-base-mac PREFIX"},
		{[]string{"help", "pod", "create"}, "--az ZONE"},
		{[]string{"pod", "create", "-h"}, "--neutron-url URL"},
		{[]string{"pod", "create", "help"}, "--region REGION"},
		{[]string{"network", "create", "--help"}, "--az-hint ZONE (repeatable)"},
		{[]string{"network", "show", "-h"}, "port count"},
		{[]string{"state", "-h"}, "--watch"},
		{[]string{"help", "state"}, "--since REVISION"},
	} {
		r := b.ctl(t, tc.args...)
		if r.code != 0 || !strings.Contains(r.out, tc.want) || r.err != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout:\n%s\nwant exit 0 and %q", tc.args, r.code, r.err, r.out, tc.want)
		}
	}
}

func TestConnectionAndAuth(t *testing.T) {
	// Nothing listens here.
	r := ctlRaw(t, "--brain", "http://127.0.0.1:1", "--timeout", "2s", "pod", "list")
	if r.code != 1 || !strings.HasPrefix(r.err, "error: cannot reach the brain at http://127.0.0.1:1") {
		t.Errorf("exit %d stderr %q", r.code, r.err)
	}
	if r := ctlRaw(t, "--brain", "http://127.0.0.1:1", "state", "pod1", "--watch"); r.code != 1 || !strings.Contains(r.err, "cannot reach the brain") {
		t.Errorf("watch, no brain: exit %d stderr %q", r.code, r.err)
	}
	r = ctlRaw(t, "--brain", "ftp://x", "pod", "list")
	if r.code != 1 || !strings.Contains(r.err, "want http(s)://host:port") {
		t.Errorf("bad url: exit %d stderr %q", r.code, r.err)
	}

	b := startBrain(t, httpapi.Options{Auth: httpapi.BearerTokens("s3cret")})
	t.Setenv(envToken, "")
	if r := b.fails(t, 1, "pod", "list"); !strings.Contains(r.err, "missing bearer token") {
		t.Errorf("no token: %q", r.err)
	}
	if r := b.fails(t, 1, "--token", "wrong", "pod", "list"); !strings.Contains(r.err, "invalid bearer token") {
		t.Errorf("wrong token: %q", r.err)
	}
	b.ok(t, "--token", "s3cret", "pod", "create", "pod1", "--az", "az1")
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if rows := rowsOf(b.ok(t, "--token-file", tf, "pod", "list"), "ID"); len(rows) != 1 {
		t.Errorf("pod list with token file: %v", rows)
	}
	if r := b.fails(t, 1, "--token-file", filepath.Join(t.TempDir(), "absent"), "pod", "list"); !strings.Contains(r.err, "read token file") {
		t.Errorf("absent token file: %q", r.err)
	}

	// The environment gives the brain URL and the token.
	t.Setenv(envBrainURL, b.url)
	t.Setenv(envToken, "s3cret")
	if r := ctlRaw(t, "pod", "show", "pod1"); r.code != 0 || field(r.out, "az") != "az1" {
		t.Errorf("env: exit %d out %q err %q", r.code, r.out, r.err)
	}
	// --token-file beats $L2SPAN_TOKEN.
	if err := os.WriteFile(tf, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ctlRaw(t, "--token-file", tf, "pod", "list"); r.code != 1 {
		t.Errorf("token file over env: exit %d", r.code)
	}
}

func TestAgentStatus(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	agentSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dataplane" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.AgentDataplane{Pod: "pod1", GatewayID: "gw-a", Healthy: true, Revision: 9,
			Networks: []api.AgentNetwork{{VNI: 5000, LocalInterface: "seg5000", MACs: 3, Flood: 2, Neighbors: 3}},
			Standby:  []uint32{5001}, Drift: &api.AgentDrift{AddMACs: 1}})
	}))
	defer agentSrv.Close()
	out := b.ok(t, "agent", "status", "--agent", agentSrv.URL)
	for _, want := range []string{"gw-a (pod pod1)", "vni 5000 on seg5000: 3 macs, 2 flood, 3 neighbors", "[5001]", "to add 0 networks, 1 macs"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent status lacks %q:\n%s", want, out)
		}
	}
	if r := b.fails(t, 1, "agent", "status", "--agent", "http://127.0.0.1:1"); !strings.Contains(r.err, "cannot reach the agent") {
		t.Errorf("unreachable agent: %q", r.err)
	}
}

// The bash completion script parses and completes commands, subcommands and
// a subcommand's flags.
func TestBashCompletion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	script := filepath.Join(t.TempDir(), "l2spanctl.bash")
	if err := os.WriteFile(script, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := `source "$1"
for line in "l2spanctl net" "l2spanctl network |" "l2spanctl port create net1 --p"; do
	line=${line%|}
	COMP_WORDS=($line); [ "${line: -1}" = " " ] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _l2spanctl; echo "${COMPREPLY[*]}"
done`
	got, err := exec.Command("bash", "-c", probe, "probe", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, got)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 3 || lines[0] != "network" || !strings.Contains(lines[1], "macs") || !strings.Contains(lines[1], "report-segment") || lines[2] != "--pod" {
		t.Fatalf("completions: %q", lines)
	}
}

// TestDocsNetworkTypes runs every l2spanctl line of docs/network-types.md,
// in order, against a brain: the documented examples stay true. A line
// whose comment says "error" must fail.
func TestDocsNetworkTypes(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "network-types.md"))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, line := range strings.Split(string(doc), "\n") {
		cmd, comment, _ := strings.Cut(line, "#")
		fields := strings.Fields(cmd)
		if len(fields) == 0 || fields[0] != "l2spanctl" {
			continue
		}
		ran++
		if strings.Contains(comment, "error") {
			b.fails(t, 1, fields[1:]...)
			continue
		}
		out := b.ok(t, fields[1:]...)
		if strings.Contains(comment, "vlan 200") && !strings.Contains(out, "physnet1#pod1") {
			t.Errorf("%s: the documented result is not shown:\n%s", cmd, out)
		}
	}
	if ran < 15 {
		t.Fatalf("only %d documented commands found", ran)
	}
}
