package podrig

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/l2span/l2span/internal/nsexec"
)

// NS is one named network namespace of the rig, "<tag>-<name>".
type NS struct {
	Name string
	h    netns.NsHandle
}

func addNS(name string) (*NS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	n := &NS{Name: name, h: h}
	if _, err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Run runs argv inside the namespace and returns its combined output.
func (n *NS) Run(argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Do runs fn on a thread inside the namespace (sockets opened there stay).
func (n *NS) Do(fn func() error) error { return nsexec.Run(n.h, fn) }

// Dial opens a TCP connection from inside the namespace.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// PIDs lists the processes whose network namespace is this one.
func (n *NS) PIDs() []int {
	out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// RSS sums the resident memory of the namespace's processes, in bytes.
func (n *NS) RSS() int64 {
	var sum int64
	for _, p := range n.PIDs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			sum += pages * int64(os.Getpagesize())
		}
	}
	return sum
}

// remove kills every process in the namespace by PID (daemons that
// re-parented to init included), then deletes it.
func (n *NS) remove() {
	for range 3 {
		pids := n.PIDs()
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.h.Close()
	_ = exec.Command("ip", "netns", "del", n.Name).Run()
}

// daemon is a process started in a namespace with its output in a file.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// start runs argv in ns with env added, output to log. The process gets
// its own process group and dies with the test binary's forking thread
// (Pdeathsig), which is kept locked until it exits.
func start(ns *NS, log string, env []string, argv ...string) (*daemon, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &daemon{exited: make(chan struct{}), log: log}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := d.cmd.Start(); err != nil {
			errc <- err
			close(d.exited)
			return
		}
		errc <- nil
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", argv[0], ns.Name, err)
	}
	return d, nil
}

// alive reports whether the process still runs.
func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop kills the daemon's process group and waits for it.
func (d *daemon) stop() {
	if d == nil || d.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	const n = 3000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(d time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
