package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/l2span/l2span/brain/model"
)

// --- API tokens ---

const tokenCols = `id, secret_hash, role, pod_id, gateway_id, projects, description, created_at, expires_at, revoked_at`

func optMicros(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return micros(*t)
}

func optTime(us int64) *time.Time {
	if us == 0 {
		return nil
	}
	t := fromMicros(us)
	return &t
}

func scanToken(s interface{ Scan(...any) error }) (model.Token, error) {
	var k model.Token
	var projects string
	var created, expires, revoked int64
	if err := s.Scan(&k.ID, &k.SecretHash, &k.Role, &k.PodID, &k.GatewayID, &projects, &k.Description, &created, &expires, &revoked); err != nil {
		return k, err
	}
	var err error
	k.Projects, err = parseList(projects)
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromMicros(created), optTime(expires), optTime(revoked)
	return k, err
}

// InsertToken stores a token (its secret already hashed).
func (t *Tx) InsertToken(ctx context.Context, k model.Token) error {
	_, err := t.exec(ctx, `INSERT INTO api_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.SecretHash, k.Role, k.PodID, k.GatewayID, jsonList(k.Projects), k.Description,
		micros(k.CreatedAt), optMicros(k.ExpiresAt), optMicros(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("insert token %s: %w", k.ID, err)
	}
	return nil
}

// RevokeToken marks a token revoked at at; revoking twice keeps the first time.
func (t *Tx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	r, err := t.exec(ctx, `UPDATE api_tokens SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END WHERE id = ?`, micros(at), id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return nil
}

// GetToken returns a token or ErrNotFound.
func (t *Tx) GetToken(ctx context.Context, id string) (model.Token, error) {
	k, err := scanToken(t.queryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("get token %s: %w", id, err)
	}
	return k, nil
}

// ListTokens returns a page of tokens.
func (t *Tx) ListTokens(ctx context.Context, p model.Page) (model.List[model.Token], error) {
	q, args, limit := pageClause(p, nil, nil)
	rows, err := t.query(ctx, `SELECT `+tokenCols+` FROM api_tokens`+q, args...)
	if err != nil {
		return model.List[model.Token]{}, fmt.Errorf("list tokens: %w", err)
	}
	items, err := collect(rows, scanToken)
	if err != nil {
		return model.List[model.Token]{}, fmt.Errorf("list tokens: %w", err)
	}
	return pageOf(items, limit, func(k model.Token) string { return k.ID }), nil
}

// CountUsableTokens counts tokens of role (any role if "") that are neither
// revoked nor expired at now.
func (t *Tx) CountUsableTokens(ctx context.Context, role string, now time.Time) (int, error) {
	q := `SELECT COUNT(*) FROM api_tokens WHERE revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`
	args := []any{micros(now)}
	if role != "" {
		q += ` AND role = ?`
		args = append(args, role)
	}
	var n int
	if err := t.queryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}
