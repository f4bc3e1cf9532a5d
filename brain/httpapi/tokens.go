package httpapi

import (
	"net/http"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/model"
)

func toAPIToken(k model.Token) api.Token {
	return api.Token{ID: k.ID, Role: k.Role, PodID: k.PodID, GatewayID: k.GatewayID, Projects: k.Projects,
		Description: k.Description, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt}
}

func (s *Server) listTokens(r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	return asList(toAPIToken)(s.svc.ListTokens(r.Context(), pg))
}

func (s *Server) createToken(r *http.Request) (any, error) {
	var req api.TokenCreate
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.TTLSeconds < 0 {
		return nil, invalid("ttl_seconds", "must not be negative")
	}
	k, secret, err := s.svc.CreateToken(r.Context(), brain.TokenSpec{Role: req.Role, PodID: req.PodID, GatewayID: req.GatewayID,
		Projects: req.Projects, Description: req.Description, TTL: time.Duration(req.TTLSeconds) * time.Second})
	if err != nil {
		return nil, err
	}
	out := toAPIToken(k)
	out.Token = secret
	s.opts.Logger.Info("token created", "id", k.ID, "role", k.Role, "pod", k.PodID, "gateway", k.GatewayID, "by", principalOf(r).TokenID)
	return out, nil
}

func (s *Server) getToken(r *http.Request) (any, error) {
	return as(toAPIToken)(s.svc.GetToken(r.Context(), r.PathValue("id")))
}

func (s *Server) revokeToken(r *http.Request) (any, error) {
	k, err := s.svc.RevokeToken(r.Context(), r.PathValue("id"))
	if err == nil {
		s.opts.Logger.Info("token revoked", "id", k.ID, "role", k.Role, "by", principalOf(r).TokenID)
	}
	return as(toAPIToken)(k, err)
}

func (s *Server) whoami(r *http.Request) (any, error) {
	p := principalOf(r)
	cred := p.TokenID
	if cred == "" {
		cred = "none"
	}
	return api.Identity{Role: p.Role, Credential: cred, PodID: p.PodID, GatewayID: p.GatewayID, Projects: p.Projects}, nil
}
