package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations run in order, each once, in its own transaction. Types are the
// common subset of SQLite and PostgreSQL: TEXT, INTEGER, BIGINT (timestamps
// are unix microseconds, booleans 0/1, lists JSON text).
var migrations = []string{
	1: `
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE pods (
	id           TEXT PRIMARY KEY,
	az           TEXT NOT NULL,
	region       TEXT NOT NULL DEFAULT '',
	dvr_base_mac TEXT NOT NULL DEFAULT '',
	neutron_url  TEXT NOT NULL DEFAULT '',
	created_at   BIGINT NOT NULL
);
CREATE INDEX pods_az ON pods (az);
CREATE TABLE networks (
	id               TEXT PRIMARY KEY,
	name             TEXT NOT NULL,
	type             TEXT NOT NULL,
	az_hints         TEXT NOT NULL,
	external         INTEGER NOT NULL DEFAULT 0,
	segmentation_id  INTEGER NOT NULL DEFAULT 0,
	physical_network TEXT NOT NULL DEFAULT '',
	created_at       BIGINT NOT NULL
);
CREATE TABLE allocations (
	pool       TEXT NOT NULL,
	id         INTEGER NOT NULL,
	network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
	PRIMARY KEY (pool, id)
);
CREATE INDEX allocations_network ON allocations (network_id);
CREATE TABLE segments (
	network_id       TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
	pod_id           TEXT NOT NULL REFERENCES pods (id),
	network_type     TEXT NOT NULL DEFAULT '',
	segmentation_id  INTEGER NOT NULL DEFAULT 0,
	physical_network TEXT NOT NULL DEFAULT '',
	created_at       BIGINT NOT NULL,
	PRIMARY KEY (network_id, pod_id)
);
CREATE INDEX segments_pod ON segments (pod_id);
CREATE TABLE subnets (
	id         TEXT PRIMARY KEY,
	network_id TEXT NOT NULL REFERENCES networks (id),
	cidr       TEXT NOT NULL,
	gateway_ip TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE INDEX subnets_network ON subnets (network_id);
CREATE TABLE ports (
	id           TEXT PRIMARY KEY,
	network_id   TEXT NOT NULL REFERENCES networks (id),
	pod_id       TEXT NOT NULL REFERENCES pods (id),
	mac          TEXT NOT NULL,
	ips          TEXT NOT NULL,
	device_owner TEXT NOT NULL DEFAULT '',
	created_at   BIGINT NOT NULL,
	UNIQUE (network_id, mac)
);
CREATE INDEX ports_network_pod ON ports (network_id, pod_id);
CREATE INDEX ports_pod ON ports (pod_id);
CREATE TABLE gateways (
	id            TEXT PRIMARY KEY,
	pod_id        TEXT NOT NULL REFERENCES pods (id),
	vtep          TEXT NOT NULL,
	backend       TEXT NOT NULL,
	dvr_mac       TEXT NOT NULL DEFAULT '',
	populate_macs INTEGER NOT NULL DEFAULT 1,
	revision      BIGINT NOT NULL DEFAULT 0,
	last_seen     BIGINT NOT NULL
);
CREATE INDEX gateways_pod ON gateways (pod_id);
CREATE TABLE changes (
	revision   BIGINT NOT NULL,
	network_id TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (revision, network_id)
);
`,
	2: `
ALTER TABLE ports ADD COLUMN mobility_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ports ADD COLUMN duplicate INTEGER NOT NULL DEFAULT 0;
CREATE TABLE port_moves (
	port_id  TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
	at       BIGINT NOT NULL,
	from_pod TEXT NOT NULL,
	to_pod   TEXT NOT NULL
);
CREATE INDEX port_moves_port ON port_moves (port_id, at);
`,
	3: `
CREATE TABLE jobs (
	id          TEXT PRIMARY KEY,
	type        TEXT NOT NULL,
	resource    TEXT NOT NULL,
	pod_id      TEXT NOT NULL DEFAULT '',
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	next_run_at BIGINT NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0,
	rerun       INTEGER NOT NULL DEFAULT 0,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	UNIQUE (type, resource, pod_id)
);
CREATE INDEX jobs_due ON jobs (state, next_run_at);
CREATE TABLE resource_routes (
	top_id        TEXT NOT NULL,
	pod_id        TEXT NOT NULL,
	resource_type TEXT NOT NULL,
	bottom_id     TEXT NOT NULL,
	network_id    TEXT NOT NULL DEFAULT '',
	created_at    BIGINT NOT NULL,
	PRIMARY KEY (top_id, pod_id, resource_type)
);
CREATE INDEX resource_routes_network ON resource_routes (network_id, pod_id);
`,
	4: `ALTER TABLE gateways ADD COLUMN status TEXT NOT NULL DEFAULT '';`,
	// Per-network options of the bottom automation (a row only when one is
	// set): gateway_per_pod gives each pod its own gateway IP.
	5: `
CREATE TABLE network_options (
	network_id      TEXT PRIMARY KEY REFERENCES networks (id) ON DELETE CASCADE,
	gateway_per_pod INTEGER NOT NULL DEFAULT 0
);
`,
	// Who owns a network: "neutron" for the ML2 driver's, so its full sync
	// never touches networks made by hand.
	6: `ALTER TABLE networks ADD COLUMN managed_by TEXT NOT NULL DEFAULT '';`,
	// The change log names the port that changed (port_id), so a watcher's
	// delta is that port, not its whole network; '' is the network's row,
	// segments or subnets (network_id '*': a pod).
	7: `
CREATE TABLE changes_v7 (
	revision   BIGINT NOT NULL,
	network_id TEXT NOT NULL,
	port_id    TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (revision, network_id, port_id)
);
INSERT INTO changes_v7 (revision, network_id, created_at) SELECT revision, network_id, created_at FROM changes;
DROP TABLE changes;
ALTER TABLE changes_v7 RENAME TO changes;
`,
	// Paging a filtered list walks an index in id order: each page costs
	// its own size, not the filtered subset's.
	8: `
CREATE INDEX ports_network_id ON ports (network_id, id);
CREATE INDEX ports_pod_id ON ports (pod_id, id);
CREATE INDEX ports_network_pod_id ON ports (network_id, pod_id, id);
DROP INDEX ports_network_pod;
DROP INDEX ports_pod;
CREATE INDEX networks_type_id ON networks (type, id);
CREATE INDEX networks_name_id ON networks (name, id);
CREATE INDEX subnets_network_id ON subnets (network_id, id);
DROP INDEX subnets_network;
`,
	// API tokens: the secret is kept only as its SHA-256.
	9: `
CREATE TABLE api_tokens (
	id          TEXT PRIMARY KEY,
	secret_hash TEXT NOT NULL,
	role        TEXT NOT NULL,
	pod_id      TEXT NOT NULL DEFAULT '',
	gateway_id  TEXT NOT NULL DEFAULT '',
	projects    TEXT NOT NULL DEFAULT '[]',
	description TEXT NOT NULL DEFAULT '',
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL DEFAULT 0,
	revoked_at  BIGINT NOT NULL DEFAULT 0
);
`,
	// Tenancy: the Neutron project of networks and ports; a shared network
	// takes ports of any project.
	10: `
ALTER TABLE networks ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ports ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
`,
	// An IP belongs to at most one port of a network (filled from the
	// ports' ips column by backfillPortIPs).
	11: `
CREATE TABLE port_ips (
	network_id TEXT NOT NULL,
	ip         TEXT NOT NULL,
	port_id    TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
	PRIMARY KEY (network_id, ip)
);
CREATE INDEX port_ips_port ON port_ips (port_id);
`,
	// Pod sides: each pod's compute VTEPs and local ports on a segment, as
	// JSON read back from the pod's Neutron ('' for none).
	12: `
ALTER TABLE segments ADD COLUMN pod_side TEXT NOT NULL DEFAULT '';
`,
}

// migrationData runs after a migration's SQL, in its transaction, for the
// migrations that must move data in Go.
var migrationData = map[int]func(context.Context, *sql.Tx, dialect) error{
	11: backfillPortIPs,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for v := 1; v < len(migrations); v++ {
		if err := s.migrateOne(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) migrateOne(ctx context.Context, version int) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %d: begin: %w", version, err)
	}
	defer tx.Rollback()
	if s.dialect == dialectPostgres {
		// Replicas starting together migrate one at a time.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7365200)`); err != nil {
			return fmt.Errorf("migration %d: lock: %w", version, err)
		}
	}
	var n int
	q := `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`
	if s.dialect == dialectPostgres {
		q = `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`
	}
	if err := tx.QueryRowContext(ctx, q, version).Scan(&n); err != nil {
		return fmt.Errorf("migration %d: check: %w", version, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
		return fmt.Errorf("migration %d: %w", version, err)
	}
	if fill := migrationData[version]; fill != nil {
		if err := fill(ctx, tx, s.dialect); err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
	}
	ins := `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
	if s.dialect == dialectPostgres {
		ins = `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`
	}
	if _, err := tx.ExecContext(ctx, ins, version, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("migration %d: record: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d: commit: %w", version, err)
	}
	return nil
}
