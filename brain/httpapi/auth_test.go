package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// wantRoles is who may call each route, written out here apart from the
// server's own table (auth.go): a route served without a line here fails
// TestRoleByRoute, and so does a table that grants more or less than this.
// Admin may call everything.
var wantRoles = map[string]string{
	"GET /v1/pods":                    "driver reader",
	"POST /v1/pods":                   "",
	"GET /v1/pods/{id}":               "driver reader agent",
	"PUT /v1/pods/{id}":               "",
	"DELETE /v1/pods/{id}":            "",
	"GET /v1/pods/{id}/state":         "reader agent",
	"GET /v1/networks":                "driver reader",
	"POST /v1/networks":               "driver",
	"GET /v1/networks/{id}":           "driver reader",
	"PUT /v1/networks/{id}":           "driver",
	"DELETE /v1/networks/{id}":        "driver",
	"GET /v1/networks/{id}/segments":  "driver reader",
	"POST /v1/networks/{id}/segments": "",
	"GET /v1/subnets":                 "driver reader",
	"POST /v1/subnets":                "driver",
	"GET /v1/subnets/{id}":            "driver reader",
	"DELETE /v1/subnets/{id}":         "driver",
	"GET /v1/ports":                   "driver reader agent",
	"POST /v1/ports":                  "driver agent",
	"GET /v1/ports/{id}":              "driver reader agent",
	"PUT /v1/ports/{id}":              "driver agent",
	"DELETE /v1/ports/{id}":           "driver agent",
	"GET /v1/gateways":                "reader",
	"PUT /v1/gateways/{id}":           "agent",
	"GET /v1/gateways/{id}":           "reader agent",
	"DELETE /v1/gateways/{id}":        "",
	"GET /v1/jobs":                    "reader",
	"GET /v1/jobs/{id}":               "reader",
	"POST /v1/jobs/{id}/retry":        "",
	"GET /v1/routes":                  "reader",
	"GET /v1/tokens":                  "",
	"POST /v1/tokens":                 "",
	"GET /v1/tokens/{id}":             "",
	"POST /v1/tokens/{id}/revoke":     "",
	"GET /v1/whoami":                  "driver reader agent",
}

// authRig is a brain with pod1 and pod2, a network with ports of both
// kinds and a token per role; the agent is gw1 of pod1.
type authRig struct {
	b      *testBrain
	net    string
	tokens map[string]string // role -> bearer token
}

