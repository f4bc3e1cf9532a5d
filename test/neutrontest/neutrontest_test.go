package neutrontest_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/l2span/l2span/test/neutrontest"
)

// TestServer starts a private neutron-server, creates a provider network
// through gophercloud, and checks that Stop leaves no process behind.
func TestServer(t *testing.T) {
	srv := neutrontest.Start(t)
	t.Logf("neutron-server ready at %s in %s", srv.URL, srv.StartupTime)
	ctx := context.Background()
	c := srv.Client()
	opts := provider.CreateOptsExt{
		CreateOptsBuilder: networks.CreateOpts{Name: "probe", ProjectID: "p1"},
		Segments:          []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: neutrontest.Physnet1, SegmentationID: 321}},
	}
	var n struct {
		networks.Network
		provider.NetworkProviderExt
	}
	if err := networks.Create(ctx, c, opts).ExtractInto(&n); err != nil {
		t.Fatal(err)
	}
	if n.NetworkType != "vlan" || n.SegmentationID != "321" || n.PhysicalNetwork != neutrontest.Physnet1 {
		t.Fatalf("provider attributes: %+v", n.NetworkProviderExt)
	}
	pages, err := networks.List(c, networks.ListOpts{Name: "probe"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := networks.ExtractNetworks(pages)
	if err != nil || len(all) != 1 || all[0].ID != n.ID {
		t.Fatalf("list: %v %v", all, err)
	}
	pid := srv.PID()
	srv.Stop()
	if err := syscall.Kill(-pid, 0); err == nil {
		t.Fatalf("process group %d still alive after Stop", pid)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("neutron-server %d still running", pid)
	}
}
