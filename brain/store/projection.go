package store

import (
	"context"
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
