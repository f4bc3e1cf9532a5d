package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/l2span/l2span/brain/model"
)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func parseList(s string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("decode list %q: %w", s, err)
	}
	if v == nil {
		v = []string{}
	}
	return v, nil
}

// pageClause is the WHERE, ORDER and LIMIT of page p of a list ordered by id.
func pageClause(p model.Page, where []string, args []any) (string, []any, int) {
	if p.Marker != "" {
		where = append(where, "id > ?")
		args = append(args, p.Marker)
	}
	q := ""
	if len(where) > 0 {
		q = " WHERE " + strings.Join(where, " AND ")
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	// One extra row tells whether there is a next page.
	q += fmt.Sprintf(" ORDER BY id LIMIT %d", limit+1)
	return q, args, limit
}

func pageOf[T any](items []T, limit int, id func(T) string) model.List[T] {
	out := model.List[T]{Items: items}
	if len(items) > limit {
		out.Items = items[:limit]
		out.Next = id(items[limit-1])
	}
	if out.Items == nil {
		out.Items = []T{}
	}
	return out
}

// --- pods ---

// InsertPod adds a pod; ErrDuplicate if the id exists.
func (t *Tx) InsertPod(ctx context.Context, p model.Pod) error {
	_, err := t.exec(ctx, `INSERT INTO pods (id, az, region, dvr_base_mac, neutron_url, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		p.ID, p.AZ, p.Region, p.DVRBaseMAC, p.NeutronURL, micros(p.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert pod %s: %w", p.ID, err)
	}
	return nil
}

// UpdatePod replaces a pod's mutable fields.
func (t *Tx) UpdatePod(ctx context.Context, p model.Pod) error {
	_, err := t.exec(ctx, `UPDATE pods SET region = ?, dvr_base_mac = ?, neutron_url = ? WHERE id = ?`,
		p.Region, p.DVRBaseMAC, p.NeutronURL, p.ID)
	if err != nil {
		return fmt.Errorf("update pod %s: %w", p.ID, err)
	}
	return nil
}

// DeletePod removes a pod; ErrReferenced while anything still lives in it.
func (t *Tx) DeletePod(ctx context.Context, id string) error {
	r, err := t.exec(ctx, `DELETE FROM pods WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete pod %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("pod %s: %w", id, ErrNotFound)
	}
	return nil
}

const podCols = `id, az, region, dvr_base_mac, neutron_url, created_at`

func scanPod(s interface{ Scan(...any) error }) (model.Pod, error) {
	var p model.Pod
	var created int64
	err := s.Scan(&p.ID, &p.AZ, &p.Region, &p.DVRBaseMAC, &p.NeutronURL, &created)
	p.CreatedAt = fromMicros(created)
	return p, err
}

// GetPod returns a pod or ErrNotFound.
func (t *Tx) GetPod(ctx context.Context, id string) (model.Pod, error) {
	p, err := scanPod(t.queryRow(ctx, `SELECT `+podCols+` FROM pods WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("pod %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get pod %s: %w", id, err)
	}
	return p, nil
}

// ListPods returns a page of pods.
func (t *Tx) ListPods(ctx context.Context, f model.PodFilter, p model.Page) (model.List[model.Pod], error) {
	var where []string
	var args []any
	if f.AZ != "" {
		where, args = append(where, "az = ?"), append(args, f.AZ)
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, `SELECT `+podCols+` FROM pods`+q, args...)
	if err != nil {
		return model.List[model.Pod]{}, fmt.Errorf("list pods: %w", err)
	}
	items, err := collect(rows, scanPod)
	if err != nil {
		return model.List[model.Pod]{}, fmt.Errorf("list pods: %w", err)
	}
	return pageOf(items, limit, func(p model.Pod) string { return p.ID }), nil
}

// AZExists reports whether any pod is in az.
func (t *Tx) AZExists(ctx context.Context, az string) (bool, error) {
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM pods WHERE az = ?`, az).Scan(&n); err != nil {
		return false, fmt.Errorf("check az %s: %w", az, err)
	}
	return n > 0, nil
}

func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// --- networks ---

// InsertNetwork adds a network row (allocations are separate).
func (t *Tx) InsertNetwork(ctx context.Context, n model.Network) error {
	_, err := t.exec(ctx, `INSERT INTO networks (id, name, type, az_hints, external, segmentation_id, physical_network, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		n.ID, n.Name, n.Type, jsonList(n.AZHints), boolInt(n.External), n.SegmentationID, n.PhysicalNetwork, micros(n.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert network %s: %w", n.ID, err)
	}
	return nil
}

// SetSegmentation records the segmentation id (and, for a VLAN, the
// physical network) allocated to a network.
func (t *Tx) SetSegmentation(ctx context.Context, id string, segmentationID int, physnet string) error {
	if _, err := t.exec(ctx, `UPDATE networks SET segmentation_id = ?, physical_network = ? WHERE id = ?`, segmentationID, physnet, id); err != nil {
		return fmt.Errorf("store segmentation id of %s: %w", id, err)
	}
	return nil
}

// RenameNetwork changes a network's name.
func (t *Tx) RenameNetwork(ctx context.Context, id, name string) error {
	if _, err := t.exec(ctx, `UPDATE networks SET name = ? WHERE id = ?`, name, id); err != nil {
		return fmt.Errorf("rename network %s: %w", id, err)
	}
	return nil
}

// DeleteNetwork removes a network, its segments and its allocations;
// ErrReferenced while ports or subnets remain.
func (t *Tx) DeleteNetwork(ctx context.Context, id string) error {
	r, err := t.exec(ctx, `DELETE FROM networks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete network %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("network %s: %w", id, ErrNotFound)
	}
	return nil
}

// networkSelect reads networks with their options (a row only when set).
const networkSelect = `SELECT n.id, n.name, n.type, n.az_hints, n.external, n.segmentation_id, n.physical_network, n.created_at,
	COALESCE(o.gateway_per_pod, 0) FROM networks n LEFT JOIN network_options o ON o.network_id = n.id`

func scanNetwork(s interface{ Scan(...any) error }) (model.Network, error) {
	var n model.Network
	var hints string
	var ext, perPod int
	var created int64
	if err := s.Scan(&n.ID, &n.Name, &n.Type, &hints, &ext, &n.SegmentationID, &n.PhysicalNetwork, &created, &perPod); err != nil {
		return n, err
	}
	n.External, n.GatewayPerPod = ext != 0, perPod != 0
	n.CreatedAt = fromMicros(created)
	var err error
	n.AZHints, err = parseList(hints)
	return n, err
}

// GetNetwork returns a network (without segments) or ErrNotFound.
func (t *Tx) GetNetwork(ctx context.Context, id string) (model.Network, error) {
	n, err := scanNetwork(t.queryRow(ctx, networkSelect+` WHERE n.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("network %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("get network %s: %w", id, err)
	}
	return n, nil
}

// ListNetworks returns a page of networks (without segments).
func (t *Tx) ListNetworks(ctx context.Context, f model.NetworkFilter, p model.Page) (model.List[model.Network], error) {
	var where []string
	var args []any
	if f.Name != "" {
		where, args = append(where, "name = ?"), append(args, f.Name)
	}
	if f.Type != "" {
		where, args = append(where, "type = ?"), append(args, f.Type)
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, networkSelect+q, args...)
	if err != nil {
		return model.List[model.Network]{}, fmt.Errorf("list networks: %w", err)
	}
	items, err := collect(rows, scanNetwork)
	if err != nil {
		return model.List[model.Network]{}, fmt.Errorf("list networks: %w", err)
	}
	return pageOf(items, limit, func(n model.Network) string { return n.ID }), nil
}

// --- allocations ---

// Allocate takes the lowest free id of pool within [min, max] for networkID.
// It returns 0 when the range is exhausted. Writers are serialized, so the
// free id found is still free at insert.
func (t *Tx) Allocate(ctx context.Context, pool string, min, max int, networkID string) (int, error) {
	var id sql.NullInt64
	err := t.queryRow(ctx, `
SELECT MIN(c) FROM (
	SELECT CAST(? AS INTEGER) AS c
	UNION ALL
	SELECT a.id + 1 FROM allocations a WHERE a.pool = ? AND a.id >= ? AND a.id < ?
) cand
WHERE NOT EXISTS (SELECT 1 FROM allocations b WHERE b.pool = ? AND b.id = cand.c)`,
		min, pool, min, max, pool).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("find free id in %s: %w", pool, err)
	}
	if !id.Valid {
		return 0, nil
	}
	if err := t.Reserve(ctx, pool, int(id.Int64), networkID); err != nil {
		return 0, err
	}
	return int(id.Int64), nil
}

// Reserve takes a specific id of pool; ErrDuplicate if it is taken.
func (t *Tx) Reserve(ctx context.Context, pool string, id int, networkID string) error {
	if _, err := t.exec(ctx, `INSERT INTO allocations (pool, id, network_id) VALUES (?, ?, ?)`, pool, id, networkID); err != nil {
		return fmt.Errorf("reserve %s id %d: %w", pool, id, err)
	}
	return nil
}

// AllocationOwner returns the network holding id in pool, or "".
func (t *Tx) AllocationOwner(ctx context.Context, pool string, id int) (string, error) {
	var owner string
	err := t.queryRow(ctx, `SELECT network_id FROM allocations WHERE pool = ? AND id = ?`, pool, id).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("allocation owner %s/%d: %w", pool, id, err)
	}
	return owner, nil
}

// --- segments ---

const segmentCols = `network_id, pod_id, network_type, segmentation_id, physical_network, created_at`

func scanSegment(s interface{ Scan(...any) error }) (model.Segment, error) {
	var g model.Segment
	var created int64
	err := s.Scan(&g.NetworkID, &g.PodID, &g.NetworkType, &g.SegmentationID, &g.PhysicalNetwork, &created)
	g.CreatedAt = fromMicros(created)
	return g, err
}

// InsertSegment adds the segment of a network in a pod; ErrDuplicate if one exists.
func (t *Tx) InsertSegment(ctx context.Context, g model.Segment) error {
	_, err := t.exec(ctx, `INSERT INTO segments (`+segmentCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		g.NetworkID, g.PodID, g.NetworkType, g.SegmentationID, g.PhysicalNetwork, micros(g.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert segment %s/%s: %w", g.NetworkID, g.PodID, err)
	}
	return nil
}

// UpdateSegment sets the bottom segment of a network in a pod.
func (t *Tx) UpdateSegment(ctx context.Context, g model.Segment) error {
	_, err := t.exec(ctx, `UPDATE segments SET network_type = ?, segmentation_id = ?, physical_network = ? WHERE network_id = ? AND pod_id = ?`,
		g.NetworkType, g.SegmentationID, g.PhysicalNetwork, g.NetworkID, g.PodID)
	if err != nil {
		return fmt.Errorf("update segment %s/%s: %w", g.NetworkID, g.PodID, err)
	}
	return nil
}

// DeleteSegment removes the segment of a network in a pod.
func (t *Tx) DeleteSegment(ctx context.Context, networkID, podID string) error {
	if _, err := t.exec(ctx, `DELETE FROM segments WHERE network_id = ? AND pod_id = ?`, networkID, podID); err != nil {
		return fmt.Errorf("delete segment %s/%s: %w", networkID, podID, err)
	}
	return nil
}

// Segments returns a network's segments ordered by pod.
func (t *Tx) Segments(ctx context.Context, networkID string) ([]model.Segment, error) {
	rows, err := t.query(ctx, `SELECT `+segmentCols+` FROM segments WHERE network_id = ? ORDER BY pod_id`, networkID)
	if err != nil {
		return nil, fmt.Errorf("segments of %s: %w", networkID, err)
	}
	out, err := collect(rows, scanSegment)
	if err != nil {
		return nil, fmt.Errorf("segments of %s: %w", networkID, err)
	}
	return out, nil
}

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
	return nil
}

// UpdatePort writes a port's pod, IPs, mobility sequence and duplicate mark.
func (t *Tx) UpdatePort(ctx context.Context, p model.Port) error {
	_, err := t.exec(ctx, `UPDATE ports SET pod_id = ?, ips = ?, mobility_seq = ?, duplicate = ? WHERE id = ?`,
		p.PodID, jsonList(p.IPs), p.MobilitySeq, boolInt(p.Duplicate), p.ID)
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.ID, err)
	}
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
	r, err := t.exec(ctx, `DELETE FROM ports WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete port %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("port %s: %w", id, ErrNotFound)
	}
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

// --- gateways ---

const gatewayCols = `id, pod_id, vtep, backend, dvr_mac, populate_macs, revision, last_seen, status`

func scanGateway(s interface{ Scan(...any) error }) (model.Gateway, error) {
	var g model.Gateway
	var pop int
	var seen int64
	var status string
	err := s.Scan(&g.ID, &g.PodID, &g.VTEP, &g.Backend, &g.DVRMAC, &pop, &g.Revision, &seen, &status)
	g.PopulateMACs = pop != 0
	g.LastSeen = fromMicros(seen)
	if status != "" {
		g.Status = []byte(status)
	}
	return g, err
}

// UpsertGateway registers or refreshes a gateway.
func (t *Tx) UpsertGateway(ctx context.Context, g model.Gateway) error {
	status := string(g.Status)
	_, err := t.exec(ctx, `INSERT INTO gateways (`+gatewayCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET pod_id = excluded.pod_id, vtep = excluded.vtep, backend = excluded.backend,
	dvr_mac = excluded.dvr_mac, populate_macs = excluded.populate_macs, revision = excluded.revision, last_seen = excluded.last_seen,
	status = excluded.status`,
		g.ID, g.PodID, g.VTEP, g.Backend, g.DVRMAC, boolInt(g.PopulateMACs), g.Revision, micros(g.LastSeen), status)
	if err != nil {
		return fmt.Errorf("upsert gateway %s: %w", g.ID, err)
	}
	return nil
}

// DeleteGateway removes a gateway.
func (t *Tx) DeleteGateway(ctx context.Context, id string) error {
	r, err := t.exec(ctx, `DELETE FROM gateways WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete gateway %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("gateway %s: %w", id, ErrNotFound)
	}
	return nil
}

// GetGateway returns a gateway or ErrNotFound.
func (t *Tx) GetGateway(ctx context.Context, id string) (model.Gateway, error) {
	g, err := scanGateway(t.queryRow(ctx, `SELECT `+gatewayCols+` FROM gateways WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, fmt.Errorf("gateway %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return g, fmt.Errorf("get gateway %s: %w", id, err)
	}
	return g, nil
}

// ListGateways returns a page of gateways.
func (t *Tx) ListGateways(ctx context.Context, f model.GatewayFilter, p model.Page) (model.List[model.Gateway], error) {
	var where []string
	var args []any
	if f.PodID != "" {
		where, args = append(where, "pod_id = ?"), append(args, f.PodID)
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, `SELECT `+gatewayCols+` FROM gateways`+q, args...)
	if err != nil {
		return model.List[model.Gateway]{}, fmt.Errorf("list gateways: %w", err)
	}
	items, err := collect(rows, scanGateway)
	if err != nil {
		return model.List[model.Gateway]{}, fmt.Errorf("list gateways: %w", err)
	}
	return pageOf(items, limit, func(g model.Gateway) string { return g.ID }), nil
}
