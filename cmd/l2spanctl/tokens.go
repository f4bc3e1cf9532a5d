package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/l2span/l2span/brain/api"
)

func tokenCommands() []*command {
	return []*command{
		{
			name: "create", args: "--role ROLE [--pod POD --gateway ID] [--project P]... [--ttl D] [--out FILE]",
			summary: "issue a token; its secret is shown (or written) once", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				var req api.TokenCreate
				var projects listFlag
				fs.StringVar(&req.Role, "role", "", "`ROLE`: admin, driver, agent or reader (required)")
				fs.StringVar(&req.PodID, "pod", "", "agent tokens: the `POD` the agent serves")
				fs.StringVar(&req.GatewayID, "gateway", "", "agent tokens: the gateway `ID` the agent registers as")
				fs.Var(&projects, "project", "driver tokens: a Neutron `PROJECT` the token may act on (repeat; none: all)")
				fs.StringVar(&req.Description, "description", "", "free `TEXT` to recognise the token by")
				ttl := fs.Duration("ttl", 0, "validity `DURATION`, e.g. 720h (0: never expires)")
				out := fs.String("out", "", "write the secret to `FILE` (mode 0600) instead of printing it")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					if err := required(fs, "role"); err != nil {
						return err
					}
					if *ttl < 0 {
						return fmt.Errorf("--ttl %s must not be negative", *ttl)
					}
					req.Projects = projects
					req.TTLSeconds = int64(ttl.Round(time.Second) / time.Second)
					k, err := c.CreateToken(e.ctx, req)
					if err != nil {
						return err
					}
					if *out != "" {
						if err := os.WriteFile(*out, []byte(k.Token+"\n"), 0o600); err != nil {
							return fmt.Errorf("write token: %w", err)
						}
						k.Token = "(written to " + *out + ")"
					}
					return e.show(k, func(t *table) {
						tokenFields(t, k)
						t.row("token", k.Token)
					})
				})
			},
		},
		{
			name: "list", summary: "list tokens (never their secrets)", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					ks, err := api.ListAll(e.ctx, c.ListTokens, api.ListOptions{})
					if err != nil {
						return err
					}
					return list(e, ks, func(t *table) {
						t.row("ID", "ROLE", "POD", "GATEWAY", "PROJECTS", "STATE", "EXPIRES", "DESCRIPTION")
						for _, k := range ks {
							t.row(k.ID, k.Role, k.PodID, k.GatewayID, strings.Join(k.Projects, ","), tokenState(k), fmtOptTime(k.ExpiresAt), k.Description)
						}
					})
				})
			},
		},
		{
			name: "revoke", args: "ID", summary: "revoke a token: requests carrying it are refused from now on", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					k, err := c.RevokeToken(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(k, func(t *table) { tokenFields(t, k) })
				})
			},
		},
	}
}

func tokenState(k api.Token) string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case k.ExpiresAt != nil && !time.Now().Before(*k.ExpiresAt):
		return "expired"
	}
	return "active"
}

func fmtOptTime(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return fmtTime(*t)
}

func tokenFields(t *table, k api.Token) {
	t.row("id", k.ID)
	t.row("role", k.Role)
	if k.PodID != "" {
		t.row("pod", k.PodID)
		t.row("gateway", k.GatewayID)
	}
	if len(k.Projects) > 0 {
		t.row("projects", strings.Join(k.Projects, ","))
	}
	t.row("state", tokenState(k))
	t.row("expires", fmtOptTime(k.ExpiresAt))
	t.row("description", k.Description)
	t.row("created", fmtTime(k.CreatedAt))
}
