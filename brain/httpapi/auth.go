package httpapi

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/model"
)

// AuthOptions say how the API authenticates callers. Tokens issued by the
// brain (POST /v1/tokens) are always accepted; a client certificate that the
// TLS layer verified against the client CA identifies its holder by its
// l2span URI SAN (see IdentityFromCert).
type AuthOptions struct {
	// Insecure serves every request as admin with no credential
	// (--insecure-no-auth); /healthz says so.
	Insecure bool
	// Legacy are shared bearer tokens (--token-file), each taken as admin.
	Legacy []string
	// Metrics requires a credential (any role) on GET /metrics.
	Metrics bool
}

// roleSet is a set of roles; admin may do everything and is in every set.
type roleSet uint8

const (
	admin roleSet = 1 << iota
	driver
	agent
	reader
	anyRole = admin | driver | agent | reader
)

var roleBits = map[string]roleSet{model.RoleAdmin: admin, model.RoleDriver: driver, model.RoleAgent: agent, model.RoleReader: reader}

// scopeCheck narrows a role's access on one route to what its principal is
// bound to (an agent's pod and gateway, a driver's projects). It answers
// with a KindForbidden error, or another error (a 404) from a lookup.
type scopeCheck func(s *Server, r *http.Request, p brain.Principal) error

// access is who may call one route: the roles allowed, and the checks that
// bind an agent or a project-scoped driver to what is its own.
type access struct {
	roles  roleSet
	agent  scopeCheck // required when roles holds agent
	driver scopeCheck // applied to a driver token scoped to projects
}

// routeAccess is the role table beside operations(): every route names the
// roles allowed. A route missing here makes handle panic, so a new route
// cannot be served before someone decides who may call it.
func routeAccess() map[string]access {
	readers := admin | driver | reader
	return map[string]access{
		"GET /v1/pods":                    {roles: readers},
		"POST /v1/pods":                   {roles: admin},
		"GET /v1/pods/{id}":               {roles: readers | agent, agent: agentOwnPod},
		"PUT /v1/pods/{id}":               {roles: admin},
		"DELETE /v1/pods/{id}":            {roles: admin},
		"GET /v1/pods/{id}/state":         {roles: admin | reader | agent, agent: agentOwnPod},
		"GET /v1/networks":                {roles: readers},
		"POST /v1/networks":               {roles: admin | driver, driver: driverBodyProject},
		"GET /v1/networks/{id}":           {roles: readers, driver: driverNetworkProject("id")},
		"PUT /v1/networks/{id}":           {roles: admin | driver, driver: driverNetworkProject("id")},
		"DELETE /v1/networks/{id}":        {roles: admin | driver, driver: driverNetworkProject("id")},
		"GET /v1/networks/{id}/segments":  {roles: readers, driver: driverNetworkProject("id")},
		"POST /v1/networks/{id}/segments": {roles: admin},
		"GET /v1/subnets":                 {roles: readers},
		"POST /v1/subnets":                {roles: admin | driver, driver: driverSubnetBodyProject},
		"GET /v1/subnets/{id}":            {roles: readers, driver: driverSubnetProject},
		"DELETE /v1/subnets/{id}":         {roles: admin | driver, driver: driverSubnetProject},
		"GET /v1/ports":                   {roles: readers | agent, agent: agentListPorts},
		"POST /v1/ports":                  {roles: admin | driver | agent, agent: agentCreatePorts, driver: driverPortsBodyProject},
		"GET /v1/ports/{id}":              {roles: readers | agent, agent: agentOwnPort, driver: driverPortProject},
		"PUT /v1/ports/{id}":              {roles: admin | driver | agent, agent: agentUpdatePort, driver: driverPortProject},
		"DELETE /v1/ports/{id}":           {roles: admin | driver | agent, agent: agentDeletePort, driver: driverPortProject},
		"GET /v1/gateways":                {roles: admin | reader},
		"PUT /v1/gateways/{id}":           {roles: admin | agent, agent: agentRegister},
		"GET /v1/gateways/{id}":           {roles: admin | reader | agent, agent: agentOwnGateway},
		"DELETE /v1/gateways/{id}":        {roles: admin},
		"GET /v1/jobs":                    {roles: admin | reader},
		"GET /v1/jobs/{id}":               {roles: admin | reader},
		"POST /v1/jobs/{id}/retry":        {roles: admin},
		"GET /v1/routes":                  {roles: admin | reader},
		"GET /v1/tokens":                  {roles: admin},
		"POST /v1/tokens":                 {roles: admin},
		"GET /v1/tokens/{id}":             {roles: admin},
		"POST /v1/tokens/{id}/revoke":     {roles: admin},
		"GET /v1/whoami":                  {roles: anyRole, agent: anyAgent},
	}
}

// anyAgent lets every agent through (the route concerns only the caller).
func anyAgent(*Server, *http.Request, brain.Principal) error { return nil }

type principalKey struct{}

// principalOf is who the request acts as (set by guard).
func principalOf(r *http.Request) brain.Principal {
	p, _ := r.Context().Value(principalKey{}).(brain.Principal)
	return p
}

