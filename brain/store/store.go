// Package store keeps the brain's state in SQL: a pure-Go SQLite file
// (embedded default) or PostgreSQL (several brains for HA). Both share one
// schema and one set of migrations. Every write transaction is serialized and
// takes the next revision from a counter row, so revisions commit in order on
// both databases and a watcher that has seen revision R has seen everything
// up to R.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors the layers above check with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrDuplicate is a unique-constraint violation.
	ErrDuplicate = errors.New("duplicate")
	// ErrReferenced is a foreign-key violation (a row still in use, or a
	// reference to a row that does not exist).
	ErrReferenced = errors.New("referenced")
)

type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

// Store is an open brain database.
type Store struct {
	write   *sql.DB
	read    *sql.DB
	dialect dialect
	// writeLock serializes writers inside this process so SQLite never sees
	// two writers from one brain and PostgreSQL never queues them in the DB.
	writeLock chan struct{}
	// url is the PostgreSQL connection string, for the LISTEN connection.
	url string
}

// Open opens the store at rawURL, `sqlite:///abs/path.db` or `postgres://...`,
// and runs the migrations.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse store url: %w", err)
	}
	s := &Store{writeLock: make(chan struct{}, 1)}
	switch u.Scheme {
	case "sqlite", "sqlite3":
		path := u.Path
		if u.Host != "" {
			return nil, fmt.Errorf("store url %q: want sqlite:///absolute/path.db", rawURL)
		}
		if path == "" {
			return nil, fmt.Errorf("store url %q: missing database path", rawURL)
		}
		s.dialect = dialectSQLite
		// synchronous(FULL) fsyncs the WAL at every commit: a committed row
		// survives kill -9 and power loss.
		base := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
			"&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_time_format=sqlite"
		if s.write, err = sql.Open("sqlite", base+"&_txlock=immediate"); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.write.SetMaxOpenConns(1)
		if s.read, err = sql.Open("sqlite", base+"&_pragma=query_only(1)"); err != nil {
			s.write.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.read.SetMaxOpenConns(8)
		s.read.SetMaxIdleConns(8)
	case "postgres", "postgresql":
		s.dialect = dialectPostgres
		s.url = rawURL
		if s.write, err = sql.Open("pgx", rawURL); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		s.write.SetMaxOpenConns(16)
		s.write.SetMaxIdleConns(16)
		s.read = s.write
	default:
		return nil, fmt.Errorf("store url %q: scheme must be sqlite or postgres", rawURL)
	}
	// The write pool must be reachable before migrating; retry briefly so a
	// brain started next to a booting PostgreSQL does not die at once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.write.PingContext(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("connect store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database handles.
func (s *Store) Close() error {
	var errs []error
	if s.read != nil && s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	if s.write != nil {
		errs = append(errs, s.write.Close())
	}
	return errors.Join(errs...)
}

// Backup writes a consistent copy of a SQLite store to path (VACUUM INTO),
// while the brain keeps serving. PostgreSQL is backed up with pg_dump.
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.dialect != dialectSQLite {
		return errors.New("backup: a PostgreSQL store is backed up with pg_dump")
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("backup: %s already exists", path)
	}
	if _, err := s.write.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}

// CheckIntegrity runs SQLite's integrity and foreign-key checks (a
// PostgreSQL store checks itself) and reports what they found.
func (s *Store) CheckIntegrity(ctx context.Context) error {
	if s.dialect != dialectSQLite {
		return nil
	}
	var res []string
	rows, err := s.write.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return fmt.Errorf("integrity check: %w", err)
		}
		res = append(res, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(res) != 1 || res[0] != "ok" {
		return fmt.Errorf("integrity check: %s", strings.Join(res, "; "))
	}
	rows, err = s.write.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	bad := rows.Next()
	rows.Close()
	if bad {
		return errors.New("foreign key check reports violations")
	}
	return nil
}

