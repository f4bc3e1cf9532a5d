package brain

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/pgtest"
)

// TestAdoptedSegmentIsReserved: a network created with Neutron's segment
// holds that id in the pool, so the brain's own allocator never hands it
// out, and a second request for it is a 409 on segmentation_id that names
// the segment and the network holding it.
func TestAdoptedSegmentIsReserved(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			s := adoptService(t, kind)
			ctx := context.Background()
			adopted, err := s.CreateNetwork(ctx, NetworkCreate{Name: "neutron-net", Type: model.TypeSharedVLAN, PhysicalNetwork: "physnet1", SegmentationID: 150})
			if err != nil || adopted.SegmentationID != 150 || adopted.PhysicalNetwork != "physnet1" {
				t.Fatalf("adopt VLAN 150: %+v, %v", adopted, err)
			}
			own, err := s.CreateNetwork(ctx, NetworkCreate{Name: "own", Type: model.TypeSharedVLAN})
			if err != nil || own.SegmentationID != 151 {
				t.Fatalf("own allocation in 150:151 = %+v, %v; want 151", own, err)
			}
			_, err = s.CreateNetwork(ctx, NetworkCreate{Name: "clash", Type: model.TypeSharedVLAN, PhysicalNetwork: "physnet1", SegmentationID: 150})
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindConflict || e.Field != "segmentation_id" ||
				!strings.Contains(e.Message, `VLAN 150 on physical network physnet1 is already used by network "neutron-net"`) {
				t.Fatalf("clash: %v", err)
			}
			vx, err := s.CreateNetwork(ctx, NetworkCreate{Name: "neutron-vx", Type: model.TypeSharedVXLAN, SegmentationID: 5000})
			if err != nil || vx.SegmentationID != 5000 {
				t.Fatalf("adopt VNI 5000: %+v, %v", vx, err)
			}
			_, err = s.CreateNetwork(ctx, NetworkCreate{Name: "clash", Type: model.TypeMixedVLANVXLAN, SegmentationID: 5000})
			if !errors.As(err, &e) || e.Kind != KindConflict || !strings.Contains(e.Message, `VNI 5000 is already used by network "neutron-vx"`) {
				t.Fatalf("VNI clash: %v", err)
			}
		})
	}
}

// TestIPv6GatewayAtSubnetRouterAnycast: Neutron's default IPv6 gateway is
// the prefix's first address; the brain accepts it for IPv6 only.
func TestIPv6GatewayAtSubnetRouterAnycast(t *testing.T) {
	s := adoptService(t, "sqlite")
	ctx := context.Background()
	n, err := s.CreateNetwork(ctx, NetworkCreate{Name: "n", Type: model.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "2001:db8:1::/64", GatewayIP: "2001:db8:1::"})
	if err != nil || sn.GatewayIP != "2001:db8:1::" {
		t.Fatalf("IPv6 subnet-router anycast gateway: %+v, %v", sn, err)
	}
	_, err = s.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "192.0.2.0/24", GatewayIP: "192.0.2.0"})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindInvalid || e.Field != "gateway_ip" {
		t.Fatalf("IPv4 network address as gateway: %v", err)
	}
}

func adoptService(t *testing.T, kind string) *Service {
	t.Helper()
	url := "sqlite://" + filepath.Join(t.TempDir(), "brain.db")
	if kind == "postgres" {
		url = pgtest.SharedDatabase(t)
	}
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewService(st, Config{
		VNIRanges:  []VNIRange{{Min: 5000, Max: 5009}},
		VLANRanges: []VLANRange{{PhysicalNetwork: "physnet1", Min: 150, Max: 151}},
	}, nil)
}
