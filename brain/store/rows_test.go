package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/model"
)

func TestSubnetsAndPorts(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			for _, sn := range []model.Subnet{{ID: "s2", NetworkID: "n1", CIDR: "fd00::/64", CreatedAt: t0}, {ID: "s1", NetworkID: "n1", CIDR: "10.0.0.0/24", GatewayIP: "10.0.0.1", CreatedAt: t0}} {
				if err := tx.InsertSubnet(ctx, sn); err != nil {
					return err
				}
			}
			wantErr(ctx, t, tx, ErrReferenced, func() error {
				return tx.InsertSubnet(ctx, model.Subnet{ID: "s3", NetworkID: "nope", CIDR: "10.1.0.0/24", CreatedAt: t0})
			})
			if got := must[model.Subnet](t)(tx.GetSubnet(ctx, "s1")); got.GatewayIP != "10.0.0.1" || got.CIDR != "10.0.0.0/24" {
				t.Errorf("s1 read back as %+v", got)
			}
			ports := []model.Port{
				{ID: "p1", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:01", IPs: []string{"10.0.0.5", "fd00::5"}, DeviceOwner: "compute:az1", CreatedAt: t0},
				{ID: "p2", NetworkID: "n1", PodID: "pod2", MAC: "fa:16:3e:00:00:02", IPs: []string{}, CreatedAt: t0},
				{ID: "p3", NetworkID: "n1", PodID: "pod2", MAC: "fa:16:3e:00:00:03", IPs: []string{}, CreatedAt: t0},
			}
			for _, p := range ports {
				if err := tx.InsertPort(ctx, p); err != nil {
					return err
				}
			}
			// The same id is ErrDuplicateID; the same MAC in the network only ErrDuplicate.
			wantErr(ctx, t, tx, ErrDuplicateID, func() error {
				return tx.InsertPort(ctx, model.Port{ID: "p1", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:09", CreatedAt: t0})
			})
			err := tx.Savepoint(ctx, func() error {
				return tx.InsertPort(ctx, model.Port{ID: "p9", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:01", CreatedAt: t0})
			})
			if !errors.Is(err, ErrDuplicate) || errors.Is(err, ErrDuplicateID) {
				t.Errorf("same MAC: want ErrDuplicate and not ErrDuplicateID, got %v", err)
			}
			p := ports[1]
			p.PodID, p.IPs, p.MobilitySeq, p.Duplicate = "pod1", []string{"10.0.0.7"}, 3, true
			if err := tx.UpdatePort(ctx, p); err != nil {
				return err
			}
			got := must[model.Port](t)(tx.GetPort(ctx, "p2"))
			if got.PodID != "pod1" || !slices.Equal(got.IPs, p.IPs) || got.MobilitySeq != 3 || !got.Duplicate || !got.CreatedAt.Equal(t0) {
				t.Errorf("p2 read back as %+v", got)
			}
			if got := must[model.Port](t)(tx.GetPort(ctx, "p1")); got.DeviceOwner != "compute:az1" || !slices.Equal(got.IPs, ports[0].IPs) {
				t.Errorf("p1 read back as %+v", got)
			}
			wantErr(ctx, t, tx, ErrNotFound, func() error { return tx.DeletePort(ctx, "nope") })
			return tx.DeletePort(ctx, "p3")
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			l := must[model.List[model.Subnet]](t)(tx.ListSubnets(ctx, model.SubnetFilter{NetworkID: "n1"}, model.Page{}))
			if len(l.Items) != 2 || l.Items[0].ID != "s1" {
				t.Errorf("subnets of n1: %+v", l.Items)
			}
			for _, c := range []struct {
				f    model.PortFilter
				want []string
			}{
				{model.PortFilter{}, []string{"p1", "p2"}},
				{model.PortFilter{PodID: "pod1"}, []string{"p1", "p2"}},
				{model.PortFilter{MAC: "fa:16:3e:00:00:01"}, []string{"p1"}},
				{model.PortFilter{Duplicate: true}, []string{"p2"}},
				{model.PortFilter{NetworkID: "n1", PodID: "x"}, []string{}},
				{model.PortFilter{ProjectIDs: []string{"nobody"}}, []string{}},
			} {
				f, want := c.f, c.want
				l := must[model.List[model.Port]](t)(tx.ListPorts(ctx, f, model.Page{}))
				var ids []string
				for _, p := range l.Items {
					ids = append(ids, p.ID)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("ports %+v: %v, want %v", f, ids, want)
				}
			}
			for _, c := range []struct {
				net, pod string
				want     int
			}{{"", "", 2}, {"n1", "", 2}, {"n1", "pod1", 2}, {"n1", "pod2", 0}} {
				if got := must[int](t)(tx.CountPorts(ctx, c.net, c.pod)); got != c.want {
					t.Errorf("CountPorts(%q, %q) = %d, want %d", c.net, c.pod, got, c.want)
				}
			}
			if n := must[int](t)(tx.CountDuplicates(ctx)); n != 1 {
				t.Errorf("duplicates: %d", n)
			}
			return nil
		})
		write(t, s, func(ctx context.Context, tx *Tx) error {
			wantErr(ctx, t, tx, ErrNotFound, func() error { return tx.DeleteSubnet(ctx, "nope") })
			if err := tx.DeleteSubnet(ctx, "s2"); err != nil {
				return err
			}
			if _, err := tx.GetSubnet(ctx, "s2"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted subnet: %v", err)
			}
			return nil
		})
	})
}

func TestPortMoves(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			if err := tx.InsertPort(ctx, model.Port{ID: "p1", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:01", CreatedAt: t0}); err != nil {
				return err
			}
			for i := range 3 {
				if err := tx.RecordMove(ctx, "p1", "pod1", "pod2", t0.Add(time.Duration(i)*time.Minute)); err != nil {
					return err
				}
			}
			if n := must[int](t)(tx.MovesSince(ctx, "p1", t0.Add(time.Minute))); n != 2 {
				t.Errorf("moves since minute 1: %d, want 2", n)
			}
			// The older move was forgotten.
			if n := must[int](t)(tx.MovesSince(ctx, "p1", t0)); n != 2 {
				t.Errorf("moves since 0 after expiry: %d, want 2", n)
			}
			if err := tx.ClearMoves(ctx, "p1"); err != nil {
				return err
			}
			if n := must[int](t)(tx.MovesSince(ctx, "p1", t0)); n != 0 {
				t.Errorf("moves after clear: %d", n)
			}
			return nil
		})
	})
}