func newAuthRig(t *testing.T) *authRig {
	t.Helper()
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+filepath.Join(t.TempDir(), "b.db"), testConfig, httpapi.Options{})
	c := b.client
	mkPods(t, c, api.Pod{ID: "pod1", AZ: "az1"}, api.Pod{ID: "pod2", AZ: "az2"})
	n := must[api.Network](t)(c.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN, ProjectID: "p1"}))
	for _, p := range []api.PortCreate{
		{ID: "vm1", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01", ProjectID: "p1"},
		{ID: "vm2", NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02", ProjectID: "p1"},
		{ID: "lp1", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:11", DeviceOwner: api.DeviceOwnerLearned},
		{ID: "lp-del", NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:12", DeviceOwner: api.DeviceOwnerLearned},
		{ID: "lp2", NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:21", DeviceOwner: api.DeviceOwnerLearned},
	} {
		must[api.Port](t)(c.CreatePort(ctx, p))
	}
	must[api.Gateway](t)(c.RegisterGateway(ctx, api.Gateway{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.1", Backend: "linux"}))
	must[api.Gateway](t)(c.RegisterGateway(ctx, api.Gateway{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.2", Backend: "linux"}))
	r := &authRig{b: b, net: n.ID, tokens: map[string]string{"admin": b.token}}
	for role, tc := range map[string]api.TokenCreate{
		"driver": {Role: "driver"},
		"reader": {Role: "reader"},
		"agent":  {Role: "agent", PodID: "pod1", GatewayID: "gw1"},
	} {
		r.tokens[role] = must[api.Token](t)(c.CreateToken(ctx, tc)).Token
	}
	return r
}

// call sends one request with token and answers the status and error body.
func (r *authRig) call(t *testing.T, token, method, path, body string) (int, api.ErrorBody) {
	t.Helper()
	var rd *bytes.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, r.b.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// requestFor is one request per route, aimed at what the agent (pod1,
// gw1) owns, so that a 403 can only come from the role table.
func (r *authRig) requestFor(route string) (method, path, body string) {
	method, path, _ = strings.Cut(route, " ")
	ids := map[string]string{
		"/v1/pods/{id}": "pod1", "/v1/pods/{id}/state": "pod1",
		"/v1/networks/{id}": r.net, "/v1/networks/{id}/segments": r.net,
		"/v1/subnets/{id}": "nope", "/v1/ports/{id}": "lp1", "/v1/gateways/{id}": "gw1",
		"/v1/jobs/{id}": "nope", "/v1/jobs/{id}/retry": "nope", "/v1/tokens/{id}": "nope", "/v1/tokens/{id}/revoke": "nope",
	}
	bodies := map[string]string{
		"POST /v1/pods":                   `{"id":"pod9","az":"az9"}`,
		"PUT /v1/pods/{id}":               `{"id":"pod1","az":"az1"}`,
		"POST /v1/networks":               `{"name":"m","type":"local"}`,
		"PUT /v1/networks/{id}":           `{}`,
		"POST /v1/networks/{id}/segments": `{}`,
		"POST /v1/subnets":                `{}`,
		"POST /v1/ports":                  `{"network_id":"` + r.net + `","pod_id":"pod1","mac":"fa:16:3e:00:00:31","ips":[],"device_owner":"` + api.DeviceOwnerLearned + `"}`,
		"PUT /v1/ports/{id}":              `{"ips":[]}`,
		"PUT /v1/gateways/{id}":           `{"id":"gw1","pod_id":"pod1","vtep":"198.51.100.1","backend":"linux"}`,
		"POST /v1/tokens":                 `{"role":"reader"}`,
	}
	switch route {
	case "DELETE /v1/pods/{id}", "DELETE /v1/gateways/{id}", "DELETE /v1/networks/{id}":
		ids[path] = "nope"
	case "DELETE /v1/ports/{id}":
		ids[path] = "lp-del"
	}
	if id, ok := ids[path]; ok {
		path = strings.Replace(path, "{id}", id, 1)
	}
	if route == "GET /v1/ports" {
		path += "?pod_id=pod1"
	}
	return method, path, bodies[route]
}

// TestRoleByRoute sends every route with every role's token: a role the
// table allows is never answered 401/403, any other is answered 403.
func TestRoleByRoute(t *testing.T) {
	r := newAuthRig(t)
	routes := r.b.server.Routes()
	for _, rt := range routes {
		if _, ok := wantRoles[rt.Method+" "+rt.Path]; !ok {
			t.Errorf("route %s %s has no line in wantRoles: decide who may call it (auth.go routeAccess and this test)", rt.Method, rt.Path)
		}
	}
	if len(wantRoles) != len(routes) {
		t.Errorf("wantRoles has %d routes, the server serves %d", len(wantRoles), len(routes))
	}
	// The agent goes first: its allowed calls then act on what it owns
	// before another role's call could have removed it.
	for _, role := range []string{"agent", "reader", "driver", "admin"} {
		for _, rt := range routes {
			route := rt.Method + " " + rt.Path
			allowed := role == "admin" || strings.Contains(" "+wantRoles[route]+" ", " "+role+" ")
			method, path, body := r.requestFor(route)
			status, e := r.call(t, r.tokens[role], method, path, body)
			switch {
			case allowed && (status == 401 || status == 403):
				t.Errorf("%s %s as %s: %d %s, want allowed", method, path, role, status, e.Error.Message)
			case !allowed && status != 403:
				t.Errorf("%s %s as %s: %d, want 403", method, path, role, status)
			case !allowed && e.Error.Code != "forbidden":
				t.Errorf("%s %s as %s: code %q, want forbidden", method, path, role, e.Error.Code)
			}
		}
	}
	// No credential at all: 401 on every route.
	for _, rt := range routes {
		method, path, body := r.requestFor(rt.Method + " " + rt.Path)
		if status, _ := r.call(t, "", method, path, body); status != 401 {
			t.Errorf("%s %s without a token: %d, want 401", method, path, status)
		}
	}
}

// TestAgentBoundToItsPodAndGateway: an agent token acts only as its own
// gateway in its own pod, whatever the path or body says.
func TestAgentBoundToItsPodAndGateway(t *testing.T) {
	r := newAuthRig(t)
	tok := r.tokens["agent"]
	for _, c := range []struct{ name, method, path, body string }{
		{"another pod's state", "GET", "/v1/pods/pod2/state", ""},
		{"another pod's watch", "GET", "/v1/pods/pod2/state?watch=true&since=0", ""},
		{"another pod", "GET", "/v1/pods/pod2", ""},
		{"register as another gateway", "PUT", "/v1/gateways/gw2", `{"id":"gw2","pod_id":"pod2","vtep":"198.51.100.9","backend":"linux"}`},
		{"register itself in another pod", "PUT", "/v1/gateways/gw1", `{"id":"gw1","pod_id":"pod2","vtep":"198.51.100.1","backend":"linux"}`},
		{"read another gateway", "GET", "/v1/gateways/gw2", ""},
		{"list all ports", "GET", "/v1/ports", ""},
		{"list another pod's ports", "GET", "/v1/ports?pod_id=pod2", ""},
		{"create a port in another pod", "POST", "/v1/ports", `{"network_id":"` + r.net + `","pod_id":"pod2","mac":"fa:16:3e:00:00:41","ips":[],"device_owner":"l2gw:learned"}`},
		{"create a VM port", "POST", "/v1/ports", `{"network_id":"` + r.net + `","pod_id":"pod1","mac":"fa:16:3e:00:00:42","ips":[]}`},
		{"bulk with one foreign port", "POST", "/v1/ports", `{"ports":[{"network_id":"` + r.net + `","pod_id":"pod1","mac":"fa:16:3e:00:00:43","ips":[],"device_owner":"l2gw:learned"},{"network_id":"` + r.net + `","pod_id":"pod2","mac":"fa:16:3e:00:00:44","ips":[],"device_owner":"l2gw:learned"}]}`},
		{"delete a VM port of its pod", "DELETE", "/v1/ports/vm1", ""},
		{"delete another pod's learned port", "DELETE", "/v1/ports/lp2", ""},
		{"change a VM port's IPs", "PUT", "/v1/ports/vm1", `{"ips":["203.0.113.9"]}`},
		{"move a port to another pod", "PUT", "/v1/ports/lp1", `{"pod_id":"pod2"}`},
		{"move in and change IPs", "PUT", "/v1/ports/vm2", `{"pod_id":"pod1","ips":["203.0.113.9"]}`},
		{"clear a duplicate mark", "PUT", "/v1/ports/vm1", `{"clear_duplicate":true}`},
		{"read another pod's port", "GET", "/v1/ports/vm2", ""},
		{"list gateways", "GET", "/v1/gateways", ""},
	} {
		if status, e := r.call(t, tok, c.method, c.path, c.body); status != 403 || e.Error.Code != "forbidden" {
			t.Errorf("%s: %d %+v, want 403 forbidden", c.name, status, e)
		}
	}
	// What the agent and its learner do is allowed.
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"its own state", "GET", "/v1/pods/pod1/state", "", 200},
		{"register itself", "PUT", "/v1/gateways/gw1", `{"id":"gw1","pod_id":"pod1","vtep":"198.51.100.1","backend":"linux"}`, 200},
		{"its pod's ports", "GET", "/v1/ports?pod_id=pod1", "", 200},
		{"look up one MAC", "GET", "/v1/ports?network_id=" + r.net + "&mac=fa:16:3e:00:00:02", "", 200},
		{"report a learned MAC", "POST", "/v1/ports", `{"network_id":"` + r.net + `","pod_id":"pod1","mac":"fa:16:3e:00:00:51","ips":[],"device_owner":"l2gw:learned"}`, 201},
		{"refresh its learned port's IPs", "PUT", "/v1/ports/lp1", `{"ips":[]}`, 200},
		{"claim a MAC that moved here", "PUT", "/v1/ports/vm2", `{"pod_id":"pod1","mobility_seq":1}`, 200},
		{"forget its learned port", "DELETE", "/v1/ports/lp-del", "", 204},
	} {
		if status, e := r.call(t, tok, c.method, c.path, c.body); status != c.status {
			t.Errorf("%s: %d %+v, want %d", c.name, status, e, c.status)
		}
	}
	id := must[api.Identity](t)(mustClient(t, r.b, tok).WhoAmI(context.Background()))
	if id.Role != "agent" || id.PodID != "pod1" || id.GatewayID != "gw1" {
		t.Errorf("whoami: %+v", id)
	}
}

func mustClient(t *testing.T, b *testBrain, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(b.http.URL, api.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTokenLifecycle: a revoked token and an expired one are refused with
// 401; a forged secret for a real id too; tokens are listed without secrets.
func TestTokenLifecycle(t *testing.T) {
	r := newAuthRig(t)
	ctx := context.Background()
	admin := r.b.client
	reader := must[api.Token](t)(admin.CreateToken(ctx, api.TokenCreate{Role: "reader", Description: "ops"}))
	rc := mustClient(t, r.b, reader.Token)
	must[api.List[api.Pod]](t)(rc.ListPods(ctx, api.ListOptions{}))
	if _, err := rc.CreatePod(ctx, api.Pod{ID: "pod7", AZ: "az7"}); statusOf(err) != 403 {
		t.Fatalf("reader writes: %v", err)
	}
	revoked := must[api.Token](t)(admin.RevokeToken(ctx, reader.ID))
	if revoked.RevokedAt == nil || revoked.Token != "" {
		t.Fatalf("revoked: %+v", revoked)
	}
	_, err := rc.ListPods(ctx, api.ListOptions{})
	if statusOf(err) != 401 || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	// A forged secret on a real id.
	forged := reader.Token[:len(reader.Token)-4] + "0000"
	if forged == reader.Token {
		forged = reader.Token[:len(reader.Token)-4] + "1111"
	}
	if _, err := mustClient(t, r.b, forged).ListPods(ctx, api.ListOptions{}); statusOf(err) != 401 || strings.Contains(err.Error(), "revoked") {
		t.Fatalf("forged secret: %v", err)
	}
	short := must[api.Token](t)(admin.CreateToken(ctx, api.TokenCreate{Role: "reader", TTLSeconds: 1}))
	if short.ExpiresAt == nil {
		t.Fatalf("ttl token without expiry: %+v", short)
	}
	sc := mustClient(t, r.b, short.Token)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := sc.ListPods(ctx, api.ListOptions{})
		if statusOf(err) == 401 && strings.Contains(err.Error(), "expired") {
			break
		}
		if err != nil && statusOf(err) != 401 {
			t.Fatalf("expiring token: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("token with a 1 s TTL still accepted at %s (expires %s)", time.Now(), short.ExpiresAt)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l := must[api.List[api.Token]](t)(admin.ListTokens(ctx, api.ListOptions{}))
	if len(l.Items) < 5 {
		t.Fatalf("tokens: %+v", l)
	}
	for _, k := range l.Items {
		if k.Token != "" {
			t.Fatalf("list shows a secret: %+v", k)
		}
	}
	for _, bad := range []api.TokenCreate{
		{Role: "root"}, {Role: "agent", PodID: "pod1"}, {Role: "reader", PodID: "pod1"}, {Role: "admin", Projects: []string{"p1"}}, {Role: "reader", TTLSeconds: -1},
	} {
		if _, err := admin.CreateToken(ctx, bad); statusOf(err) != 400 {
			t.Errorf("create %+v: %v, want 400", bad, err)
		}
	}
}

// TestTenancy: a port of one project joins another project's network only
// if it is shared (409 on network_id); a driver token scoped to projects
// acts only on them and lists only them.
func TestTenancy(t *testing.T) {
	r := newAuthRig(t)
	ctx := context.Background()
	admin := r.b.client
	_, err := admin.CreatePort(ctx, api.PortCreate{NetworkID: r.net, PodID: "pod1", MAC: "fa:16:3e:00:01:01", ProjectID: "p2"})
	wantError(t, err, 409, "network_id")
	shared := must[api.Network](t)(admin.CreateNetwork(ctx, api.NetworkCreate{Name: "ext", Type: api.TypeSharedVXLAN, ProjectID: "p1", Shared: true}))
	if !shared.Shared || shared.ProjectID != "p1" {
		t.Fatalf("shared network: %+v", shared)
	}
	p := must[api.Port](t)(admin.CreatePort(ctx, api.PortCreate{NetworkID: shared.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:01", ProjectID: "p2"}))
	if p.ProjectID != "p2" {
		t.Fatalf("port: %+v", p)
	}
	_, err = admin.CreateNetwork(ctx, api.NetworkCreate{Name: "bad", Type: api.TypeLocal, ProjectID: "bad project"})
	wantError(t, err, 400, "project_id")

	scoped := mustClient(t, r.b, must[api.Token](t)(admin.CreateToken(ctx, api.TokenCreate{Role: "driver", Projects: []string{"p2"}})).Token)
	mine := must[api.Network](t)(scoped.CreateNetwork(ctx, api.NetworkCreate{Name: "mine", Type: api.TypeSharedVXLAN, ProjectID: "p2"}))
	for name, err := range map[string]error{
		"create in p1":        second(scoped.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeLocal, ProjectID: "p1"})),
		"create with none":    second(scoped.CreateNetwork(ctx, api.NetworkCreate{Name: "x", Type: api.TypeLocal})),
		"read p1's network":   second(scoped.GetNetwork(ctx, r.net)),
		"delete p1's network": scoped.DeleteNetwork(ctx, r.net),
		"port in p1":          second(scoped.CreatePort(ctx, api.PortCreate{NetworkID: mine.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:02", ProjectID: "p1"})),
		"delete p1's port":    scoped.DeletePort(ctx, "vm1"),
	} {
		if statusOf(err) != 403 {
			t.Errorf("scoped driver, %s: %v, want 403", name, err)
		}
	}
	must[api.Port](t)(scoped.CreatePort(ctx, api.PortCreate{NetworkID: mine.ID, PodID: "pod1", MAC: "fa:16:3e:00:01:03", ProjectID: "p2"}))
	nets := must[api.List[api.Network]](t)(scoped.ListNetworks(ctx, api.ListOptions{}))
	if len(nets.Items) != 1 || nets.Items[0].ID != mine.ID {
		t.Errorf("scoped driver sees networks %+v, want only %s", nets.Items, mine.ID)
	}
	ports := must[api.List[api.Port]](t)(scoped.ListPorts(ctx, api.ListOptions{}))
	if len(ports.Items) != 2 {
		t.Errorf("scoped driver sees %d ports, want its project's 2", len(ports.Items))
	}
	for _, p := range ports.Items {
		if p.ProjectID != "p2" {
			t.Errorf("scoped driver sees port %+v", p)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestContentTypeAndInsecure: a write without JSON is a 415 even for admin;
// with authentication off every call is admin and /healthz says so.
func TestContentTypeAndInsecure(t *testing.T) {
	r := newAuthRig(t)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		req, _ := http.NewRequest("POST", r.b.http.URL+"/v1/pods", strings.NewReader(`{"id":"pod8","az":"az8"}`))
		req.Header.Set("Authorization", "Bearer "+r.b.token)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("content type %q: %d, want 415", ct, resp.StatusCode)
		}
	}
	open := startBrain(t, "sqlite://"+filepath.Join(t.TempDir(), "b.db"), testConfig, httpapi.Options{Auth: httpapi.AuthOptions{Insecure: true}})
	anon := mustClient(t, open, "")
	if id := must[api.Identity](t)(anon.WhoAmI(context.Background())); id.Role != "admin" || id.Credential != "none" {
		t.Errorf("insecure whoami: %+v", id)
	}
	resp, err := http.Get(open.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]string
	json.NewDecoder(resp.Body).Decode(&h)
	if !strings.Contains(h["warning"], "insecure-no-auth") {
		t.Errorf("healthz with auth off: %v", h)
	}
	// /metrics behind a token when asked.
	locked := startBrain(t, "sqlite://"+filepath.Join(t.TempDir(), "b.db"), testConfig, httpapi.Options{Auth: httpapi.AuthOptions{Metrics: true}})
	for token, want := range map[string]int{"": 401, locked.token: 200} {
		req, _ := http.NewRequest("GET", locked.http.URL+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("metrics with token %v: %d, want %d", token != "", resp.StatusCode, want)
		}
	}
}
