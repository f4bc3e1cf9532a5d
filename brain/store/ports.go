package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/l2span/l2span/brain/model"
)

// --- subnets ---

const subnetCols = `id, network_id, cidr, gateway_ip, created_at`

func scanSubnet(s interface{ Scan(...any) error }) (model.Subnet, error) {
	var n model.Subnet
	var created int64
	err := s.Scan(&n.ID, &n.NetworkID, &n.CIDR, &n.GatewayIP, &created)
	n.CreatedAt = fromMicros(created)
	return n, err
}

// InsertSubnet adds a subnet.
func (t *Tx) InsertSubnet(ctx context.Context, n model.Subnet) error {
	_, err := t.exec(ctx, `INSERT INTO subnets (`+subnetCols+`) VALUES (?, ?, ?, ?, ?)`,
		n.ID, n.NetworkID, n.CIDR, n.GatewayIP, micros(n.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert subnet %s: %w", n.ID, err)
	}
	t.record(n.NetworkID, "")
	return nil
}

// DeleteSubnet removes a subnet.
func (t *Tx) DeleteSubnet(ctx context.Context, id string) error {
	r, err := t.exec(ctx, `DELETE FROM subnets WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete subnet %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("subnet %s: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteSubnetsOf removes every subnet of a network.
func (t *Tx) DeleteSubnetsOf(ctx context.Context, networkID string) error {
	if _, err := t.exec(ctx, `DELETE FROM subnets WHERE network_id = ?`, networkID); err != nil {
		return fmt.Errorf("delete subnets of %s: %w", networkID, err)
	}
	t.record(networkID, "")
	return nil
}

// GetSubnet returns a subnet or ErrNotFound.
func (t *Tx) GetSubnet(ctx context.Context, id string) (model.Subnet, error) {
	n, err := scanSubnet(t.queryRow(ctx, `SELECT `+subnetCols+` FROM subnets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("subnet %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("get subnet %s: %w", id, err)
	}
	return n, nil
}

// ListSubnets returns a page of subnets.
func (t *Tx) ListSubnets(ctx context.Context, f model.SubnetFilter, p model.Page) (model.List[model.Subnet], error) {
	var where []string
	var args []any
	if f.NetworkID != "" {
		where, args = append(where, "network_id = ?"), append(args, f.NetworkID)
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, `SELECT `+subnetCols+` FROM subnets`+q, args...)
	if err != nil {
		return model.List[model.Subnet]{}, fmt.Errorf("list subnets: %w", err)
	}
	items, err := collect(rows, scanSubnet)
	if err != nil {
		return model.List[model.Subnet]{}, fmt.Errorf("list subnets: %w", err)
	}
	return pageOf(items, limit, func(n model.Subnet) string { return n.ID }), nil
}

// --- ports ---

const portCols = `id, network_id, pod_id, mac, ips, device_owner, created_at, mobility_seq, duplicate`

func scanPort(s interface{ Scan(...any) error }) (model.Port, error) {
	var p model.Port
	var ips string
	var created int64
	var dup int
	if err := s.Scan(&p.ID, &p.NetworkID, &p.PodID, &p.MAC, &ips, &p.DeviceOwner, &created, &p.MobilitySeq, &dup); err != nil {
		return p, err
	}
	p.Duplicate = dup != 0
	p.CreatedAt = fromMicros(created)
	var err error
	p.IPs, err = parseList(ips)
	return p, err
}

// ErrDuplicateID is an insert whose primary key exists (a wrapped ErrDuplicate).
var ErrDuplicateID = fmt.Errorf("%w id", ErrDuplicate)

// InsertPort adds a port; ErrDuplicateID for an existing id, ErrDuplicate for
// a MAC already in the network.
func (t *Tx) InsertPort(ctx context.Context, p model.Port) error {
	_, err := t.exec(ctx, `INSERT INTO ports (`+portCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.NetworkID, p.PodID, p.MAC, jsonList(p.IPs), p.DeviceOwner, micros(p.CreatedAt), p.MobilitySeq, boolInt(p.Duplicate))
	if err != nil {
		// Which constraint, from the driver's message: a lookup after the
		// failure would run in an aborted PostgreSQL transaction.
		if errors.Is(err, ErrDuplicate) && (strings.Contains(err.Error(), "ports.id") || strings.Contains(err.Error(), "ports_pkey")) {
			return fmt.Errorf("insert port %s: %w: %w", p.ID, ErrDuplicateID, err)
		}
		return fmt.Errorf("insert port %s: %w", p.ID, err)
	}
	t.record(p.NetworkID, p.ID)
	return nil
}

// UpdatePort writes a port's pod, IPs, mobility sequence and duplicate mark.
func (t *Tx) UpdatePort(ctx context.Context, p model.Port) error {
	_, err := t.exec(ctx, `UPDATE ports SET pod_id = ?, ips = ?, mobility_seq = ?, duplicate = ? WHERE id = ?`,
		p.PodID, jsonList(p.IPs), p.MobilitySeq, boolInt(p.Duplicate), p.ID)
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.ID, err)
	}
	t.record(p.NetworkID, p.ID)
	return nil
}

