package brain

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestReservePortRetriesATakenMAC makes the first MAC drawn for a reserved
// port one that a VM port of the network holds: the reservation must try
// again in the same transaction and succeed, on PostgreSQL too (where the
// failed insert aborts the transaction unless it ran under a savepoint).
func TestReservePortRetriesATakenMAC(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			url := "sqlite://" + filepath.Join(t.TempDir(), "brain.db")
			if kind == "postgres" {
				url = pgtest.SharedDatabase(t)
			}
			ctx := context.Background()
			st, err := store.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s := NewService(st, Config{VNIRanges: []VNIRange{{Min: 5000, Max: 5009}}}, nil)
			s.Start(ctx)
			defer s.Close()
			if _, err := s.CreatePod(ctx, model.Pod{ID: "pod1", AZ: "az1"}); err != nil {
				t.Fatal(err)
			}
			n, err := s.CreateNetwork(ctx, NetworkCreate{Name: "n", Type: model.TypeSharedVXLAN})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateSubnet(ctx, model.Subnet{NetworkID: n.ID, CIDR: "203.0.113.0/24", GatewayIP: "203.0.113.1"}); err != nil {
				t.Fatal(err)
			}
			const taken = "fa:16:3e:00:00:01"
			if _, err := s.CreatePort(ctx, PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: taken, IPs: []string{"203.0.113.10"}}); err != nil {
				t.Fatal(err)
			}
			draws := []string{taken, "fa:16:3e:00:00:02"}
			s.reservedMAC = func() string {
				m := draws[0]
				if len(draws) > 1 {
					draws = draws[1:]
				}
				return m
			}
			p, err := s.ReservePort(ctx, ReservedDHCP, n.ID, "pod1")
			if err != nil {
				t.Fatalf("reserve after a MAC collision: %v", err)
			}
			if p.MAC != "fa:16:3e:00:00:02" || len(p.IPs) != 1 || p.IPs[0] != "203.0.113.254" {
				t.Fatalf("reserved port %+v", p)
			}
			got, err := s.GetPort(ctx, p.ID)
			if err != nil || got.MAC != p.MAC {
				t.Fatalf("stored reserved port %+v, %v", got, err)
			}
		})
	}
}
