package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain/model"
)

// TestFilteredPagesWalkAnIndex: on SQLite a page of a list filtered by
// network, pod or type is read from an index in id order (no sort of the
// filtered subset), so a full walk is linear in the rows.
func TestFilteredPagesWalkAnIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "brain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		table  string
		where  []string
		marker bool
	}{
		{"ports", []string{"network_id = ?"}, true},
		{"ports", []string{"pod_id = ?"}, true},
		{"ports", []string{"network_id = ?", "pod_id = ?"}, true},
		{"ports", []string{"network_id = ?"}, false},
		{"networks", []string{"type = ?"}, true},
		{"networks", []string{"name = ?"}, true},
		{"subnets", []string{"network_id = ?"}, true},
	} {
		pg := model.Page{Limit: 100}
		args := make([]any, len(c.where))
		for i := range args {
			args[i] = "x"
		}
		if c.marker {
			pg.Marker = "m"
		}
		q, args, _ := pageClause(pg, c.where, args)
		var plan []string
		err := s.Read(ctx, func(tx *Tx) error {
			rows, err := tx.query(ctx, `EXPLAIN QUERY PLAN SELECT id FROM `+c.table+q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					return err
				}
				plan = append(plan, detail)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(plan, "; ")
		if strings.Contains(got, "TEMP B-TREE") || !strings.Contains(got, "USING") {
			t.Errorf("%s%s: plan %q sorts or scans", c.table, q, got)
		}
		t.Logf("%s%s: %s", c.table, q, got)
	}
}