// guard authenticates the caller, checks the role table and the scope of
// the caller's binding, and refuses a write whose body is not JSON.
func (s *Server) guard(route string, next http.Handler) http.Handler {
	acc, ok := s.access[route]
	if !ok {
		panic("route without an entry in routeAccess: " + route)
	}
	if acc.roles&agent != 0 && acc.agent == nil {
		panic("route open to agents without an agent check: " + route)
	}
	acc.roles |= admin
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="l2span"`)
			s.writeError(w, r, err)
			return
		}
		if err := s.authorize(r, acc, p); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := requireJSON(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func (s *Server) authorize(r *http.Request, acc access, p brain.Principal) error {
	bit := roleBits[p.Role]
	if acc.roles&bit == 0 {
		return forbidden("role %s may not %s %s", p.Role, r.Method, r.URL.Path)
	}
	switch {
	case bit == agent:
		return acc.agent(s, r, p)
	case bit == driver && len(p.Projects) > 0 && acc.driver != nil:
		return acc.driver(s, r, p)
	}
	return nil
}

// authenticate finds the caller's principal: a bearer token (issued or
// legacy), else a verified client certificate.
func (s *Server) authenticate(r *http.Request) (brain.Principal, error) {
	if s.opts.Auth.Insecure {
		return brain.Principal{Role: model.RoleAdmin}, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		raw, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return brain.Principal{}, &brain.Error{Kind: brain.KindUnauthorized, Message: "authorization header must be 'Bearer <token>'"}
		}
		for _, t := range s.opts.Auth.Legacy {
			if subtle.ConstantTimeCompare([]byte(raw), []byte(t)) == 1 {
				return brain.Principal{Role: model.RoleAdmin, TokenID: "legacy"}, nil
			}
		}
		return s.svc.Authenticate(r.Context(), strings.TrimSpace(raw))
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		p, err := IdentityFromCert(r.TLS.VerifiedChains[0][0])
		if err != nil {
			return p, &brain.Error{Kind: brain.KindUnauthorized, Message: err.Error()}
		}
		return p, nil
	}
	return brain.Principal{}, &brain.Error{Kind: brain.KindUnauthorized, Message: "missing bearer token"}
}

// IdentityFromCert reads the identity a client certificate carries in a URI
// SAN: l2span://pod/<pod>/gateway/<gateway> for an agent, or
// l2span://role/<admin|driver|reader>.
func IdentityFromCert(c *x509.Certificate) (brain.Principal, error) {
	for _, u := range c.URIs {
		if u.Scheme != "l2span" {
			continue
		}
		parts := strings.Split(strings.Trim(u.Host+u.Path, "/"), "/")
		cred := "cert:" + c.Subject.CommonName
		switch {
		case len(parts) == 4 && parts[0] == "pod" && parts[2] == "gateway" && parts[1] != "" && parts[3] != "":
			return brain.Principal{Role: model.RoleAgent, TokenID: cred, PodID: parts[1], GatewayID: parts[3]}, nil
		case len(parts) == 2 && parts[0] == "role" && parts[1] != model.RoleAgent && roleBits[parts[1]] != 0:
			return brain.Principal{Role: parts[1], TokenID: cred}, nil
		}
		return brain.Principal{}, fmt.Errorf("client certificate %q: URI SAN %s is not l2span://pod/<pod>/gateway/<id> or l2span://role/<role>", c.Subject.CommonName, u)
	}
	return brain.Principal{}, fmt.Errorf("client certificate %q names no l2span identity (URI SAN l2span://...)", c.Subject.CommonName)
}

// AgentCertURI is the URI SAN of an agent's client certificate.
func AgentCertURI(pod, gateway string) *url.URL {
	return &url.URL{Scheme: "l2span", Host: "pod", Path: "/" + pod + "/gateway/" + gateway}
}

// requireJSON refuses a write with a body that is not declared JSON (415), so
// a browser form cannot post to the API (a cross-site request cannot set
// Content-Type: application/json without a CORS preflight, which the brain
// never grants).
func requireJSON(r *http.Request) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		return nil // no body at all (e.g. a job retry)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		if len(ct) > 64 {
			ct = ct[:64] + "..."
		}
		return &statusError{http.StatusUnsupportedMediaType, &brain.Error{Kind: brain.KindInvalid, Field: "Content-Type",
			Message: fmt.Sprintf("%q: the body of a write must be application/json", ct)}}
	}
	return nil
}

func forbidden(format string, args ...any) *brain.Error {
	return &brain.Error{Kind: brain.KindForbidden, Message: fmt.Sprintf(format, args...)}
}

// protectMetrics puts /metrics behind a credential when asked to.
func (s *Server) protectMetrics(h http.Handler) http.Handler {
	if !s.opts.Auth.Metrics || s.opts.Auth.Insecure {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.authenticate(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="l2span"`)
			s.writeError(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

var errNoAuth = errors.New("authentication is disabled (--insecure-no-auth): anyone who reaches the API is admin")
