package nsexec

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestRunEntersAndLeaves runs code in a fresh namespace (only lo there)
// and checks that the caller's namespace is untouched afterwards.
func TestRunEntersAndLeaves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	name := fmt.Sprintf("l2s-nsx-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	var inside []string
	err = Run(ns, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			inside = append(inside, l.Attrs().Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0] != "lo" {
		t.Errorf("links inside the new namespace: %v, want only lo", inside)
	}
	if err := Run(ns, func() error { return fmt.Errorf("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("fn's error: %v", err)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Error("the caller's thread was left in another namespace")
	}
	ran := false
	if err := Run(netns.None(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("with no namespace: ran %v, %v", ran, err)
	}
}
