package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
	// token is an admin token the brain issued; ctl sends it unless the
	// arguments name a token themselves.
	token string
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
	_, token, err := svc.CreateToken(ctx, brain.TokenSpec{Role: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(srv.URL, api.WithToken(token))
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
	return &testBrain{url: srv.URL, client: c, srv: srv, token: token}
}

type result struct {
	out, err string
	code     int
}

// ctl runs l2spanctl against b.
func (b *testBrain) ctl(t *testing.T, args ...string) result {
	t.Helper()
	pre := []string{"--brain", b.url}
	if b.token != "" && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--token") }) {
		pre = append(pre, "--token", b.token)
	}
	return ctlRaw(t, append(pre, args...)...)
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

	b := startBrain(t, httpapi.Options{Auth: httpapi.AuthOptions{Legacy: []string{"s3cret"}}})
	b.token = ""
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
for line in "l2spanctl net" "l2spanctl network |" "l2spanctl port create net1 --po"; do
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
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "network-types.md"))
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
