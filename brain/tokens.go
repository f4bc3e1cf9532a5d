package brain

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// A token as a client holds it is "l2s_<id>_<secret>": the id (16 hex
// digits) finds the row in one lookup, the secret (64 hex digits, 256 bits)
// is compared in constant time against the SHA-256 kept in the store. A
// secret of that entropy needs no slow hash.
const tokenPrefix = "l2s_"

// Principal is who a request acts as: the role of its token (or client
// certificate) and what that role is bound to.
type Principal struct {
	Role string
	// TokenID names the credential ("legacy" for --token-file, "cert:<CN>"
	// for a client certificate, "" when authentication is off).
	TokenID          string
	PodID, GatewayID string
	Projects         []string
}

// InProject reports whether a driver principal may act on project (an
// unscoped principal may act on every project).
func (p Principal) InProject(project string) bool {
	return len(p.Projects) == 0 || slices.Contains(p.Projects, project)
}

var roles = []string{model.RoleAdmin, model.RoleDriver, model.RoleAgent, model.RoleReader}

// TokenSpec is what an admin asks for when issuing a token.
type TokenSpec struct {
	Role, PodID, GatewayID, Description string
	Projects                            []string
	// TTL is how long the token is valid; 0 never expires.
	TTL time.Duration
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func checkTokenSpec(spec TokenSpec) error {
	if !slices.Contains(roles, spec.Role) {
		return invalid("role", "%q must be one of %s", spec.Role, strings.Join(roles, ", "))
	}
	if spec.Role == model.RoleAgent {
		if err := checkID("pod_id", spec.PodID); err != nil {
			return err
		}
		if err := checkID("gateway_id", spec.GatewayID); err != nil {
			return err
		}
	} else if spec.PodID != "" || spec.GatewayID != "" {
		return invalid("pod_id", "only an agent token is bound to a pod and gateway")
	}
	if len(spec.Projects) > 0 && spec.Role != model.RoleDriver {
		return invalid("projects", "only a driver token is scoped to projects")
	}
	for _, p := range spec.Projects {
		if err := checkID("projects", p); err != nil {
			return err
		}
	}
	if spec.TTL < 0 {
		return invalid("ttl", "must not be negative")
	}
	if len(spec.Description) > 255 {
		return invalid("description", "is longer than 255 characters")
	}
	return nil
}

// CreateToken issues a token and returns its row and the one string a
// client sends; the secret is not kept and cannot be shown again.
func (s *Service) CreateToken(ctx context.Context, spec TokenSpec) (model.Token, string, error) {
	if err := checkTokenSpec(spec); err != nil {
		return model.Token{}, "", err
	}
	id, secret := randomHex(8), randomHex(32)
	now := s.now()
	k := model.Token{ID: id, SecretHash: hashSecret(secret), Role: spec.Role, PodID: spec.PodID, GatewayID: spec.GatewayID,
		Projects: spec.Projects, Description: spec.Description, CreatedAt: now}
	if spec.TTL > 0 {
		exp := now.Add(spec.TTL)
		k.ExpiresAt = &exp
	}
	err := s.write(ctx, func(tx *store.Tx) error { return tx.InsertToken(ctx, k) })
	if err != nil {
		return model.Token{}, "", err
	}
	return k, tokenPrefix + id + "_" + secret, nil
}

// RevokeToken revokes a token: requests carrying it are refused from now on.
func (s *Service) RevokeToken(ctx context.Context, id string) (k model.Token, err error) {
	err = s.write(ctx, func(tx *store.Tx) error {
		if err := tx.RevokeToken(ctx, id, s.now()); err != nil {
			return err
		}
		k, err = tx.GetToken(ctx, id)
		return err
	})
	return k, err
}

// GetToken returns a token's row (never its secret).
func (s *Service) GetToken(ctx context.Context, id string) (k model.Token, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { k, err = tx.GetToken(ctx, id); return err })
	return k, err
}

// ListTokens lists tokens.
func (s *Service) ListTokens(ctx context.Context, pg model.Page) (l model.List[model.Token], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListTokens(ctx, pg); return err })
	return l, err
}

// CountUsableTokens counts tokens of role ("" any) neither revoked nor expired.
func (s *Service) CountUsableTokens(ctx context.Context, role string) (n int, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { n, err = tx.CountUsableTokens(ctx, role, s.now()); return err })
	return n, err
}

func unauthorized(format string, args ...any) *Error {
	e := invalid("", format, args...)
	e.Kind = KindUnauthorized
	return e
}

// IsTokenFormat reports whether raw looks like a token this brain issues.
func IsTokenFormat(raw string) bool {
	id, secret, ok := splitToken(raw)
	return ok && len(id) == 16 && len(secret) == 64
}

func splitToken(raw string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(raw, tokenPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "_")
}

// Authenticate finds the token raw names and checks its secret, expiry and
// revocation. Every failure is KindUnauthorized.
func (s *Service) Authenticate(ctx context.Context, raw string) (Principal, error) {
	id, secret, ok := splitToken(raw)
	if !ok || !IsTokenFormat(raw) {
		return Principal{}, unauthorized("invalid bearer token")
	}
	k, err := s.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, unauthorized("invalid bearer token")
	}
	if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(k.SecretHash)) != 1 {
		return Principal{}, unauthorized("invalid bearer token")
	}
	if k.RevokedAt != nil {
		return Principal{}, unauthorized("token %s was revoked", k.ID)
	}
	if k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt) {
		return Principal{}, unauthorized("token %s expired at %s", k.ID, k.ExpiresAt.Format(time.RFC3339))
	}
	return Principal{Role: k.Role, TokenID: k.ID, PodID: k.PodID, GatewayID: k.GatewayID, Projects: k.Projects}, nil
}
