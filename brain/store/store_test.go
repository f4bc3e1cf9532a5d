package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)

// eachStore runs fn on a fresh SQLite store and a fresh PostgreSQL one.
func eachStore(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			url := "sqlite://" + filepath.Join(t.TempDir(), "brain.db")
			if kind == "postgres" {
				url = pgtest.SharedDatabase(t)
			}
			s, err := Open(context.Background(), url)
			if err != nil {
				t.Fatalf("open %s: %v", url, err)
			}
			t.Cleanup(func() { s.Close() })
			if s.Kind() != kind {
				t.Fatalf("Kind() = %q, want %q", s.Kind(), kind)
			}
			fn(t, s)
		})
	}
}

// write runs fn in a write transaction and fails the test on error.
func write(t *testing.T, s *Store, fn func(ctx context.Context, tx *Tx) error) int64 {
	t.Helper()
	ctx := context.Background()
	rev, err := s.Write(ctx, func(tx *Tx) error { return fn(ctx, tx) })
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func read(t *testing.T, s *Store, fn func(ctx context.Context, tx *Tx) error) {
	t.Helper()
	ctx := context.Background()
	if err := s.Read(ctx, func(tx *Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that fn fails with target, inside a savepoint so that the
// PostgreSQL transaction stays usable.
func wantErr(ctx context.Context, t *testing.T, tx *Tx, target error, fn func() error) {
	t.Helper()
	err := tx.Savepoint(ctx, fn)
	if !errors.Is(err, target) {
		t.Fatalf("want %v, got %v", target, err)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// seed adds pods pod1 (az1), pod2 (az1), pod3 (az2) and a shared_vxlan
// network n1 with segments in pod1 and pod2.
func seed(ctx context.Context, t *testing.T, tx *Tx) {
	t.Helper()
	for _, p := range []model.Pod{{ID: "pod1", AZ: "az1", CreatedAt: t0}, {ID: "pod2", AZ: "az1", DVRBaseMAC: "fa:16:3f:02:00:00/24", CreatedAt: t0}, {ID: "pod3", AZ: "az2", CreatedAt: t0}} {
		if err := tx.InsertPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.InsertNetwork(ctx, model.Network{ID: "n1", Name: "blue", Type: model.TypeSharedVXLAN, AZHints: []string{}, SegmentationID: 5001, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []string{"pod1", "pod2"} {
		if err := tx.InsertSegment(ctx, model.Segment{NetworkID: "n1", PodID: pod, NetworkType: model.SegmentVXLAN, SegmentationID: 5001, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesBadURLs(t *testing.T) {
	for _, url := range []string{"mysql://x/y", "sqlite://host/path.db", "sqlite://", "::"} {
		if s, err := Open(context.Background(), url); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}

func TestReopenAndBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := "sqlite://" + filepath.Join(dir, "brain.db")
	s := must[*Store](t)(Open(ctx, url))
	write(t, s, func(ctx context.Context, tx *Tx) error {
		return tx.InsertPod(ctx, model.Pod{ID: "pod1", AZ: "az1", CreatedAt: t0})
	})
	backup := filepath.Join(dir, "copy.db")
	if err := s.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(ctx, backup); err == nil {
		t.Fatal("a backup over an existing file succeeded")
	}
	if err := s.CheckIntegrity(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Migrations are no-ops on a second open, and the copy is a store too.
	for _, u := range []string{url, "sqlite://" + backup} {
		s := must[*Store](t)(Open(ctx, u))
		read(t, s, func(ctx context.Context, tx *Tx) error {
			p, err := tx.GetPod(ctx, "pod1")
			if err == nil && (p.AZ != "az1" || !p.CreatedAt.Equal(t0)) {
				t.Errorf("%s: pod1 read back as %+v", u, p)
			}
			return err
		})
		s.Close()
	}
}

func TestPods(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			wantErr(ctx, t, tx, ErrDuplicate, func() error { return tx.InsertPod(ctx, model.Pod{ID: "pod1", AZ: "az9", CreatedAt: t0}) })
			p := model.Pod{ID: "pod1", AZ: "az1", Region: "r1", DVRBaseMAC: "fa:16:3f:01:00:00/24", NeutronURL: "http://n1:9696", CreatedAt: t0}
			if err := tx.UpdatePod(ctx, p); err != nil {
				return err
			}
			if got := must[model.Pod](t)(tx.GetPod(ctx, "pod1")); got != p {
				t.Errorf("pod1 = %+v, want %+v", got, p)
			}
			if _, err := tx.GetPod(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("get missing pod: %v", err)
			}
			// A pod with a segment is still referenced.
			wantErr(ctx, t, tx, ErrReferenced, func() error { return tx.DeletePod(ctx, "pod2") })
			wantErr(ctx, t, tx, ErrNotFound, func() error { return tx.DeletePod(ctx, "nope") })
			return tx.DeletePod(ctx, "pod3")
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			for az, want := range map[string]bool{"az1": true, "az2": false} {
				if got := must[bool](t)(tx.AZExists(ctx, az)); got != want {
					t.Errorf("AZExists(%s) = %v", az, got)
				}
			}
			l := must[model.List[model.Pod]](t)(tx.ListPods(ctx, model.PodFilter{AZ: "az1"}, model.Page{Limit: 1}))
			if len(l.Items) != 1 || l.Items[0].ID != "pod1" || l.Next != "pod1" {
				t.Errorf("first page %+v", l)
			}
			l = must[model.List[model.Pod]](t)(tx.ListPods(ctx, model.PodFilter{AZ: "az1"}, model.Page{Limit: 1, Marker: l.Next}))
			if len(l.Items) != 1 || l.Items[0].ID != "pod2" || l.Next != "" {
				t.Errorf("last page %+v", l)
			}
			l = must[model.List[model.Pod]](t)(tx.ListPods(ctx, model.PodFilter{AZ: "az9"}, model.Page{}))
			if l.Items == nil || len(l.Items) != 0 {
				t.Errorf("an empty page has an empty, non-nil list: %#v", l.Items)
			}
			return nil
		})
	})
}

func TestNetworksAndSegments(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			n2 := model.Network{ID: "n2", Name: "red", Type: model.TypeSharedVLAN, AZHints: []string{"az1", "az2"}, External: true, CreatedAt: t0}
			if err := tx.InsertNetwork(ctx, n2); err != nil {
				return err
			}
			wantErr(ctx, t, tx, ErrDuplicate, func() error { return tx.InsertNetwork(ctx, n2) })
			if err := tx.SetSegmentation(ctx, "n2", 101, "physnet1"); err != nil {
				return err
			}
			if err := tx.SetGatewayPerPod(ctx, "n2", true); err != nil {
				return err
			}
			if err := tx.RenameNetwork(ctx, "n2", "green"); err != nil {
				return err
			}
			got := must[model.Network](t)(tx.GetNetwork(ctx, "n2"))
			if got.Name != "green" || got.SegmentationID != 101 || got.PhysicalNetwork != "physnet1" || !got.GatewayPerPod ||
				!got.External || len(got.AZHints) != 2 || got.AZHints[1] != "az2" || !got.CreatedAt.Equal(t0) {
				t.Errorf("n2 read back as %+v", got)
			}
			if _, err := tx.GetNetwork(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("get missing network: %v", err)
			}
			// Segments: duplicates refused, updates kept, deletes gone.
			wantErr(ctx, t, tx, ErrDuplicate, func() error {
				return tx.InsertSegment(ctx, model.Segment{NetworkID: "n1", PodID: "pod1", CreatedAt: t0})
			})
			if err := tx.InsertSegment(ctx, model.Segment{NetworkID: "n2", PodID: "pod3", CreatedAt: t0}); err != nil {
				return err
			}
			if err := tx.UpdateSegment(ctx, model.Segment{NetworkID: "n2", PodID: "pod3", NetworkType: "vlan", SegmentationID: 7, PhysicalNetwork: "phys#pod3"}); err != nil {
				return err
			}
			segs := must[[]model.Segment](t)(tx.Segments(ctx, "n2"))
			if len(segs) != 1 || segs[0].NetworkType != "vlan" || segs[0].SegmentationID != 7 || segs[0].PhysicalNetwork != "phys#pod3" {
				t.Errorf("n2 segments %+v", segs)
			}
			return tx.DeleteSegment(ctx, "n2", "pod3")
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			segs := must[[]model.Segment](t)(tx.SegmentsOf(ctx, []string{"n2", "n1"}))
			if len(segs) != 2 || segs[0].PodID != "pod1" || segs[1].PodID != "pod2" {
				t.Errorf("segments of n1, n2: %+v", segs)
			}
			for _, c := range []struct {
				f    model.NetworkFilter
				want []string
			}{{model.NetworkFilter{}, []string{"n1", "n2"}}, {model.NetworkFilter{Name: "green"}, []string{"n2"}}, {model.NetworkFilter{Type: model.TypeSharedVXLAN}, []string{"n1"}},
				{model.NetworkFilter{Name: "blue", Type: model.TypeSharedVLAN}, []string{}}, {model.NetworkFilter{ProjectIDs: []string{"p9"}}, []string{}}} {
				f, want := c.f, c.want
				l := must[model.List[model.Network]](t)(tx.ListNetworks(ctx, f, model.Page{}))
				if len(l.Items) != len(want) {
					t.Errorf("filter %+v: %d networks, want %v", f, len(l.Items), want)
					continue
				}
				for i, id := range want {
					if l.Items[i].ID != id {
						t.Errorf("filter %+v: item %d is %s, want %s", f, i, l.Items[i].ID, id)
					}
				}
			}
			return nil
		})
		// A network with segments goes with them; one with a subnet is
		// still referenced.
		write(t, s, func(ctx context.Context, tx *Tx) error {
			if err := tx.InsertSubnet(ctx, model.Subnet{ID: "s1", NetworkID: "n2", CIDR: "10.0.0.0/24", CreatedAt: t0}); err != nil {
				return err
			}
			wantErr(ctx, t, tx, ErrReferenced, func() error { return tx.DeleteNetwork(ctx, "n2") })
			if err := tx.DeleteSubnetsOf(ctx, "n2"); err != nil {
				return err
			}
			if err := tx.DeleteNetwork(ctx, "n2"); err != nil {
				return err
			}
			wantErr(ctx, t, tx, ErrNotFound, func() error { return tx.DeleteNetwork(ctx, "n2") })
			return tx.DeleteNetwork(ctx, "n1")
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			if segs := must[[]model.Segment](t)(tx.SegmentsOf(ctx, []string{"n1"})); len(segs) != 0 {
				t.Errorf("segments outlived their network: %+v", segs)
			}
			return nil
		})
	})
}

func TestAllocations(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			seed(ctx, t, tx)
			for _, id := range []string{"a", "b"} {
				if err := tx.InsertNetwork(ctx, model.Network{ID: id, Type: model.TypeSharedVLAN, AZHints: []string{}, CreatedAt: t0}); err != nil {
					return err
				}
			}
			// The lowest free id, skipping one reserved in the middle.
			if err := tx.Reserve(ctx, "vlan:p", 11, "a"); err != nil {
				return err
			}
			wantErr(ctx, t, tx, ErrDuplicate, func() error { return tx.Reserve(ctx, "vlan:p", 11, "b") })
			for _, want := range []int{10, 12, 0} {
				if got := must[int](t)(tx.Allocate(ctx, "vlan:p", 10, 12, "b")); got != want {
					t.Errorf("allocate in 10-12: %d, want %d", got, want)
				}
			}
			// Pools are apart.
			if got := must[int](t)(tx.Allocate(ctx, "vni", 10, 12, "a")); got != 10 {
				t.Errorf("allocate in another pool: %d, want 10", got)
			}
			if owner := must[string](t)(tx.AllocationOwner(ctx, "vlan:p", 12)); owner != "b" {
				t.Errorf("owner of 12: %q", owner)
			}
			if owner := must[string](t)(tx.AllocationOwner(ctx, "vlan:p", 99)); owner != "" {
				t.Errorf("owner of a free id: %q", owner)
			}
			// A deleted network's ids are free again.
			return tx.DeleteNetwork(ctx, "b")
		})
		write(t, s, func(ctx context.Context, tx *Tx) error {
			if got := must[int](t)(tx.Allocate(ctx, "vlan:p", 10, 12, "a")); got != 10 {
				t.Errorf("allocate after delete: %d, want 10", got)
			}
			return nil
		})
	})
}
