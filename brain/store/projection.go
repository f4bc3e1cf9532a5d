package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/l2span/l2span/brain/model"
)

// The reads below return the rows a pod's projection (brain/state) needs,
// each in one query over a set of networks.

// SegmentsOf returns the segments of networks ids, ordered by network and pod.
func (t *Tx) SegmentsOf(ctx context.Context, ids []string) ([]model.Segment, error) {
	out, err := rowsOf(ctx, t, ids, `SELECT `+segmentCols+` FROM segments WHERE network_id IN (%s) ORDER BY network_id, pod_id`, scanSegment)
	if err != nil {
		return nil, fmt.Errorf("segments of %d networks: %w", len(ids), err)
	}
	return out, nil
}

// SubnetsOf returns the subnets of networks ids, ordered by network and CIDR.
func (t *Tx) SubnetsOf(ctx context.Context, ids []string) ([]model.Subnet, error) {
	out, err := rowsOf(ctx, t, ids, `SELECT `+subnetCols+` FROM subnets WHERE network_id IN (%s) ORDER BY network_id, cidr`, scanSubnet)
	if err != nil {
		return nil, fmt.Errorf("subnets of %d networks: %w", len(ids), err)
	}
	return out, nil
}

// rowsOf runs query (its IN list as %s) over ids in chunks, in id order, so
// any number of networks stays under the database's limit on parameters and
// the rows come out in the query's order overall.
func rowsOf[T any](ctx context.Context, t *Tx, ids []string, query string, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	sorted := slices.Sorted(slices.Values(ids))
	var out []T
	err := inChunks(sorted, func(ids []string) error {
		rows, err := t.query(ctx, fmt.Sprintf(query, placeholders(len(ids))), anys(ids)...)
		if err != nil {
			return err
		}
		got, err := collect(rows, scan)
		out = append(out, got...)
		return err
	})
	return out, err
}

// GatewayClaims returns every registered gateway's id, pod and VTEP (the
// other fields left zero), by id.
func (t *Tx) GatewayClaims(ctx context.Context) ([]model.Gateway, error) {
	rows, err := t.query(ctx, `SELECT id, pod_id, vtep FROM gateways ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("gateway claims: %w", err)
	}
	out, err := collect(rows, func(s interface{ Scan(...any) error }) (model.Gateway, error) {
		var g model.Gateway
		err := s.Scan(&g.ID, &g.PodID, &g.VTEP)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("gateway claims: %w", err)
	}
	return out, nil
}

// chunk is how many ids go into one IN (...) list.
const chunk = 500

// inChunks calls fn with ids in slices of at most chunk.
func inChunks(ids []string, fn func([]string) error) error {
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// NetworksByID returns the networks among ids that exist.
func (t *Tx) NetworksByID(ctx context.Context, ids []string) ([]model.Network, error) {
	var out []model.Network
	err := inChunks(ids, func(ids []string) error {
		rows, err := t.query(ctx, networkSelect+` WHERE n.id IN (`+placeholders(len(ids))+`)`, anys(ids)...)
		if err != nil {
			return fmt.Errorf("networks by id: %w", err)
		}
		got, err := collect(rows, scanNetwork)
		if err != nil {
			return fmt.Errorf("networks by id: %w", err)
		}
		out = append(out, got...)
		return nil
	})
	return out, err
}

// PortsByID returns the ports among ids that exist.
func (t *Tx) PortsByID(ctx context.Context, ids []string) ([]model.Port, error) {
	var out []model.Port
	err := inChunks(ids, func(ids []string) error {
		rows, err := t.query(ctx, `SELECT `+portCols+` FROM ports WHERE id IN (`+placeholders(len(ids))+`)`, anys(ids)...)
		if err != nil {
			return fmt.Errorf("ports by id: %w", err)
		}
		got, err := collect(rows, scanPort)
		if err != nil {
			return fmt.Errorf("ports by id: %w", err)
		}
		out = append(out, got...)
		return nil
	})
	return out, err
}

// EachOfTypes reads every network of the given types with its segments,
// subnets and ports: networks first, then fn gets each segment, subnet
// and port as it is scanned, so a caller building its own structures never
// holds the whole table twice.
func (t *Tx) EachOfTypes(ctx context.Context, types []string, nets func(model.Network), segs func(model.Segment),
	subnets func(model.Subnet), ports func(model.Port)) error {
	in := `(SELECT id FROM networks WHERE type IN (` + placeholders(len(types)) + `))`
	rows, err := t.query(ctx, networkSelect+` WHERE n.type IN (`+placeholders(len(types))+`)`, anys(types)...)
	if err != nil {
		return fmt.Errorf("load networks: %w", err)
	}
	if err := each(rows, scanNetwork, nets); err != nil {
		return fmt.Errorf("load networks: %w", err)
	}
	if rows, err = t.query(ctx, `SELECT `+segmentCols+` FROM segments WHERE network_id IN `+in, anys(types)...); err != nil {
		return fmt.Errorf("load segments: %w", err)
	}
	if err := each(rows, scanSegment, segs); err != nil {
		return fmt.Errorf("load segments: %w", err)
	}
	if rows, err = t.query(ctx, `SELECT `+subnetCols+` FROM subnets WHERE network_id IN `+in, anys(types)...); err != nil {
		return fmt.Errorf("load subnets: %w", err)
	}
	if err := each(rows, scanSubnet, subnets); err != nil {
		return fmt.Errorf("load subnets: %w", err)
	}
	if rows, err = t.query(ctx, `SELECT `+portCols+` FROM ports WHERE network_id IN `+in, anys(types)...); err != nil {
		return fmt.Errorf("load ports: %w", err)
	}
	if err := each(rows, scanPort, ports); err != nil {
		return fmt.Errorf("load ports: %w", err)
	}
	return nil
}

func each[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (T, error), fn func(T)) error {
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		fn(v)
	}
	return rows.Err()
}

// AllPods returns every pod, by id.
func (t *Tx) AllPods(ctx context.Context) ([]model.Pod, error) {
	rows, err := t.query(ctx, `SELECT `+podCols+` FROM pods ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("pods: %w", err)
	}
	out, err := collect(rows, scanPod)
	if err != nil {
		return nil, fmt.Errorf("pods: %w", err)
	}
	return out, nil
}
