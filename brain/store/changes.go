package store

import (
	"context"
	"fmt"
	"strings"
)

// Revision returns the latest committed revision.
func (t *Tx) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := t.queryRow(ctx, `SELECT value FROM counters WHERE name = 'revision'`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

// ChangeSet is what the change log holds between two revisions.
type ChangeSet struct {
	// Networks whose row, segments or subnets changed.
	Networks []string
	// Ports that changed (inserted, updated or deleted), by id.
	Ports []string
	// Pods is true when a change touched every pod's state (AllNetworks):
	// a pod's row or a registered gateway's claim changed.
	Pods bool
}

// Changes lists what changed after since up to and including upTo. Expired
// is true when the change log no longer reaches back to since; the caller
// must then read everything again.
func (t *Tx) Changes(ctx context.Context, since, upTo int64) (cs ChangeSet, expired bool, err error) {
	var compacted int64
	if err := t.queryRow(ctx, `SELECT value FROM counters WHERE name = 'compacted'`).Scan(&compacted); err != nil {
		return cs, false, fmt.Errorf("read compaction mark: %w", err)
	}
	if since < compacted {
		return cs, true, nil
	}
	rows, err := t.query(ctx, `SELECT DISTINCT network_id, port_id FROM changes WHERE revision > ? AND revision <= ?`, since, upTo)
	if err != nil {
		return cs, false, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var network, port string
		if err := rows.Scan(&network, &port); err != nil {
			return cs, false, fmt.Errorf("read changes: %w", err)
		}
		switch {
		case network == AllNetworks:
			cs.Pods = true
		case port != "":
			cs.Ports = append(cs.Ports, port)
		default:
			cs.Networks = append(cs.Networks, network)
		}
	}
	return cs, false, rows.Err()
}

// Compact drops change rows older than keepFrom; watchers behind it relist.
func (t *Tx) Compact(ctx context.Context, keepFrom int64) error {
	if _, err := t.exec(ctx, `DELETE FROM changes WHERE revision <= ?`, keepFrom); err != nil {
		return fmt.Errorf("compact changes: %w", err)
	}
	if _, err := t.exec(ctx, `UPDATE counters SET value = ? WHERE name = 'compacted' AND value < ?`, keepFrom, keepFrom); err != nil {
		return fmt.Errorf("compact changes: %w", err)
	}
	return nil
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

func anys(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
