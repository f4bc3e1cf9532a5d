package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// DeviceOwnerLearned is the device_owner of the ports an agent reports for
// MACs its switch learned; an agent token may create, move into its pod,
// update and delete only ports of this owner in its own pod.
const DeviceOwnerLearned = "l2gw:learned"

// Token roles.
const (
	RoleAdmin  = "admin"
	RoleDriver = "driver"
	RoleAgent  = "agent"
	RoleReader = "reader"
)

// Token is an API credential as the brain shows it: never its secret, except
// Token once, in the answer to its creation.
type Token struct {
	ID        string `json:"id"`
	Role      string `json:"role"`
	PodID     string `json:"pod_id,omitempty"`
	GatewayID string `json:"gateway_id,omitempty"`
	// Projects scope a driver token to these Neutron projects.
	Projects    []string   `json:"projects,omitempty"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Token is the bearer token to send: only in the answer to a create.
	Token string `json:"token,omitempty"`
}

// TokenCreate is the body of POST /v1/tokens.
type TokenCreate struct {
	Role        string   `json:"role"`
	PodID       string   `json:"pod_id,omitempty"`
	GatewayID   string   `json:"gateway_id,omitempty"`
	Projects    []string `json:"projects,omitempty"`
	Description string   `json:"description,omitempty"`
	// TTLSeconds is how long the token is valid; 0 never expires.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// Identity is who the brain takes the caller for (GET /v1/whoami).
type Identity struct {
	Role string `json:"role"`
	// Credential names what identified the caller: a token id, "legacy"
	// (--token-file), "cert:<subject>" or "none" (--insecure-no-auth).
	Credential string   `json:"credential"`
	PodID      string   `json:"pod_id,omitempty"`
	GatewayID  string   `json:"gateway_id,omitempty"`
	Projects   []string `json:"projects,omitempty"`
}

// CreateToken issues a token (admin); the answer's Token is the secret.
func (c *Client) CreateToken(ctx context.Context, t TokenCreate) (Token, error) {
	var out Token
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", nil, t, &out)
}

// ListTokens returns a page of tokens (admin).
func (c *Client) ListTokens(ctx context.Context, o ListOptions) (List[Token], error) {
	return list[Token](ctx, c, "/v1/tokens", o)
}

// GetToken returns a token (admin).
func (c *Client) GetToken(ctx context.Context, id string) (Token, error) {
	var out Token
	return out, c.do(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(id), nil, nil, &out)
}

// RevokeToken revokes a token (admin); it stays listed as revoked.
func (c *Client) RevokeToken(ctx context.Context, id string) (Token, error) {
	var out Token
	return out, c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(id)+"/revoke", nil, nil, &out)
}

// WhoAmI returns the identity the brain sees for this client's credential.
func (c *Client) WhoAmI(ctx context.Context) (Identity, error) {
	var out Identity
	return out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
}
