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
	_, err := t.exec(ctx, `INSERT INTO networks (id, name, type, az_hints, external, segmentation_id, physical_network, created_at, managed_by, project_id, shared) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		n.ID, n.Name, n.Type, jsonList(n.AZHints), boolInt(n.External), n.SegmentationID, n.PhysicalNetwork, micros(n.CreatedAt), n.ManagedBy, n.ProjectID, boolInt(n.Shared))
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
	t.record(id, "")
	return nil
}

// RenameNetwork changes a network's name.
func (t *Tx) RenameNetwork(ctx context.Context, id, name string) error {
	if _, err := t.exec(ctx, `UPDATE networks SET name = ? WHERE id = ?`, name, id); err != nil {
		return fmt.Errorf("rename network %s: %w", id, err)
	}
	t.record(id, "")
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
	t.record(id, "")
	return nil
}

// networkSelect reads networks with their options (a row only when set).
const networkSelect = `SELECT n.id, n.name, n.type, n.az_hints, n.external, n.segmentation_id, n.physical_network, n.created_at,
	COALESCE(o.gateway_per_pod, 0), n.managed_by, n.project_id, n.shared FROM networks n LEFT JOIN network_options o ON o.network_id = n.id`

func scanNetwork(s interface{ Scan(...any) error }) (model.Network, error) {
	var n model.Network
	var hints string
	var ext, perPod, shared int
	var created int64
	if err := s.Scan(&n.ID, &n.Name, &n.Type, &hints, &ext, &n.SegmentationID, &n.PhysicalNetwork, &created, &perPod, &n.ManagedBy, &n.ProjectID, &shared); err != nil {
		return n, err
	}
	n.External, n.GatewayPerPod, n.Shared = ext != 0, perPod != 0, shared != 0
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
	if f.ManagedBy != "" {
		where, args = append(where, "managed_by = ?"), append(args, f.ManagedBy)
	}
	where, args = projectClause(where, args, f.ProjectIDs)
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

// projectClause narrows a list to projects (none: no narrowing).
func projectClause(where []string, args []any, projects []string) ([]string, []any) {
	if len(projects) == 0 {
		return where, args
	}
	where = append(where, "project_id IN ("+placeholders(len(projects))+")")
	for _, p := range projects {
		args = append(args, p)
	}
	return where, args
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

const segmentCols = `network_id, pod_id, network_type, segmentation_id, physical_network, created_at, pod_side`

func scanSegment(s interface{ Scan(...any) error }) (model.Segment, error) {
	var g model.Segment
	var created int64
	var podSide string
	err := s.Scan(&g.NetworkID, &g.PodID, &g.NetworkType, &g.SegmentationID, &g.PhysicalNetwork, &created, &podSide)
	g.CreatedAt = fromMicros(created)
	if err == nil && podSide != "" {
		if jerr := json.Unmarshal([]byte(podSide), &g.PodSide); jerr != nil {
			err = fmt.Errorf("pod side of segment %s/%s: %w", g.NetworkID, g.PodID, jerr)
		}
	}
	return g, err
}

func encodePodSide(p model.PodSide) string {
	if p.Empty() {
		return ""
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// InsertSegment adds the segment of a network in a pod; ErrDuplicate if one exists.
func (t *Tx) InsertSegment(ctx context.Context, g model.Segment) error {
	_, err := t.exec(ctx, `INSERT INTO segments (`+segmentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		g.NetworkID, g.PodID, g.NetworkType, g.SegmentationID, g.PhysicalNetwork, micros(g.CreatedAt), encodePodSide(g.PodSide))
	if err != nil {
		return fmt.Errorf("insert segment %s/%s: %w", g.NetworkID, g.PodID, err)
	}
	t.record(g.NetworkID, "")
	return nil
}

// UpdateSegment sets the bottom segment of a network in a pod.
func (t *Tx) UpdateSegment(ctx context.Context, g model.Segment) error {
	_, err := t.exec(ctx, `UPDATE segments SET network_type = ?, segmentation_id = ?, physical_network = ? WHERE network_id = ? AND pod_id = ?`,
		g.NetworkType, g.SegmentationID, g.PhysicalNetwork, g.NetworkID, g.PodID)
	if err != nil {
		return fmt.Errorf("update segment %s/%s: %w", g.NetworkID, g.PodID, err)
	}
	t.record(g.NetworkID, "")
	return nil
}

// UpdateSegmentPodSide sets the pod side of a network's segment in a pod.
func (t *Tx) UpdateSegmentPodSide(ctx context.Context, networkID, podID string, p model.PodSide) error {
	_, err := t.exec(ctx, `UPDATE segments SET pod_side = ? WHERE network_id = ? AND pod_id = ?`, encodePodSide(p), networkID, podID)
	if err != nil {
		return fmt.Errorf("update pod side of segment %s/%s: %w", networkID, podID, err)
	}
	t.record(networkID, "")
	return nil
}

// DeleteSegment removes the segment of a network in a pod.
func (t *Tx) DeleteSegment(ctx context.Context, networkID, podID string) error {
	if _, err := t.exec(ctx, `DELETE FROM segments WHERE network_id = ? AND pod_id = ?`, networkID, podID); err != nil {
		return fmt.Errorf("delete segment %s/%s: %w", networkID, podID, err)
	}
	t.record(networkID, "")
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
