package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/l2span/l2span/brain/model"
)

// The reads below return the rows a pod's projection (brain/state) needs,
// each in one query over a set of networks.

// NetworksInPod returns the networks with a segment in podID whose type is
// one of types, ordered by id; with only non-nil, just those among only.
func (t *Tx) NetworksInPod(ctx context.Context, podID string, types, only []string) ([]model.Network, error) {
	if (only != nil && len(only) == 0) || len(types) == 0 {
		return nil, nil
	}
	q := networkSelect + ` WHERE n.type IN (` + placeholders(len(types)) + `)
	AND EXISTS (SELECT 1 FROM segments s WHERE s.network_id = n.id AND s.pod_id = ?)`
	args := append(anys(types), podID)
	if only != nil {
		q += ` AND n.id IN (` + placeholders(len(only)) + `)`
		args = append(args, anys(only)...)
	}
	rows, err := t.query(ctx, q+` ORDER BY n.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("networks of pod %s: %w", podID, err)
	}
	out, err := collect(rows, scanNetwork)
	if err != nil {
		return nil, fmt.Errorf("networks of pod %s: %w", podID, err)
	}
	return out, nil
}

// SegmentsOf returns the segments of networks ids, ordered by network and pod.
func (t *Tx) SegmentsOf(ctx context.Context, ids []string) ([]model.Segment, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, `SELECT `+segmentCols+` FROM segments WHERE network_id IN (`+placeholders(len(ids))+`) ORDER BY network_id, pod_id`, anys(ids)...)
	if err != nil {
		return nil, fmt.Errorf("segments of %d networks: %w", len(ids), err)
	}
	out, err := collect(rows, scanSegment)
	if err != nil {
		return nil, fmt.Errorf("segments of %d networks: %w", len(ids), err)
	}
	return out, nil
}

// PortsOf returns the ports of networks ids bound outside exceptPod
// ("" for every pod), ordered by network and MAC.
func (t *Tx) PortsOf(ctx context.Context, ids []string, exceptPod string) ([]model.Port, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, `SELECT `+portCols+` FROM ports WHERE pod_id <> ? AND network_id IN (`+placeholders(len(ids))+`) ORDER BY network_id, mac`,
		append([]any{exceptPod}, anys(ids)...)...)
	if err != nil {
		return nil, fmt.Errorf("ports of %d networks: %w", len(ids), err)
	}
	out, err := collect(rows, scanPort)
	if err != nil {
		return nil, fmt.Errorf("ports of %d networks: %w", len(ids), err)
	}
	return out, nil
}

// SubnetsOf returns the subnets of networks ids, ordered by network and CIDR.
func (t *Tx) SubnetsOf(ctx context.Context, ids []string) ([]model.Subnet, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, `SELECT `+subnetCols+` FROM subnets WHERE network_id IN (`+placeholders(len(ids))+`) ORDER BY network_id, cidr`, anys(ids)...)
	if err != nil {
		return nil, fmt.Errorf("subnets of %d networks: %w", len(ids), err)
	}
	out, err := collect(rows, scanSubnet)
	if err != nil {
		return nil, fmt.Errorf("subnets of %d networks: %w", len(ids), err)
	}
	return out, nil
}

// PodsWithDVRBaseMAC returns the pods that have a dvr_base_mac, by id.
func (t *Tx) PodsWithDVRBaseMAC(ctx context.Context) ([]model.Pod, error) {
	rows, err := t.query(ctx, `SELECT `+podCols+` FROM pods WHERE dvr_base_mac <> '' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("dvr base macs: %w", err)
	}
	out, err := collect(rows, scanPod)
	if err != nil {
		return nil, fmt.Errorf("dvr base macs: %w", err)
	}
	return out, nil
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
