package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/l2span/l2span/brain/model"
)

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
