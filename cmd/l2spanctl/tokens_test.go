package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// TestTokenCommands issues an agent token, uses it within its binding and
// outside it, lists it without its secret, revokes it and sees it refused.
func TestTokenCommands(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	b.ok(t, "pod", "create", "pod1", "--az", "az1")
	b.ok(t, "pod", "create", "pod2", "--az", "az2")
	tf := filepath.Join(t.TempDir(), "agent.token")
	out := b.ok(t, "token", "create", "--role", "agent", "--pod", "pod1", "--gateway", "gw1", "--description", "pod1 gateway", "--out", tf)
	id := field(out, "id")
	if id == "" || field(out, "role") != "agent" || !strings.Contains(field(out, "token"), "written to") {
		t.Fatalf("create:\n%s", out)
	}
	if fi, err := os.Stat(tf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	agent := []string{"--token-file", tf}
	b.ok(t, append(agent, "state", "pod1")...)
	if r := b.fails(t, 1, append(agent, "state", "pod2")...); !strings.Contains(r.err, "may not read pod pod2") {
		t.Errorf("agent reads another pod: %q", r.err)
	}
	if r := b.fails(t, 1, append(agent, "pod", "delete", "pod2")...); !strings.Contains(r.err, "role agent may not") {
		t.Errorf("agent deletes a pod: %q", r.err)
	}
	ks := jsonOut[[]api.Token](t, b, "token", "list")
	if len(ks) != 2 {
		t.Fatalf("tokens: %+v", ks)
	}
	for _, k := range ks {
		if k.Token != "" {
			t.Fatalf("list shows a secret: %+v", k)
		}
	}
	rows := rowsOf(b.ok(t, "token", "list"), "ID")
	if len(rows) != 2 {
		t.Fatalf("token list rows: %v", rows)
	}
	raw := jsonOut[api.Token](t, b, "token", "create", "--role", "driver", "--project", "p1,p2", "--ttl", "1h")
	if !strings.HasPrefix(raw.Token, "l2s_") || len(raw.Projects) != 2 || raw.ExpiresAt == nil {
		t.Fatalf("driver token: %+v", raw)
	}
	if out := b.ok(t, "token", "revoke", id); field(out, "state") != "revoked" {
		t.Fatalf("revoke:\n%s", out)
	}
	if r := b.fails(t, 1, append(agent, "state", "pod1")...); !strings.Contains(r.err, "revoked") {
		t.Errorf("revoked token: %q", r.err)
	}
	if r := b.fails(t, 1, "token", "create", "--role", "agent", "--pod", "pod1"); !strings.Contains(r.err, "gateway_id") {
		t.Errorf("agent token without gateway: %q", r.err)
	}
}