// Kind names the database: "sqlite" or "postgres".
func (s *Store) Kind() string {
	if s.dialect == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// Tx is one transaction. Queries use `?` placeholders on both databases.
type Tx struct {
	tx       *sql.Tx
	d        dialect
	write    bool
	revision int64
	changed  map[changeKey]struct{}
}

// changeKey is one change-log row of a transaction: a network's row,
// segments or subnets (port ""), or one of its ports.
type changeKey struct{ network, port string }

// Write runs fn in a serialized read-write transaction, retrying it when the
// database reports a transient conflict. fn may run more than once.
func (s *Store) Write(ctx context.Context, fn func(*Tx) error) (revision int64, err error) {
	select {
	case s.writeLock <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.writeLock }()
	for attempt := 0; ; attempt++ {
		revision, err = s.writeOnce(ctx, fn)
		if err == nil || !transient(err) || attempt >= 8 {
			return revision, err
		}
		time.Sleep(time.Duration(1+attempt*attempt) * 5 * time.Millisecond)
	}
}

func (s *Store) writeOnce(ctx context.Context, fn func(*Tx) error) (int64, error) {
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin write: %w", err)
	}
	tx := &Tx{tx: sqlTx, d: s.dialect, write: true}
	if s.dialect == dialectPostgres {
		// One writer at a time across every brain replica: allocations and
		// revisions then need no retry loops of their own.
		if _, err := sqlTx.ExecContext(ctx, `SELECT value FROM counters WHERE name = 'revision' FOR UPDATE`); err != nil {
			sqlTx.Rollback()
			return 0, fmt.Errorf("lock revision: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		sqlTx.Rollback()
		return 0, err
	}
	if err := tx.flushChanges(ctx); err != nil {
		sqlTx.Rollback()
		return 0, err
	}
	if err := sqlTx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return tx.revision, nil
}

// Read runs fn in a read-only transaction that sees one consistent snapshot.
func (s *Store) Read(ctx context.Context, fn func(*Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == dialectPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	sqlTx, err := s.read.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer sqlTx.Rollback()
	return fn(&Tx{tx: sqlTx, d: s.dialect})
}

// Changed records that the desired state of networkID changed in this
// transaction; AllNetworks ("*") marks a change that touches every pod's
// state (e.g. a pod's dvr_base_mac). The store's own writers of networks,
// segments, subnets, ports and pods record their changes themselves.
func (t *Tx) Changed(networkID string) { t.record(networkID, "") }

func (t *Tx) record(networkID, portID string) {
	if !t.write {
		panic("store: change recorded in a read transaction")
	}
	if t.changed == nil {
		t.changed = make(map[changeKey]struct{})
	}
	t.changed[changeKey{networkID, portID}] = struct{}{}
}

// AllNetworks is the change key for a change that affects every pod's state.
const AllNetworks = "*"

func (t *Tx) flushChanges(ctx context.Context) error {
	if len(t.changed) == 0 {
		return nil
	}
	if err := t.queryRow(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value`).Scan(&t.revision); err != nil {
		return fmt.Errorf("bump revision: %w", err)
	}
	now := time.Now().UnixMicro()
	keys := make([]changeKey, 0, len(t.changed))
	for k := range t.changed {
		keys = append(keys, k)
	}
	// Many rows per statement: a group commit of 100 ports is one insert.
	for len(keys) > 0 {
		n := min(len(keys), 200)
		args := make([]any, 0, 4*n)
		for _, k := range keys[:n] {
			args = append(args, t.revision, k.network, k.port, now)
		}
		q := `INSERT INTO changes (revision, network_id, port_id, created_at) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", ")
		if _, err := t.exec(ctx, q, args...); err != nil {
			return fmt.Errorf("record %d changes: %w", n, err)
		}
		keys = keys[n:]
	}
	return t.notifyRevision(ctx)
}

// Savepoint runs fn inside a savepoint: if fn fails, what it wrote is rolled
// back and the transaction stays usable (PostgreSQL would otherwise refuse
// every later statement); the error is returned.
func (t *Tx) Savepoint(ctx context.Context, fn func() error) error {
	if _, err := t.tx.ExecContext(ctx, `SAVEPOINT l2s_sp`); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(); err != nil {
		if _, rerr := t.tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT l2s_sp`); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr))
		}
		if _, rerr := t.tx.ExecContext(ctx, `RELEASE SAVEPOINT l2s_sp`); rerr != nil {
			return errors.Join(err, fmt.Errorf("release savepoint: %w", rerr))
		}
		return err
	}
	if _, err := t.tx.ExecContext(ctx, `RELEASE SAVEPOINT l2s_sp`); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

func (t *Tx) rebind(q string) string {
	if t.d != dialectPostgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// exec runs a statement.
func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	r, err := t.tx.ExecContext(ctx, t.rebind(q), args...)
	return r, classify(err)
}

// query runs a query.
func (t *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	r, err := t.tx.QueryContext(ctx, t.rebind(q), args...)
	return r, classify(err)
}

// queryRow runs a query expected to return at most one row.
func (t *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.rebind(q), args...)
}

// classify maps driver errors to ErrDuplicate / ErrReferenced, keeping the
// driver error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", ErrDuplicate, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", ErrReferenced, err)
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return fmt.Errorf("%w: %w", ErrDuplicate, err)
		case "23503":
			return fmt.Errorf("%w: %w", ErrReferenced, err)
		}
	}
	return err
}

func transient(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}
