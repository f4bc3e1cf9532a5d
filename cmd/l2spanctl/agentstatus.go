package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/l2span/l2span/brain/api"
)

func agentCommands() []*command {
	return []*command{
		{
			name: "status", args: "[--agent URL]", summary: "networks the agent forwards, standby, unreachable pods, and drift from its plan", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				url := fs.String("agent", "http://127.0.0.1:9697", "the agent's metrics-listen `URL`")
				return func(e *env, _ []string) error {
					ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
					defer cancel()
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/dataplane", nil)
					if err != nil {
						return fmt.Errorf("agent url: %w", err)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						// Not wrapped: the CLI would report a wrapped dial error
						// as the brain being unreachable.
						return errors.New("cannot reach the agent at " + *url + ": " + err.Error())
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("agent at %s answered %s", *url, resp.Status)
					}
					var v api.AgentDataplane
					if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
						return fmt.Errorf("agent answer: %w", err)
					}
					return e.show(v, func(t *table) { agentFields(t, v) })
				}
			},
		},
	}
}

func agentFields(t *table, v api.AgentDataplane) {
	t.row("gateway", v.GatewayID+" (pod "+v.Pod+")")
	t.row("healthy", yesNo(v.Healthy))
	t.row("revision", fmt.Sprint(v.Revision))
	for i, n := range v.Networks {
		key := ""
		if i == 0 {
			key = "forwarding"
		}
		t.row(key, fmt.Sprintf("vni %d on %s: %d macs, %d flood, %d neighbors", n.VNI, orDash(n.LocalInterface), n.MACs, n.Flood, n.Neighbors))
	}
	if len(v.Networks) == 0 {
		t.row("forwarding", "none")
	}
	if len(v.Standby) > 0 {
		t.row("standby", fmt.Sprint(v.Standby))
	}
	for vni, pods := range v.Unreachable {
		t.row("unreachable", fmt.Sprintf("vni %s: %s (no live gateway in gossip)", vni, strings.Join(pods, ",")))
	}
	if v.InsecureGossip {
		t.row("gossip", "NOT encrypted (--insecure-gossip)")
	}
	for _, m := range v.IgnoredMembers {
		t.row("ignored", fmt.Sprintf("%s at %s claims %s of pod %s with vtep %s: %s", m.Name, orDash(m.Addr),
			orDash(m.GatewayID), orDash(m.Pod), orDash(m.VTEP), m.Reason))
	}
	switch d := v.Drift; {
	case d == nil:
		t.row("drift", "unknown (backend cannot check without acting)")
	case *d == api.AgentDrift{}:
		t.row("drift", "none: the dataplane matches the plan")
	default:
		t.row("drift", fmt.Sprintf("to add %d networks, %d macs, %d flood, %d neighbors; to remove %d networks, %d macs, %d flood, %d neighbors",
			d.AddNetworks, d.AddMACs, d.AddFlood, d.AddNeighbors, d.RemoveNetworks, d.RemoveMACs, d.RemoveFlood, d.RemoveNeighbors))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