// RecordMove remembers a port's move for duplicate detection.
func (t *Tx) RecordMove(ctx context.Context, portID, from, to string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO port_moves (port_id, at, from_pod, to_pod) VALUES (?, ?, ?, ?)`, portID, micros(at), from, to)
	if err != nil {
		return fmt.Errorf("record move of %s: %w", portID, err)
	}
	return nil
}

// MovesSince counts a port's moves at or after since, and forgets older ones.
func (t *Tx) MovesSince(ctx context.Context, portID string, since time.Time) (int, error) {
	if _, err := t.exec(ctx, `DELETE FROM port_moves WHERE port_id = ? AND at < ?`, portID, micros(since)); err != nil {
		return 0, fmt.Errorf("expire moves of %s: %w", portID, err)
	}
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM port_moves WHERE port_id = ?`, portID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count moves of %s: %w", portID, err)
	}
	return n, nil
}

// ClearMoves forgets a port's moves.
func (t *Tx) ClearMoves(ctx context.Context, portID string) error {
	if _, err := t.exec(ctx, `DELETE FROM port_moves WHERE port_id = ?`, portID); err != nil {
		return fmt.Errorf("clear moves of %s: %w", portID, err)
	}
	return nil
}

// CountDuplicates counts ports frozen as duplicates.
func (t *Tx) CountDuplicates(ctx context.Context) (int, error) {
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM ports WHERE duplicate <> 0`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count duplicates: %w", err)
	}
	return n, nil
}

// DeletePort removes a port.
func (t *Tx) DeletePort(ctx context.Context, id string) error {
	var network string
	err := t.queryRow(ctx, `DELETE FROM ports WHERE id = ? RETURNING network_id`, id).Scan(&network)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("port %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete port %s: %w", id, classify(err))
	}
	t.record(network, id)
	return nil
}

// GetPort returns a port or ErrNotFound.
func (t *Tx) GetPort(ctx context.Context, id string) (model.Port, error) {
	p, err := scanPort(t.queryRow(ctx, `SELECT `+portCols+` FROM ports WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("port %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get port %s: %w", id, err)
	}
	return p, nil
}

// ListPorts returns a page of ports.
func (t *Tx) ListPorts(ctx context.Context, f model.PortFilter, p model.Page) (model.List[model.Port], error) {
	var where []string
	var args []any
	if f.NetworkID != "" {
		where, args = append(where, "network_id = ?"), append(args, f.NetworkID)
	}
	if f.PodID != "" {
		where, args = append(where, "pod_id = ?"), append(args, f.PodID)
	}
	if f.MAC != "" {
		where, args = append(where, "mac = ?"), append(args, f.MAC)
	}
	if f.Duplicate {
		where = append(where, "duplicate <> 0")
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, `SELECT `+portCols+` FROM ports`+q, args...)
	if err != nil {
		return model.List[model.Port]{}, fmt.Errorf("list ports: %w", err)
	}
	items, err := collect(rows, scanPort)
	if err != nil {
		return model.List[model.Port]{}, fmt.Errorf("list ports: %w", err)
	}
	return pageOf(items, limit, func(p model.Port) string { return p.ID }), nil
}

// CountPorts counts ports: a network's when networkID is set, in one pod
// when podID is set.
func (t *Tx) CountPorts(ctx context.Context, networkID, podID string) (int, error) {
	q, args := `SELECT COUNT(*) FROM ports WHERE 1 = 1`, []any{}
	if networkID != "" {
		q, args = q+` AND network_id = ?`, append(args, networkID)
	}
	if podID != "" {
		q, args = q+` AND pod_id = ?`, append(args, podID)
	}
	var n int
	if err := t.queryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count ports of network %q pod %q: %w", networkID, podID, err)
	}
	return n, nil
}