func TestGateways(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		g := model.Gateway{ID: "gw1", PodID: "pod1", VTEP: "192.0.2.1", Backend: "linux", DVRMAC: "fa:16:3f:00:00:01",
			PopulateMACs: true, LastSeen: t0, Revision: 7, Status: []byte(`{"healthy":true,"forwarding":1}`)}
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			if err := tx.UpsertGateway(ctx, g); err != nil {
				return err
			}
			wantErr(ctx, t, tx, ErrReferenced, func() error {
				return tx.UpsertGateway(ctx, model.Gateway{ID: "gw9", PodID: "nope", VTEP: "192.0.2.9", Backend: "linux", LastSeen: t0})
			})
			got := must[model.Gateway](t)(tx.GetGateway(ctx, "gw1"))
			if got.VTEP != g.VTEP || string(got.Status) != string(g.Status) || !got.PopulateMACs || got.Revision != 7 || !got.LastSeen.Equal(t0) {
				t.Errorf("gw1 read back as %+v", got)
			}
			// An upsert replaces every field, a nil status included.
			g2 := model.Gateway{ID: "gw1", PodID: "pod2", VTEP: "192.0.2.2", Backend: "hwvtep", LastSeen: t0.Add(time.Second)}
			if err := tx.UpsertGateway(ctx, g2); err != nil {
				return err
			}
			got = must[model.Gateway](t)(tx.GetGateway(ctx, "gw1"))
			if got.PodID != "pod2" || got.Backend != "hwvtep" || got.Status != nil || got.PopulateMACs {
				t.Errorf("gw1 after upsert: %+v", got)
			}
			return tx.UpsertGateway(ctx, model.Gateway{ID: "gw2", PodID: "pod1", VTEP: "192.0.2.3", Backend: "linux", LastSeen: t0})
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			l := must[model.List[model.Gateway]](t)(tx.ListGateways(ctx, model.GatewayFilter{PodID: "pod1"}, model.Page{}))
			if len(l.Items) != 1 || l.Items[0].ID != "gw2" {
				t.Errorf("gateways of pod1: %+v", l.Items)
			}
			return nil
		})
		write(t, s, func(ctx context.Context, tx *Tx) error {
			wantErr(ctx, t, tx, ErrNotFound, func() error { return tx.DeleteGateway(ctx, "nope") })
			if err := tx.DeleteGateway(ctx, "gw1"); err != nil {
				return err
			}
			if _, err := tx.GetGateway(ctx, "gw1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted gateway: %v", err)
			}
			return nil
		})
	})
}

