//go:build linux

// Package netns builds throwaway network namespaces for root tests: single
// namespaces (New) and a Rig of pods, gateways, pod-local segments and VMs.
// Every namespace is named "<tag>-<name>" with a tag unique to the test, so
// tests in parallel processes never collide, and every namespace, handle and
// background process is removed by t.Cleanup, even when the test fails.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/l2span/l2span/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips t unless the test runs as root (needed to create
// network namespaces).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run as root, e.g. sudo -E go test)")
	}
}

var tags sync.Map // testing.TB -> string

// Tag returns the short tag unique to this test ("l2s" + 6 hex chars) that
// prefixes every namespace the test creates.
func Tag(t testing.TB) string {
	if v, ok := tags.Load(t); ok {
		return v.(string)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netns tag: %v", err)
	}
	tag := "l2s" + hex.EncodeToString(b[:])
	if v, loaded := tags.LoadOrStore(t, tag); loaded {
		return v.(string)
	}
	t.Cleanup(func() { tags.Delete(t) })
	return tag
}

// NS is one named network namespace owned by a test.
type NS struct {
	t      testing.TB
	name   string
	ns     netns.NsHandle
	handle *netlink.Handle

	mu    sync.Mutex
	procs []*exec.Cmd
}

// New creates the namespace "<tag>-<name>", brings its lo up and registers
// its removal with t.Cleanup.
func New(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	full := Tag(t) + "-" + name
	h, err := createNamed(full)
	if err != nil {
		t.Fatalf("create netns %s: %v", full, err)
	}
	n := &NS{t: t, name: full, ns: h}
	t.Cleanup(n.cleanup)
	n.handle, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", full, err)
	}
	lo, err := n.handle.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", full, err)
	}
	if err := n.handle.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up in %s: %v", full, err)
	}
	return n
}

// createNamed creates a named netns on a locked thread and switches the
// thread back. If switching back fails the thread stays locked, so the Go
// runtime destroys it when the goroutine exits instead of reusing a thread
// that sits in the wrong namespace.
func createNamed(name string) (netns.NsHandle, error) {
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it dies with this goroutine.
			if err == nil {
				h.Close()
				_ = netns.DeleteNamed(name)
			}
			ch <- res{err: errors.Join(err, fmt.Errorf("switch back to original netns: %w", serr))}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{h: h, err: err}
	}()
	r := <-ch
	return r.h, r.err
}

func (n *NS) cleanup() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, c := range procs {
		if c.Process != nil {
			_ = syscall.Kill(c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
		}
	}
	if n.handle != nil {
		n.handle.Close()
	}
	n.ns.Close()
	if err := netns.DeleteNamed(n.name); err != nil {
		n.t.Errorf("delete netns %s: %v", n.name, err)
	}
}

// Name is the full namespace name, as `ip netns` shows it.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind-mount path (/run/netns/NAME).
func (n *NS) Path() string { return "/run/netns/" + n.name }

// NsHandle is an open file descriptor of the namespace, valid until cleanup.
func (n *NS) NsHandle() netns.NsHandle { return n.ns }

// Handle is the one persistent netlink handle of this namespace; it is
// closed at cleanup.
func (n *NS) Handle() *netlink.Handle { return n.handle }

// Do runs fn on a locked OS thread inside the namespace, then switches the
// thread back. If switching back fails, the thread is left locked so that it
// exits with its goroutine and is never reused in the wrong namespace.
// Sockets opened inside fn stay in the namespace after Do returns.
func (n *NS) Do(fn func() error) error {
	return nsexec.Run(n.ns, fn)
}

// Exec runs argv inside the namespace (via `ip netns exec`) and returns its
// combined output.
func (n *NS) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: empty argv")
	}
	args := append([]string{"netns", "exec", n.name}, argv...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", argv[0], n.name, err, out)
	}
	return out, nil
}

// MustExec is Exec that fails the test on error.
func (n *NS) MustExec(argv ...string) []byte {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Exec(ctx, argv...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Start runs argv in the background inside the namespace; the process is
// killed (by PID) and reaped at cleanup. Its output is discarded.
func (n *NS) Start(argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("start: empty argv")
	}
	args := append([]string{"netns", "exec", n.name}, argv...)
	c := exec.Command("ip", args...)
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", argv[0], n.name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, c)
	n.mu.Unlock()
	return c, nil
}

// WriteSysctl writes value to /proc/sys/<key> (key with slashes, e.g.
// "net/ipv6/conf/eth0/accept_dad") inside the namespace.
func (n *NS) WriteSysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
}
