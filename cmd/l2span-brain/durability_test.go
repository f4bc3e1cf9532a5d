package main

// Tests of the real l2span-brain binary: no acknowledged write is lost when
// the brain is killed with SIGKILL (SQLite and PostgreSQL), and the config
// file check. The binary is built once per test binary with `go build`.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/neutrontest"
	"github.com/l2span/l2span/test/pgtest"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := neutrontest.Around(func() int { return pgtest.RunMain(m) })
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// brainBinary builds l2span-brain once for the whole test binary.
func brainBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			build.err = err
			return
		}
		if build.dir, build.err = os.MkdirTemp("", "l2span-brain-test-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "l2span-brain")
		out, err := exec.Command(goTool, "build", "-o", build.bin, "github.com/l2span/l2span/cmd/l2span-brain").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// childEnv is the test's environment without what would make the brain
// talk to systemd.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_")
	})
}

// brainProc is one running l2span-brain process.
type brainProc struct {
	cmd  *exec.Cmd
	url  string
	log  string
	done chan struct{} // closed when the process has been reaped
	err  error         // cmd.Wait's answer, set before done closes
	// token is the admin token the brain bootstrapped into the store (a
	// file beside the log, kept across restarts and restores).
	token string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBrainProc starts the binary on storeURL and waits until /readyz
// answers 200. The process is killed (by PID) at t's cleanup.
func startBrainProc(t *testing.T, storeURL, logPath string, extra ...string) *brainProc {
	t.Helper()
	bin := brainBinary(t)
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(logf, "==== start %s on %s\n", time.Now().Format(time.RFC3339Nano), addr)
		p := &brainProc{url: "http://" + addr, log: logPath, done: make(chan struct{})}
		tokenFile := filepath.Join(filepath.Dir(logPath), "admin.token")
		args := []string{"--listen", addr, "--store", storeURL, "--log-level", "warn", "--poll-interval", "50ms"}
		if !slices.Contains(extra, "--insecure-no-auth") {
			args = append(args, "--bootstrap-token-file", tokenFile)
		}
		p.cmd = exec.Command(bin, append(args, extra...)...)
		p.cmd.Env = childEnv()
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		// A test binary that dies must not leave a brain behind.
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			logf.Close()
			t.Fatal(err)
		}
		go func() {
			p.err = p.cmd.Wait()
			logf.Close()
			close(p.done)
		}()
		t.Cleanup(p.kill)
		err = p.waitReady(30*time.Second, tlsReady)
		if err == nil && slices.Contains(extra, "--insecure-no-auth") {
			return p
		}
		if err == nil {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				t.Fatalf("bootstrap token: %v", err)
			}
			p.token = strings.TrimSpace(string(b))
			return p
		}
		p.kill()
		// Another process may have taken the port between freeAddr and listen.
		if attempt < 3 && strings.Contains(readLog(logPath), "address already in use") {
			continue
		}
		t.Fatalf("brain on %s did not become ready: %v\n%s", storeURL, err, readLog(logPath))
	}
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func (p *brainProc) waitReady(timeout time.Duration, probe *tlsProbe) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	url := p.url
	if probe != nil {
		hc.Transport = &http.Transport{Proxy: nil, TLSClientConfig: probe.config()}
		url = strings.Replace(url, "http://", "https://", 1)
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("brain exited: %v", p.err)
		default:
		}
		resp, err := hc.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to the brain's PID (if it still runs) and reaps it.
func (p *brainProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop asks the brain to shut down with SIGTERM and waits for a clean exit.
func (p *brainProc) stop(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
		t.Fatalf("brain did not stop within 15s of SIGTERM\n%s", readLog(p.log))
	}
	if p.err != nil {
		t.Fatalf("brain exited with %v after SIGTERM\n%s", p.err, readLog(p.log))
	}
}

