package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/l2span/l2span/brain/model"
)

// --- port IPs: one row per (network, IP), so an IP belongs to one port ---

// PortHoldingIP returns the id of the port of networkID that holds ip, or
// "" when none does. ip must be in its canonical form (netip.Addr.String).
func (t *Tx) PortHoldingIP(ctx context.Context, networkID, ip string) (string, error) {
	var id string
	err := t.queryRow(ctx, `SELECT port_id FROM port_ips WHERE network_id = ? AND ip = ?`, networkID, ip).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up IP %s of network %s: %w", ip, networkID, err)
	}
	return id, nil
}

// setPortIPs makes port_ips hold exactly p's IPs for p; ErrDuplicate when
// another port of the network holds one of them.
func (t *Tx) setPortIPs(ctx context.Context, p model.Port) error {
	if _, err := t.exec(ctx, `DELETE FROM port_ips WHERE port_id = ?`, p.ID); err != nil {
		return fmt.Errorf("clear IPs of port %s: %w", p.ID, err)
	}
	for _, ip := range p.IPs {
		if _, err := t.exec(ctx, `INSERT INTO port_ips (network_id, ip, port_id) VALUES (?, ?, ?)`, p.NetworkID, ip, p.ID); err != nil {
			return fmt.Errorf("record IP %s of port %s: %w", ip, p.ID, err)
		}
	}
	return nil
}

// GatewaysWithVTEP returns the gateways registered with vtep.
func (t *Tx) GatewaysWithVTEP(ctx context.Context, vtep string) ([]model.Gateway, error) {
	rows, err := t.query(ctx, `SELECT `+gatewayCols+` FROM gateways WHERE vtep = ? ORDER BY id`, vtep)
	if err != nil {
		return nil, fmt.Errorf("gateways with VTEP %s: %w", vtep, err)
	}
	gs, err := collect(rows, scanGateway)
	if err != nil {
		return nil, fmt.Errorf("gateways with VTEP %s: %w", vtep, err)
	}
	return gs, nil
}

// backfillPortIPs fills port_ips from the ports of a store made before it
// existed. An IP two ports already share stays with the first port (by id);
// the brain refuses such duplicates from now on.
func backfillPortIPs(ctx context.Context, tx *sql.Tx, d dialect) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, network_id, ips FROM ports ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read ports: %w", err)
	}
	type held struct{ port, network, ips string }
	var all []held
	for rows.Next() {
		var h held
		if err := rows.Scan(&h.port, &h.network, &h.ips); err != nil {
			rows.Close()
			return fmt.Errorf("read ports: %w", err)
		}
		all = append(all, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read ports: %w", err)
	}
	ins := `INSERT INTO port_ips (network_id, ip, port_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	if d == dialectPostgres {
		ins = `INSERT INTO port_ips (network_id, ip, port_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	}
	for _, h := range all {
		ips, err := parseList(h.ips)
		if err != nil {
			return fmt.Errorf("IPs of port %s: %w", h.port, err)
		}
		for _, ip := range ips {
			if _, err := tx.ExecContext(ctx, ins, h.network, ip, h.port); err != nil {
				return fmt.Errorf("record IP %s of port %s: %w", ip, h.port, err)
			}
		}
	}
	return nil
}