func TestChangeLogAndCompaction(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		// A write that records no change takes no revision.
		if rev := write(t, s, func(ctx context.Context, tx *Tx) error { _, err := tx.Revision(ctx); return err }); rev != 0 {
			t.Fatalf("a write without changes took revision %d", rev)
		}
		// Writes of segments, subnets and ports record themselves: a port
		// by id, a network's header by network.
		if rev := write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			p := model.Port{ID: "p1", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:01", IPs: []string{}, CreatedAt: t0}
			if err := tx.InsertPort(ctx, p); err != nil {
				return err
			}
			return tx.DeletePort(ctx, "p1")
		}); rev != 1 {
			t.Fatalf("seed took revision %d, want 1", rev)
		}
		read(t, s, func(ctx context.Context, tx *Tx) error {
			cs, _, err := tx.Changes(ctx, 0, 1)
			if want := []string{"n1", "port:p1"}; err != nil || !slices.Equal(changeKeys(cs), want) {
				t.Errorf("seed's changes %v (%v), want %v", changeKeys(cs), err, want)
			}
			return err
		})
		write(t, s, func(ctx context.Context, tx *Tx) error { return tx.Compact(ctx, 1) })
		var revs []int64
		for _, ids := range [][]string{{"n1"}, {"n2", "n1"}, {model.AllNetworks}, {"n3"}} {
			revs = append(revs, write(t, s, func(ctx context.Context, tx *Tx) error {
				for _, id := range ids {
					tx.Changed(id)
					tx.Changed(id) // twice in one transaction is one change
				}
				return nil
			}))
		}
		if !slices.Equal(revs, []int64{2, 3, 4, 5}) {
			t.Fatalf("revisions %v, want 2..5 in order", revs)
		}
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if rev := must[int64](t)(tx.Revision(ctx)); rev != 5 {
				t.Errorf("revision %d", rev)
			}
			for _, c := range []struct {
				since, upTo int64
				want        []string
			}{{1, 5, []string{"*", "n1", "n2", "n3"}}, {2, 3, []string{"n1", "n2"}}, {4, 5, []string{"n3"}}, {5, 5, nil}} {
				cs, expired, err := tx.Changes(ctx, c.since, c.upTo)
				if err != nil {
					return err
				}
				ids := changeKeys(cs)
				if expired || !slices.Equal(ids, c.want) {
					t.Errorf("changes (%d, %d]: %v expired %v; want %v", c.since, c.upTo, ids, expired, c.want)
				}
			}
			return nil
		})
		// Compaction forgets what is older: a reader behind it relists.
		write(t, s, func(ctx context.Context, tx *Tx) error { return tx.Compact(ctx, 3) })
		write(t, s, func(ctx context.Context, tx *Tx) error { return tx.Compact(ctx, 2) }) // never moves back
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if _, expired, err := tx.Changes(ctx, 2, 5); err != nil || !expired {
				t.Errorf("changes after 2 once compacted to 3: expired %v err %v", expired, err)
			}
			cs, expired, err := tx.Changes(ctx, 3, 5)
			ids := changeKeys(cs)
			if err != nil || expired || !slices.Equal(ids, []string{"*", "n3"}) {
				t.Errorf("changes after 2: %v expired %v err %v", ids, expired, err)
			}
			return nil
		})
	})
}

func TestFailedWriteLeavesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		boom := errors.New("boom")
		_, err := s.Write(ctx, func(tx *Tx) error {
			seed(ctx, t, tx)
			tx.Changed("n1")
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("write: %v", err)
		}
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if _, err := tx.GetPod(ctx, "pod1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("a failed write left pod1 behind: %v", err)
			}
			if rev := must[int64](t)(tx.Revision(ctx)); rev != 0 {
				t.Errorf("a failed write took revision %d", rev)
			}
			return nil
		})
	})
}

func TestSavepoint(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			boom := errors.New("boom")
			err := tx.Savepoint(ctx, func() error {
				if err := tx.InsertPod(ctx, model.Pod{ID: "pod8", AZ: "az1", CreatedAt: t0}); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Errorf("savepoint returned %v", err)
			}
			// A failed statement under a savepoint leaves the transaction usable.
			wantErr(ctx, t, tx, ErrDuplicate, func() error { return tx.InsertPod(ctx, model.Pod{ID: "pod1", AZ: "az1", CreatedAt: t0}) })
			if err := tx.Savepoint(ctx, func() error { return tx.InsertPod(ctx, model.Pod{ID: "pod9", AZ: "az1", CreatedAt: t0}) }); err != nil {
				return err
			}
			return nil
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if _, err := tx.GetPod(ctx, "pod8"); !errors.Is(err, ErrNotFound) {
				t.Errorf("a rolled-back savepoint kept pod8: %v", err)
			}
			_, err := tx.GetPod(ctx, "pod9")
			return err
		})
	})
}

func TestProjectionReads(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			nets := []model.Network{
				{ID: "n2", Type: model.TypeMixedVLANVXLAN, AZHints: []string{}, CreatedAt: t0},
				{ID: "n3", Type: model.TypeSharedVLAN, AZHints: []string{}, CreatedAt: t0},
				{ID: "n4", Type: model.TypeSharedVXLAN, AZHints: []string{}, CreatedAt: t0},
			}
			for _, n := range nets {
				if err := tx.InsertNetwork(ctx, n); err != nil {
					return err
				}
				if n.ID != "n4" {
					if err := tx.InsertSegment(ctx, model.Segment{NetworkID: n.ID, PodID: "pod1", CreatedAt: t0}); err != nil {
						return err
					}
				}
			}
			if err := tx.InsertSegment(ctx, model.Segment{NetworkID: "n4", PodID: "pod2", CreatedAt: t0}); err != nil {
				return err
			}
			for _, p := range []model.Port{
				{ID: "a", NetworkID: "n1", PodID: "pod2", MAC: "fa:16:3e:00:00:0b", IPs: []string{}, CreatedAt: t0},
				{ID: "b", NetworkID: "n1", PodID: "pod2", MAC: "fa:16:3e:00:00:0a", IPs: []string{}, CreatedAt: t0},
				{ID: "c", NetworkID: "n1", PodID: "pod1", MAC: "fa:16:3e:00:00:0c", IPs: []string{}, CreatedAt: t0},
				{ID: "d", NetworkID: "n4", PodID: "pod2", MAC: "fa:16:3e:00:00:0d", IPs: []string{}, CreatedAt: t0},
			} {
				if err := tx.InsertPort(ctx, p); err != nil {
					return err
				}
			}
			return tx.InsertSubnet(ctx, model.Subnet{ID: "s1", NetworkID: "n1", CIDR: "10.0.0.0/24", CreatedAt: t0})
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if subs := must[[]model.Subnet](t)(tx.SubnetsOf(ctx, []string{"n1", "n2"})); len(subs) != 1 || subs[0].ID != "s1" {
				t.Errorf("subnets of n1, n2: %+v", subs)
			}
			return nil
		})
	})
}

// changeKeys lists a change set's networks, "*" for pods and "port:ID" for
// ports, sorted.
func changeKeys(cs ChangeSet) []string {
	ids := slices.Clone(cs.Networks)
	if cs.Pods {
		ids = append(ids, AllNetworks)
	}
	for _, p := range cs.Ports {
		ids = append(ids, "port:"+p)
	}
	slices.Sort(ids)
	return ids
}
