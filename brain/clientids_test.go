package brain

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/l2span/l2span/brain/model"
)

func wantKind(t *testing.T, err error, kind Kind, field string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != kind || e.Field != field {
		t.Fatalf("err = %v, want %v on %s", err, kind, field)
	}
}

// A client (the ML2 driver) gives networks and subnets its own ids: taken
// as they are, refused unless a lowercase UUID, 409 on a clash; ManagedBy
// is kept and filters lists.
func TestClientSuppliedIDs(t *testing.T) {
	s := adoptService(t, "sqlite")
	ctx := context.Background()
	const id = "6f1f3d2a-9a55-4c3e-8f8e-0f4b8a1c2d3e"
	n, err := s.CreateNetwork(ctx, NetworkCreate{ID: id, ManagedBy: "neutron", Name: "web", Type: model.TypeSharedVXLAN})
	if err != nil || n.ID != id {
		t.Fatalf("create with id: %+v, %v", n, err)
	}
	_, err = s.CreateNetwork(ctx, NetworkCreate{ID: id, Name: "again", Type: model.TypeSharedVXLAN})
	wantKind(t, err, KindConflict, "id")
	for _, bad := range []string{"web", "6F1F3D2A-9A55-4C3E-8F8E-0F4B8A1C2D3E", "{" + id + "}"} {
		_, err = s.CreateNetwork(ctx, NetworkCreate{ID: bad, Name: "bad", Type: model.TypeSharedVXLAN})
		wantKind(t, err, KindInvalid, "id")
	}
	if _, err := s.CreateNetwork(ctx, NetworkCreate{Name: "by-hand", Type: model.TypeSharedVXLAN}); err != nil {
		t.Fatal(err)
	}
	l, err := s.ListNetworks(ctx, model.NetworkFilter{ManagedBy: "neutron"}, model.Page{Limit: 10})
	if err != nil || len(l.Items) != 1 || l.Items[0].ID != id || l.Items[0].ManagedBy != "neutron" {
		t.Fatalf("managed_by=neutron: %+v, %v", l.Items, err)
	}
	const sid = "0a6c4e0e-5b2d-4f7a-9a0e-3c1d2b4a5f60"
	sn, err := s.CreateSubnet(ctx, model.Subnet{ID: sid, NetworkID: id, CIDR: "192.0.2.0/24"})
	if err != nil || sn.ID != sid {
		t.Fatalf("subnet with id: %+v, %v", sn, err)
	}
	_, err = s.CreateSubnet(ctx, model.Subnet{ID: sid, NetworkID: id, CIDR: "198.51.100.0/24"})
	wantKind(t, err, KindConflict, "id")
}

// A network switches to external (pinned to a pod it has not left) and
// back; a pod it already reached outside the pin is a 409.
func TestSetExternal(t *testing.T) {
	s := adoptService(t, "sqlite")
	ctx := context.Background()
	s.Start(ctx)
	t.Cleanup(s.Close)
	for _, p := range []model.Pod{{ID: "pod1", AZ: "az1"}, {ID: "pod2", AZ: "az2"}} {
		if _, err := s.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.CreateNetwork(ctx, NetworkCreate{Name: "pub", Type: model.TypeSharedVXLAN, AZHints: []string{"az1"}})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	_, err = s.UpdateNetwork(ctx, n.ID, NetworkUpdate{External: &yes, AZHints: &[]string{"pod2"}})
	wantKind(t, err, KindConflict, "az_hints")
	got, err := s.UpdateNetwork(ctx, n.ID, NetworkUpdate{External: &yes, AZHints: &[]string{"pod1"}})
	if err != nil || !got.External || !slices.Equal(got.AZHints, []string{"pod1"}) {
		t.Fatalf("set external: %+v, %v", got, err)
	}
	got, err = s.UpdateNetwork(ctx, n.ID, NetworkUpdate{External: &no, AZHints: &[]string{"az1"}})
	if err != nil || got.External || !slices.Equal(got.AZHints, []string{"az1"}) {
		t.Fatalf("unset external: %+v, %v", got, err)
	}
	wide, err := s.CreateNetwork(ctx, NetworkCreate{Name: "wide", Type: model.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePort(ctx, PortCreate{NetworkID: wide.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateNetwork(ctx, wide.ID, NetworkUpdate{External: &yes, AZHints: &[]string{"pod1"}})
	wantKind(t, err, KindConflict, "external")
}
