package main

import (
	"flag"
	"strings"

	"github.com/l2span/l2span/brain/api"
)

func portCommands() []*command {
	return []*command{
		{
			name: "create", args: "NETWORK --pod POD --mac MAC [--ip IP]... [flags]", summary: "bind a port of a network (by id or name) in a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var p api.PortCreate
				var ips listFlag
				fs.StringVar(&p.PodID, "pod", "", "`POD` the port is bound in (required)")
				fs.StringVar(&p.MAC, "mac", "", "the port's `MAC` (required)")
				fs.Var(&ips, "ip", "the port's `IP` address; repeatable or comma-separated")
				fs.StringVar(&p.DeviceOwner, "device-owner", "", "Neutron device_owner `OWNER`, e.g. compute:nova or network:dhcp")
				fs.StringVar(&p.ProjectID, "project", "", "Neutron `PROJECT` id of the port")
				fs.StringVar(&p.ID, "id", "", "port `ID` (default: the brain picks a UUID)")
				return func(e *env, args []string) error {
					if err := required(fs, "pod", "mac"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					if p.NetworkID, err = networkID(e.ctx, c, args[0]); err != nil {
						return err
					}
					p.IPs = []string(ips)
					if p.IPs == nil {
						p.IPs = []string{}
					}
					out, err := c.CreatePort(e.ctx, p)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { portFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--network NETWORK] [--pod POD] [--mac MAC]", summary: "list ports", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				network := fs.String("network", "", "only ports of `NETWORK` (id or name)")
				pod := fs.String("pod", "", "only ports bound in `POD`")
				mac := fs.String("mac", "", "only ports with `MAC`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					nid, err := networkID(e.ctx, c, *network)
					if err != nil {
						return err
					}
					ports, err := api.ListAll(e.ctx, c.ListPorts, filters("network_id", nid, "pod_id", *pod, "mac", *mac))
					if err != nil {
						return err
					}
					return list(e, ports, func(t *table) {
						t.row("ID", "NETWORK_ID", "POD", "MAC", "IPS", "DEVICE_OWNER", "CREATED")
						for _, p := range ports {
							t.row(p.ID, p.NetworkID, p.PodID, p.MAC, strings.Join(p.IPs, ","), p.DeviceOwner, fmtTime(p.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a port", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					p, err := c.GetPort(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(p, func(t *table) { portFields(t, p) })
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a port", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeletePort(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("port %s deleted", args[0])
				})
			},
		},
	}
}

func portFields(t *table, p api.Port) {
	t.row("id", p.ID)
	t.row("network_id", p.NetworkID)
	t.row("pod_id", p.PodID)
	t.row("mac", p.MAC)
	t.row("ips", strings.Join(p.IPs, ", "))
	t.row("device_owner", p.DeviceOwner)
	t.row("created", fmtTime(p.CreatedAt))
}