func (p *brainProc) client(t *testing.T) *api.Client {
	c, err := api.NewClient(p.url, api.WithTimeout(10*time.Second), api.WithToken(p.token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	crashPorts   = 300 // creates attempted per round
	crashClients = 8
	crashRounds  = 3
)

// TestKill9LosesNoAcknowledgedPort, per store: rounds of 300 port creates
// from 8 concurrent clients, the brain killed with SIGKILL at a random moment
// of each round, restarted on the same store. Every create that got its 201
// must be there with what was acknowledged, no port may appear that nobody
// asked for, and the revision a watcher saw before the kill must not go
// backwards.
func TestKill9LosesNoAcknowledgedPort(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "b.db")
		crashRoundsOn(t, "sqlite://"+path, filepath.Join(dir, "brain.log"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		crashRoundsOn(t, pgtest.SharedDatabase(t), filepath.Join(t.TempDir(), "brain.log"))
	})
}

type crashState struct {
	net    api.Network
	acked  map[string]api.Port       // 201 received
	asked  map[string]api.PortCreate // every create sent, acknowledged or not
	maxRev int64                     // highest revision any watcher or read saw
	next   int                       // next port number (MAC/IP/id)
}

func crashRoundsOn(t *testing.T, storeURL, logPath string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (brain log %s)", seed, logPath)
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	ctx := context.Background()

	p := startBrainProc(t, storeURL, logPath)
	c := p.client(t)
	for _, pod := range []api.Pod{{ID: "pod1", AZ: "az1"}, {ID: "pod2", AZ: "az2"}} {
		if _, err := c.CreatePod(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "crash", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "10.1.0.0/16", GatewayIP: "10.1.0.1"}); err != nil {
		t.Fatal(err)
	}
	st := &crashState{net: n, acked: map[string]api.Port{}, asked: map[string]api.PortCreate{}}
	for round := range crashRounds {
		killAfter := crashPorts/10 + rng.IntN(crashPorts*8/10)
		delay := time.Duration(rng.IntN(3000)) * time.Microsecond
		crashRound(t, p, st, round, killAfter, delay)
		p = startBrainProc(t, storeURL, logPath)
		verifyAfterRestart(t, p.client(t), st)
	}
	p.stop(t)
	verifyStore(t, storeURL, st)
}

// crashRound creates crashPorts ports from crashClients clients and kills
// the brain with SIGKILL delay after the killAfter-th acknowledgement.
func crashRound(t *testing.T, p *brainProc, st *crashState, round, killAfter int, delay time.Duration) {
	ctx := context.Background()
	c := p.client(t)
	reqs := make([]api.PortCreate, crashPorts)
	for i := range reqs {
		k := st.next
		st.next++
		reqs[i] = api.PortCreate{
			ID:        fmt.Sprintf("port-%05d", k),
			NetworkID: st.net.ID,
			PodID:     []string{"pod1", "pod2"}[k%2],
			MAC:       fmt.Sprintf("fa:16:3e:01:%02x:%02x", byte(k>>8), byte(k)),
			IPs:       []string{fmt.Sprintf("10.1.%d.%d", 1+k/250, 1+k%250)},
		}
		st.asked[reqs[i].ID] = reqs[i]
	}

	// A watcher records the highest revision the brain published before it
	// died: after the restart the revision must not be lower.
	wctx, wcancel := context.WithCancel(ctx)
	var seenRev atomic.Int64
	wdone := make(chan error, 1)
	go func() {
		wdone <- c.Watch(wctx, "pod1", 0, 10*time.Second, func(ev api.WatchEvent) error {
			if prev := seenRev.Load(); ev.Revision < prev {
				return fmt.Errorf("watch revision went from %d back to %d", prev, ev.Revision)
			}
			seenRev.Store(ev.Revision)
			return nil
		})
	}()

	var (
		mu       sync.Mutex
		acked    = map[string]api.Port{}
		nAcked   atomic.Int64
		next     atomic.Int64
		killNow  = make(chan struct{})
		killOnce sync.Once
		wg       sync.WaitGroup
		failures atomic.Int64
	)
	killed := make(chan time.Time, 1)
	go func() {
		select {
		case <-killNow:
		case <-p.done:
			return
		}
		time.Sleep(delay)
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		killed <- time.Now()
	}()
	for range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					return
				}
				port, err := c.CreatePort(ctx, reqs[i])
				if err != nil {
					failures.Add(1)
					continue
				}
				if port.ID != reqs[i].ID || port.MAC != reqs[i].MAC {
					t.Errorf("create %s answered %+v", reqs[i].ID, port)
				}
				mu.Lock()
				acked[port.ID] = port
				mu.Unlock()
				if int(nAcked.Add(1)) == killAfter {
					killOnce.Do(func() { close(killNow) })
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatalf("round %d: the kill did not happen (acked %d, kill after %d)", round, nAcked.Load(), killAfter)
	}
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: brain ended with %v, want death by SIGKILL", round, p.err)
	}
	wcancel()
	if err := <-wdone; err != nil && !strings.Contains(err.Error(), "watch pod1") {
		t.Fatalf("round %d: watcher: %v", round, err)
	}
	for id, port := range acked {
		st.acked[id] = port
	}
	st.maxRev = max(st.maxRev, seenRev.Load())
	t.Logf("round %d: %d of %d creates acknowledged, killed after ack #%d (+%v), %d failed; watcher saw revision %d",
		round, len(acked), len(reqs), killAfter, delay, failures.Load(), seenRev.Load())
	if len(acked) < killAfter {
		t.Fatalf("round %d: only %d acknowledged, kill was after %d", round, len(acked), killAfter)
	}
}

