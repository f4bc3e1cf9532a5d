package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// revisionChannel is the PostgreSQL NOTIFY channel every write transaction
// announces its revision on; brain replicas LISTEN to it.
const revisionChannel = "l2span_revision"

// ErrNoListen says the store cannot tell of other writers' commits (SQLite:
// there are no other writers).
var ErrNoListen = errors.New("store has no change notifications")

// notifyRevision queues a notification of the transaction's revision; it is
// delivered to listeners at commit, and only if the transaction commits.
func (t *Tx) notifyRevision(ctx context.Context) error {
	if t.d != dialectPostgres {
		return nil
	}
	if _, err := t.exec(ctx, `SELECT pg_notify('`+revisionChannel+`', ?)`, strconv.FormatInt(t.revision, 10)); err != nil {
		return fmt.Errorf("notify revision: %w", err)
	}
	return nil
}

// ListenRevisions opens its own connection, LISTENs for committed
// revisions (from every brain on the database) and calls fn with each one,
// then ready once listening (so the caller can read the revision it may
// have missed before). It returns when ctx ends or the connection breaks
// (a PostgreSQL restart or failover); the caller listens again.
func (s *Store) ListenRevisions(ctx context.Context, ready func(), fn func(rev int64)) error {
	if s.dialect != dialectPostgres {
		return ErrNoListen
	}
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return fmt.Errorf("listen: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+revisionChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen: wait: %w", err)
		}
		rev, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			continue // not ours
		}
		fn(rev)
	}
}