// verifyAfterRestart checks the restarted brain against what was
// acknowledged, then retries every unacknowledged create (a client's retry
// with the same id gets 201 or 409 "already exists") so that the next round
// starts from a fully known state.
func verifyAfterRestart(t *testing.T, c *api.Client, st *crashState) {
	ctx := context.Background()
	ps, err := c.PodState(ctx, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if ps.Revision < st.maxRev {
		t.Fatalf("revision went backwards across the kill: watcher saw %d, restarted brain is at %d", st.maxRev, ps.Revision)
	}
	st.maxRev = ps.Revision
	for id, want := range st.acked {
		got, err := c.GetPort(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged port %s lost after kill -9: %v", id, err)
		}
		if got.MAC != want.MAC || got.PodID != want.PodID || got.NetworkID != want.NetworkID || !slices.Equal(got.IPs, want.IPs) {
			t.Fatalf("acknowledged port %s changed across kill -9: acked %+v, now %+v", id, want, got)
		}
	}
	all, err := api.ListAll(ctx, c.ListPorts, api.ListOptions{Limit: 1000, Filters: map[string]string{"network_id": st.net.ID}})
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, p := range all {
		if _, ok := st.asked[p.ID]; !ok {
			t.Fatalf("port %s exists but was never asked for", p.ID)
		}
		present[p.ID] = true
	}
	inFlight, committed := 0, 0
	for id, req := range st.asked {
		if _, ok := st.acked[id]; ok {
			continue
		}
		inFlight++
		if present[id] {
			committed++
		}
		port, err := c.CreatePort(ctx, req)
		switch {
		case err == nil:
			if present[id] {
				t.Fatalf("port %s was present yet its retry created it again", id)
			}
			st.acked[id] = port
		case api.IsStatus(err, http.StatusConflict) && present[id]:
			got, gerr := c.GetPort(ctx, id)
			if gerr != nil {
				t.Fatal(gerr)
			}
			st.acked[id] = got
		default:
			t.Fatalf("retry of unacknowledged create %s (present %v): %v", id, present[id], err)
		}
	}
	t.Logf("after restart: revision %d, all %d ports acknowledged so far present; %d unacknowledged creates, %d of them had committed; all retried",
		ps.Revision, len(all)-committed, inFlight, committed)
	ps2, err := c.PodState(ctx, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if ps2.Revision < st.maxRev {
		t.Fatalf("revision went backwards: %d then %d", st.maxRev, ps2.Revision)
	}
	st.maxRev = ps2.Revision
}

// verifyStore opens the store directly once the brain has stopped: it must
// open (migrations are no-ops), be consistent, and hold exactly the
// acknowledged ports.
func verifyStore(t *testing.T, storeURL string, st *crashState) {
	ctx := context.Background()
	s, err := store.Open(ctx, storeURL)
	if err != nil {
		t.Fatalf("store does not open cleanly after the kills: %v", err)
	}
	defer s.Close()
	if err := s.CheckIntegrity(ctx); err != nil {
		t.Fatal(err)
	}
	err = s.Read(ctx, func(tx *store.Tx) error {
		n, err := tx.CountPorts(ctx, "", "")
		if err != nil {
			return err
		}
		if n != len(st.acked) {
			return fmt.Errorf("store holds %d ports, %d acknowledged (after retries)", n, len(st.acked))
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		if rev < st.maxRev {
			return fmt.Errorf("stored revision %d < %d seen", rev, st.maxRev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfig runs --check-config on a good config file and on files
// with an unknown key or a bad value: the bad ones are refused with the key
// (and file:line) named.
func TestCheckConfig(t *testing.T) {
	bin := brainBinary(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = childEnv()
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	good := write("good.conf", `# l2span-brain
listen = 127.0.0.1:19696
store = "sqlite:///`+filepath.Join(dir, "never-created.db")[1:]+`"
vlan-ranges = physnet1:100:199
vni-ranges = 5000:5999
poll-interval = 250ms
keep-changes = 5000
log-format = json
`)
	out, errOut, code := run("--config", good, "--check-config")
	if code != 0 || strings.TrimSpace(out) != "configuration ok" {
		t.Fatalf("good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "never-created.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("--check-config touched the store: %v", err)
	}

	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown.conf", "listen = 127.0.0.1:19696\nvni-range = 5000:5999\n", []string{`unknown key "vni-range"`, "unknown.conf:2"}},
		{"badvalue.conf", "poll-interval = fast\n", []string{`key "poll-interval"`, "badvalue.conf:1"}},
		{"badrange.conf", "vni-ranges = 5999:5000\n", []string{"vni-ranges"}},
		{"configkey.conf", "config = /etc/other.conf\n", []string{`unknown key "config"`}},
	} {
		path := write(tc.name, tc.text)
		out, errOut, code := run("--config", path, "--check-config")
		if code == 0 || strings.Contains(out, "configuration ok") {
			t.Errorf("%s accepted: exit %d, stdout %q", tc.name, code, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: exit %d, stderr %q does not name %q", tc.name, code, errOut, w)
			}
		}
	}

	// A flag on the command line wins over the file, and is checked too.
	_, errOut, code = run("--config", good, "--listen", "no-port", "--check-config")
	if code == 0 || !strings.Contains(errOut, "no-port") {
		t.Errorf("bad --listen over a good file: exit %d, stderr %q", code, errOut)
	}
}
